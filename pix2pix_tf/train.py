r"""Trains pix2pix on a folder of side-by-side A|B image pairs.

    python -m pix2pix_tf.train --config=facades
    python -m pix2pix_tf.train --flagfile=configs/facades.flags
    python -m pix2pix_tf.train --data_dir=datasets/maps --model_dir=runs/maps

Running the same command again resumes from the latest checkpoint in
<model_dir>/checkpoints. Every flag's default is the paper's value, but the
speed options' (precision and kernels), which this machine's kind chooses.
"""

from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import config as config_lib
from pix2pix_tf import options as options_lib

FLAGS = flags.FLAGS

# This command's own flag; the training options are config.py's groups.
OPTIONS = (options_lib.CONFIG,)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  config = config_lib.Config.from_flag_values(FLAGS)
  # After the flags and their checks: --help and flag errors do not wait
  # for TensorFlow's import (seconds).
  from pix2pix_tf import training

  # TensorFlow's INFO messages (checkpoint sharding and the like) drown the
  # progress bar; warnings and errors still show.
  logging.set_verbosity(logging.WARNING)
  training.train_and_evaluate(config)


def run():
  options_lib.run_command("train", main, OPTIONS)


if __name__ == "__main__":
  run()
