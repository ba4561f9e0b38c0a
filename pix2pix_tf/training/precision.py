"""Mixed precision: --mixed_precision resolved for this machine, and the Keras
dtype policy the models are built under."""

import contextlib
from typing import Iterator

import keras
import tensorflow as tf


POLICIES = {"none": "float32", "bf16": "mixed_bfloat16",
            "fp16": "mixed_float16"}


def fast_bfloat16() -> bool:
  """Whether this machine computes bfloat16 faster than float32: GPUs of
  compute capability 8.0 or newer (A100, H100, ...), or CPUs with AMX."""
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    return all(tf.config.experimental.get_device_details(gpu).get(
        "compute_capability", (0, 0)) >= (8, 0) for gpu in gpus)
  try:
    with open("/proc/cpuinfo") as f:
      return "amx_bf16" in f.read().split()
  except OSError:
    return False


def resolve_mixed_precision(mixed_precision: str) -> str:
  """--mixed_precision, with auto resolved to bf16 where it is fast."""
  if mixed_precision == "auto":
    return "bf16" if fast_bfloat16() else "none"
  return mixed_precision


@contextlib.contextmanager
def dtype_policy(mixed_precision: str) -> Iterator[None]:
  """Builds layers under `--mixed_precision`'s Keras dtype policy.

  Variables stay float32; bf16/fp16 set the layers' compute dtype. The
  models' last layers (tanh output, discriminator logits) are float32 in any
  policy, and the losses are computed in float32.
  """
  previous = keras.mixed_precision.dtype_policy()
  keras.mixed_precision.set_dtype_policy(
      POLICIES[resolve_mixed_precision(mixed_precision)])
  try:
    yield
  finally:
    keras.mixed_precision.set_dtype_policy(previous)
