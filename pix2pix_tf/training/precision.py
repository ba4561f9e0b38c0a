"""Mixed precision: --mixed_precision resolved for this machine, and the Keras
dtype policy the models are built under."""

import contextlib
from typing import Iterator

import keras

from pix2pix_tf import config as config_lib
from pix2pix_tf.kernels import machines


POLICIES = {"none": "float32", "bf16": "mixed_bfloat16",
            "fp16": "mixed_float16"}


def resolve_mixed_precision(mixed_precision: str) -> str:
  """--mixed_precision, with auto resolved to this kind of machine's
  measured choice (`kernels.machines`)."""
  if mixed_precision == "auto":
    return machines.auto_precision()
  return mixed_precision


def check_precision(mixed_precision: str) -> None:
  """Refuses bfloat16 where oneDNN cannot compute it, before a run starts.

  Raises:
    config.ConfigError: naming --mixed_precision and what to use instead.
  """
  reason = (machines.bfloat16_refusal()
            if resolve_mixed_precision(mixed_precision) == "bf16" else None)
  if reason:
    raise config_lib.ConfigError(
        f"--mixed_precision={mixed_precision}: {reason}. Use "
        "--mixed_precision=none (float32; auto chooses it here).")


def describe(config: config_lib.Config) -> str:
  """The policy and kernel options a run of `config` trains with here, and
  this machine's kind, for the run's first line."""
  used = machines.kernels_used(config.kernels)
  kind = machines.this_machine()
  return (f"{POLICIES[resolve_mixed_precision(config.run.mixed_precision)]}"
          ", kernel options on: "
          f"{', '.join(name for name in used if used[name]) or 'none'} "
          f"(this machine: {kind}, {machines.KINDS[kind].description})")


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
