r"""Builds paired A|B datasets from your own images.

    python -m pix2pix_tf.datasets combine --a_dir=inputs --b_dir=targets --output=datasets/mine
    python -m pix2pix_tf.datasets colorize --photos=photos --output=datasets/colorize --size=256
    python -m pix2pix_tf.datasets edges --photos=photos --output=datasets/edges --size=256
    python -m pix2pix_tf.datasets split --data_dir=datasets/colorize --val=0.1 --test=0.1
    python -m pix2pix_tf.datasets demo --output=datasets/demo
    python -m pix2pix_tf.datasets download facades   # -> datasets/facades

combine: pairs files of the same name (or the same --pattern key) from two
  folders into A|B images; B is resized to A's size (or both to --size);
  unmatched names are listed.
colorize: A = the grayscale version, B = the colour photo; photos that are
  already grayscale are skipped and counted.
edges: A = Canny edges (OpenCV; --low and --high thresholds), black on white
  as in edges2shoes, B = the photo.
download NAME: a standard pix2pix dataset (facades, cityscapes, maps,
  edges2shoes, edges2handbags, night2day) into --output (default
  datasets/NAME), by keras.utils.get_file (checked against --sha256 when
  given; each download prints its digest); extracted beside it and moved
  into place only when complete.
demo: the built-in demo dataset (procedural facades, photo | labels, and
  their palette.json), which `--config=demo` trains on: the same --seed
  gives the same files.
split: moves (or with --copy, copies) the pairs into train/, val/ and test/,
  reproducibly from --seed; refuses to touch existing splits without --force.

Every command reads jpg, png, bmp, webp (and what else Pillow reads), any
size, applies EXIF rotation, and turns palette and RGBA images into RGB (on
white). A corrupt file is named and skipped. Each output file is written to a
temporary name and renamed, so an interrupted run can be run again: it skips
what is already written. A summary says what was written and skipped, and why.
"""

import math
import os
import re
import sys

from absl import app
from absl import flags

from pix2pix_tf import options as options_lib
from pix2pix_tf import data as data_lib
from pix2pix_tf import errors
from pix2pix_tf import outputs
from pix2pix_tf.options import MAX_PIXELS, Option, SEED
from pix2pix_tf.data import building
from pix2pix_tf.data import demo

COMMANDS = ("combine", "colorize", "edges", "split", "demo", "download")

# This command's flags (an option several commands take is defined once, in
# options).
OPTIONS = (
    Option("a_dir", str, None, "combine: folder of A (input) images."),
    Option("b_dir", str, None, "combine: folder of B (target) images."),
    Option("pattern", str, None, "combine: a regular expression whose "
           "first group (or whole match) in the file name pairs A with "
           "B, e.g. '(\\d+)'. Default: the same file name."),
    Option("photos", str, None, "colorize, edges: folder of photos."),
    Option("output", str, None, "Dataset folder to write into (download: "
           "default datasets/NAME)."),
    Option("base_url", str, "http://efrosgans.eecs.berkeley.edu/pix2pix/"
           "datasets", "download: where NAME.tar.gz is downloaded from."),
    *options_lib.download_options("download"),
    Option("split", str, "train",
           "Subfolder of --output to write pairs into."),
    Option("size", int, None, "Resize each half to size x size (combine "
           "default: A's size; colorize and edges default: 256; 0 keeps "
           "the photo's size). demo: each half's size (default 64)."),
    Option("num_train", int, 200, "demo: training pairs.", lower_bound=0),
    Option("num_val", int, 20, "demo: validation pairs.", lower_bound=0),
    Option("low", int, 100, "edges: Canny's lower threshold."),
    Option("high", int, 200, "edges: Canny's upper threshold."),
    Option("data_dir", str, None, "split: the dataset folder."),
    Option("val", float, 0.1, "split: share of pairs for val/."),
    Option("test", float, 0.1, "split: share of pairs for test/."),
    SEED.but(help="split: seed of the shuffle; demo: seed of the "
             "drawings."),
    Option("copy", bool, False, "split: copy instead of moving."),
    Option("force", bool, False,
           "split: split again over existing splits."),
    MAX_PIXELS.but(help="colorize, edges, combine: images whose header "
                   "declares more pixels (width x height) are skipped, "
                   "before they are decoded."))


def _require(*names):
  missing = [n for n in names if not flags.FLAGS[n].value]
  if missing:
    raise app.UsageError(f"needs {', '.join('--' + n for n in missing)}.")


def check_options(command: str, flag_values: flags.FlagValues) -> None:
  """--split, --pattern and --size, checked before anything is read."""
  split = flag_values.split
  if not split or os.path.basename(split) != split or split in (".", ".."):
    raise errors.CommandError(
        f"--split={split} is not a folder name (such as train, val or "
        "test): the pairs are written in that folder of --output.")
  if command == "combine" and flag_values.pattern:
    try:
      re.compile(flag_values.pattern)
    except re.error as e:
      raise errors.CommandError(
          f"--pattern={flag_values.pattern} is not a regular expression "
          f"({e}). Fix it, or leave it out to pair files by name.") from None
  size = flag_values.size
  if size is not None and (size < 0 or size * size > flag_values.max_pixels):
    raise errors.CommandError(
        f"--size={size} must be from 1 to {math.isqrt(flag_values.max_pixels)}"
        f" (--max_pixels={flag_values.max_pixels}), or 0 to keep each "
        "photo's size.")


def main(argv):
  if argv[1:2] == ["download"]:
    if len(argv) != 3 or argv[2] not in data_lib.STANDARD_DATASETS:
      raise app.UsageError(
          "Give one dataset name after download: "
          f"{', '.join(data_lib.STANDARD_DATASETS)}.")
    FLAGS = flags.FLAGS
    from pix2pix_tf.data import download  # Keras's get_file: TensorFlow.
    download.fetch(argv[2], FLAGS.output or os.path.join("datasets", argv[2]),
                   FLAGS.base_url, FLAGS.sha256, FLAGS.timeout,
                   FLAGS.retries)
    return
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f"Give one command: {', '.join(COMMANDS)}.")
  command, FLAGS = argv[1], flags.FLAGS
  if command == "demo":
    _require("output")
    size = FLAGS.size or 64
    demo.write_dataset(FLAGS.output, FLAGS.num_train, FLAGS.num_val, size,
                       FLAGS.seed)
    print(f"Wrote {FLAGS.num_train} train and {FLAGS.num_val} val pairs of "
          f"{size}x{size} to {FLAGS.output}.")
    return
  if command == "split":
    _require("data_dir")
    summary = building.split(FLAGS.data_dir, FLAGS.val, FLAGS.test,
                             FLAGS.seed, FLAGS.copy, FLAGS.force)
  else:
    _require("output", *(("a_dir", "b_dir") if command == "combine"
                         else ("photos",)))
    check_options(command, FLAGS)
    sources = (("a_dir", "b_dir") if command == "combine" else ("photos",))
    output = outputs.Folder(FLAGS.output, "output", [
        outputs.Input(FLAGS[name].value, name) for name in sources],
                            kind=f"datasets {command}")
    if command == "combine":
      summary = building.combine(
          data_lib.list_images(FLAGS.a_dir),
          data_lib.list_images(FLAGS.b_dir), output, FLAGS.split,
          FLAGS.size, FLAGS.pattern, FLAGS.max_pixels)
    else:
      size = 256 if FLAGS.size is None else (FLAGS.size or None)
      photos = data_lib.list_images(FLAGS.photos)
      summary = (
          building.colorize(photos, output, FLAGS.split, size,
                            FLAGS.max_pixels) if command == "colorize" else
          building.edges(photos, output, FLAGS.split, size, FLAGS.low,
                         FLAGS.high, FLAGS.max_pixels))
  print(summary.report())
  if not summary.written and not summary.skipped.get("already written"):
    sys.exit(f"pix2pix_tf.datasets {command}: error: no pair was written "
             "(the summary above says why).")


def run():
  options_lib.run_command("datasets", main, OPTIONS)


if __name__ == "__main__":
  run()
