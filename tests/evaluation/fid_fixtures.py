"""What the FID Inception test and its fixture writer share: random weights
and images both can make from a seed, so that neither the ~90 MB weights
nor PyTorch are needed by the test."""

import zlib
from typing import Dict, Tuple

import numpy as np

# The images the fixtures score: two sets of 8-bit RGB images, one smaller
# than 299x299 (resized up) and one larger and not square (resized down).
SETS = {"a": (10, 64, 64), "b": (10, 340, 310)}


def random_state(shapes: Dict[str, Tuple[int, ...]]) -> Dict[str, np.ndarray]:
  """float32 tensors for `shapes`, each from a seed of its own name: He-scaled
  convolutions, and batch-norm scales, shifts and statistics near those of
  a trained network, so that features stay of order one through the
  network's 94 layers."""
  state = {}
  for name, shape in sorted(shapes.items()):
    rng = np.random.RandomState(zlib.crc32(name.encode()))
    if len(shape) == 4:
      values = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
    elif name.endswith("running_var") or name.endswith(".weight"):
      values = rng.uniform(0.5, 1.5, shape)
    else:
      values = rng.normal(0, 0.1, shape)
    state[name] = values.astype(np.float32)
  return state


def images(name: str) -> np.ndarray:
  """Set `name` of SETS: smooth random colour fields plus noise, uint8."""
  count, height, width = SETS[name]
  rng = np.random.RandomState(zlib.crc32(name.encode()))
  y, x = np.mgrid[0:height, 0:width] / max(height, width)
  out = []
  for _ in range(count):
    phase = rng.uniform(0, 2 * np.pi, (3, 1, 1))
    frequency = rng.uniform(1, 8, (3, 2, 1, 1))
    field = np.sin(frequency[:, 0] * 2 * np.pi * y + phase) * np.cos(
        frequency[:, 1] * 2 * np.pi * x)
    noisy = 127.5 + 100 * field + rng.normal(0, 20, field.shape)
    out.append(np.clip(np.round(noisy), 0, 255).transpose(1, 2, 0))
  return np.stack(out).astype(np.uint8)
