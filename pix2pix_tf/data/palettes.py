"""Label-map palettes: class names and their RGB colours, built in
(`palettes/*.json`: cityscapes, facades) or from a file of the same form."""

import dataclasses
import json
import os
from typing import List

import numpy as np

from pix2pix_tf import errors

PALETTE_DIR = os.path.join(os.path.dirname(__file__), "palettes")
BUILT_IN = ("cityscapes", "facades")


@dataclasses.dataclass(frozen=True)
class Palette:
  name: str
  class_names: List[str]
  colors: np.ndarray  # (num_classes, 3) uint8
  void_colors: np.ndarray  # (num_void, 3) uint8

  @property
  def num_classes(self) -> int:
    """The number of classes (void colours excluded)."""
    return len(self.class_names)


def load_palette(spec: str) -> Palette:
  """A built-in palette name (cityscapes, facades) or a JSON file path.

  The file holds {"name": ..., "classes": [{"name": ..., "color": [r, g, b]},
  ...], "void": [{"name": ..., "color": [r, g, b]}, ...]}: the scored
  classes in the order of their class ids, and the colours of labels that
  are not scored (a bare [r, g, b] is a void colour too).
  """
  path = (os.path.join(PALETTE_DIR, f"{spec}.json") if spec in BUILT_IN
          else spec)
  if not os.path.isfile(path):
    raise errors.CommandError(f"--label_palette={spec} is neither a built-in palette "
                     f"({', '.join(BUILT_IN)}) nor a file.")
  try:
    with open(path) as f:
      data = json.load(f)
    names = [c["name"] for c in data["classes"]]
    colors = np.array([c["color"] for c in data["classes"]], np.uint8)
    void = np.array([v["color"] if isinstance(v, dict) else v
                     for v in data.get("void", [])], np.uint8).reshape(-1, 3)
  except (ValueError, KeyError, TypeError) as e:
    raise errors.CommandError(f"{path} is not a palette file ({e}): expected "
                     '{"classes": [{"name": ..., "color": [r, g, b]}, ...]}.'
                     ) from e
  if colors.ndim != 2 or colors.shape[1] != 3 or not len(colors):
    raise errors.CommandError(f"{path}: every class needs an [r, g, b] colour.")
  for color in void:
    shared = [n for n, c in zip(names, colors) if (c == color).all()]
    if shared:
      # The nearest colour decides a pixel's class: these pixels would be
      # scored as the class, never ignored as the file says.
      raise errors.CommandError(
          f"{path}: the void colour {color.tolist()} is also the colour of "
          f"{shared[0]}, so it cannot be told apart; remove one of them.")
  return Palette(data.get("name", os.path.basename(path)), names, colors,
                 void)
