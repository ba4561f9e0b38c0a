r"""Exports a trained generator as a SavedModel for serving.

    python -m pix2pix_tf.export --model_dir=runs/facades --export_dir=exports/facades
    python -m pix2pix_tf.export --model_dir=runs/facades \
        --checkpoint=runs/facades/checkpoints/ckpt-40000 --inference_mode=eval \
        --export_dir=exports/facades-eval

The SavedModel needs nothing of this package to load; its signatures are
described in pix2pix_tf/serving/signatures.py.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import config as config_lib

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  if not FLAGS.model_dir:
    raise app.UsageError("--model_dir is required.")
  from pix2pix_tf import serving  # After the flags: a fast --help.
  try:
    path = serving.export(FLAGS.model_dir, FLAGS.export_dir, FLAGS.checkpoint,
                  FLAGS.inference_mode, FLAGS.max_pixels)
  except serving.ExportError as e:
    sys.exit(f"pix2pix_tf.export: error: {e}")
  print(f"Exported to {path}")


def define_flags():
  """Defines this command's flags."""
  flags.DEFINE_string("model_dir", None, "The training run to export from.")
  flags.DEFINE_string("checkpoint", None,
                      "A checkpoint path (e.g. RUN/checkpoints/ckpt-4000); "
                      "default: the latest in <model_dir>/checkpoints.")
  flags.DEFINE_string("export_dir", None,
                      "Where to write the SavedModel (default: "
                      "<model_dir>/export).")
  flags.DEFINE_enum("inference_mode", None, list(config_lib.INFERENCE_MODES),
                    "paper: dropout on and batch statistics at test time, as "
                    "the paper; eval: moving statistics, no dropout. Default: "
                    "the run's --inference_mode.")
  flags.DEFINE_integer("max_pixels", config_lib.DEFAULT_MAX_PIXELS,
                       "translate_encoded refuses images whose header "
                       "declares more pixels (width x height), before "
                       "decoding them.", lower_bound=1)


def run():
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # No CUDA-driver noise.
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
