"""Restoring a checkpoint into models with every variable matched."""

import tensorflow as tf

from pix2pix_tf import config as config_lib


def restore(checkpoint: tf.train.Checkpoint, path: str,
            models: str = "the models these flags build",
            advice: str = ("Resume with the flags the run was trained with, "
                           "or choose another --model_dir.")) -> None:
  """Restores every variable that `checkpoint` tracks from `path`, or
  ConfigError naming `models` and giving `advice`: a variable missing from
  the file, or of another shape, must never be left at its initial value.
  Values in the file that `checkpoint` does not track (an export restores
  the generator alone) are ignored."""
  status = None
  try:
    status = checkpoint.restore(path)
    status.assert_existing_objects_matched()
  except (IndexError, tf.errors.DataLossError) as e:  # Truncated, damaged.
    first_line = str(e).strip().splitlines()[0][:300] if str(e) else ""
    raise config_lib.ConfigError(
        f"{path} cannot be read: it is damaged or truncated ({first_line}). "
        "Use another checkpoint (--checkpoint, or remove this one).") from None
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    first_line = str(e).strip().splitlines()[0][:300] if str(e) else ""
    raise config_lib.ConfigError(
        f"{path} does not fit {models} ({first_line}). {advice}") from None
  finally:
    if status is not None:
      status.expect_partial()  # Reported here, not again when collected.
