r"""Translates images, or a whole test split, with an exported generator.

    python -m pix2pix_tf.predict --saved_model=runs/facades/export \
        --input=photos/ --output=translated/
    python -m pix2pix_tf.predict --model_dir=runs/facades --paired \
        --input=datasets/facades/test --output=results/facades
    python -m pix2pix_tf.predict --model_dir=runs/maps --resolution=native \
        --input=aerial_4096.png --output=maps_out --tile=512 --overlap=64

Images of any size come back at their own size. --resolution=training
resizes each to the scale the model was trained at and the result back;
native runs the generator on the image itself (padded to a multiple of
2**depth, cropped back). The default is the export's, which the training
run's --preprocess implies (native for crop and none). --tile translates
large images at native resolution in overlapping, blended tiles. Every
output is a PNG named after the input's stem (photo.jpg -> photo.png);
images are decoded by the same rule as in training and the SavedModel (Exif
orientation applied, transparency on white). With --paired each input file
is an A|B pair: the input half (by the model's direction) is translated, the
halves are saved to inputs/ and targets/, and `index.html` shows input |
generated | target for every pair, as the reference's results page.
A file that cannot be read is reported and skipped; the command exits
non-zero at the end if any failed.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import options as options_lib
from pix2pix_tf import outputs
from pix2pix_tf.options import (MAX_PIXELS, Option, RESOLUTION, RUN_DIR,
                                SAVED_MODEL)

FLAGS = flags.FLAGS

# This command's flags (an option several commands take is defined once, in
# options).
OPTIONS = (
    SAVED_MODEL, RUN_DIR,
    Option("input", str, None, "An image file or a folder of images."),
    Option("output", str, None, "Folder for the translated images."),
    Option("paired", bool, False,
           "Inputs are A|B pairs; also write index.html."),
    RESOLUTION,
    Option("tile", int, 0, "Translate at native resolution in tiles of "
           "this many pixels a side (a multiple of 2**depth), blended "
           "where they overlap: memory bounded by the tile, not the "
           "image. 0: whole images.", lower_bound=0),
    Option("overlap", int, 32, "Pixels that neighbouring tiles share "
           "(with --tile), blended by linear ramps; at most half the "
           "tile.", lower_bound=0),
    MAX_PIXELS.but(help="Images whose header declares more pixels "
                   "(width x height) are skipped with a message, before "
                   "they are decoded."))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  if bool(FLAGS.saved_model) == bool(FLAGS.model_dir):
    raise app.UsageError("Give one of --saved_model or --model_dir.")
  if not FLAGS.input or not FLAGS.output:
    raise app.UsageError("--input and --output are required.")
  # Before TensorFlow's import, which serving's first use brings.
  output = outputs.Folder(FLAGS.output, "output",
                          [outputs.Input(FLAGS.input, "input")],
                          kind="predict")
  from pix2pix_tf import serving  # After the flags: a fast --help.
  saved_model = FLAGS.saved_model or os.path.join(FLAGS.model_dir, "export")
  files = serving.list_inputs(FLAGS.input)
  failed = serving.translate_files(
      saved_model, files, output, FLAGS.paired, FLAGS.max_pixels,
      FLAGS.resolution, FLAGS.tile, FLAGS.overlap)
  written = len(files) - len(failed)
  print(f"Translated {written} of {len(files)} images into {FLAGS.output}.")
  if failed:
    sys.exit(f"pix2pix_tf.predict: error: {len(failed)} of {len(files)} "
             f"images failed (each named above): {', '.join(failed)}")


def run():
  options_lib.run_command("predict", main, OPTIONS)


if __name__ == "__main__":
  run()
