r"""Prints the networks a flagfile builds: parameters, size, shapes, receptive field.

    python -m pix2pix_tf.summary --flagfile=configs/facades.flags
    python -m pix2pix_tf.summary --flagfile=configs/facades.flags --format=json

Takes the same flags as `pix2pix_tf.train`. Shapes are for --crop_size inputs.
"""

import json

from absl import app
from absl import flags

from pix2pix_tf import config as config_lib
from pix2pix_tf import options as options_lib
from pix2pix_tf.options import Option

FLAGS = flags.FLAGS

# This command's flags (an option several commands take is defined once, in
# options).
OPTIONS = (
    options_lib.CONFIG,
    Option("format", str, "table", "Output format.",
           choices=("table", "json")),)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  config = config_lib.Config.from_flag_values(FLAGS)
  from pix2pix_tf.models import summary as summary_lib  # A fast --help.
  summary = summary_lib.network_summary(config)
  if FLAGS.format == "json":
    print(json.dumps(summary, indent=2))
  else:
    print(summary_lib.format_summary(summary, config))


def run():
  options_lib.run_command("summary", main, OPTIONS)


if __name__ == "__main__":
  run()
