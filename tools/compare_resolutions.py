r"""Translates test pairs at the training and at native resolution, side by
side, and measures what native resolution keeps: the paper's maps setting
(trained at 256, tested at 512) for any export.

    python tools/compare_resolutions.py --saved_model=runs/maps/export \
        --input=datasets/maps/val --num_images=4 \
        --output=docs/native_resolution.png

For each of the first --num_images A|B pairs of --input (in file-name order)
the input half (by the export's direction) is translated by the export's
translate_uint8 (resized to the training size and back) and
translate_native (the image itself). Prints each image's high-frequency
energy (mean squared Laplacian, `evaluation.metrics.high_frequency_energy`)
of both outputs and of the real target, and their means; writes a grid,
one row per pair: input | training resolution | native | target.
"""

import json
import os

from absl import app
from absl import flags
import numpy as np

from pix2pix_tf import errors
from PIL import Image

flags.DEFINE_string("saved_model", None, "An export of pix2pix_tf.")
flags.DEFINE_string("input", None, "A folder of A|B pairs.")
flags.DEFINE_integer("num_images", 4, "Pairs to translate.")
flags.DEFINE_string("output", None, "The grid PNG to write.")
FLAGS = flags.FLAGS

COLUMNS = ("input", "training resolution", "native", "target")


def translate_pairs(saved_model, files):
  """[(input, training, native, target)] uint8 images, one per file."""
  import tensorflow as tf
  from pix2pix_tf import data as data_lib
  from pix2pix_tf import serving
  from pix2pix_tf.serving import translation
  loaded = serving.load_export(saved_model)
  metadata = json.loads(loaded.metadata_json.numpy())
  # 8-bit pixels (a 16-bit PNG by its high bytes): one scale for the grid
  # and the energies.
  decode = tf.function(data_lib.decode_image,
                       input_signature=[tf.TensorSpec([], tf.string)])
  at = {resolution: serving.make_translate(loaded, metadata, resolution)
        for resolution in ("training", "native")}
  rows = []
  for path in files:
    input_image, target = translation.split_input(
        translation.read_image(path, decode), True, metadata)
    rows.append((input_image, at["training"](input_image),
                 at["native"](input_image), target))
  return rows


def grid(rows):
  """The rows side by side, 4 pixels apart, on white."""
  height = sum(row[0].shape[0] for row in rows) + 4 * (len(rows) - 1)
  width = max(sum(image.shape[1] for image in row) for row in rows) + 12
  canvas = np.full((height, width, 3), 255, np.uint8)
  y = 0
  for row in rows:
    x = 0
    for image in row:
      image = np.broadcast_to(image, image.shape[:2] + (3,))
      canvas[y:y + image.shape[0], x:x + image.shape[1]] = image
      x += image.shape[1] + 4
    y += row[0].shape[0] + 4
  return canvas


def main(argv):
  del argv
  if not (FLAGS.saved_model and FLAGS.input and FLAGS.output):
    raise app.UsageError("--saved_model, --input and --output are required.")
  from pix2pix_tf import data as data_lib
  from pix2pix_tf import outputs
  from pix2pix_tf.evaluation import metrics
  output, name = outputs.file_output(
      FLAGS.output, "output", [outputs.Input(FLAGS.input, "input")],
      kind="compare_resolutions")
  files = data_lib.list_images(FLAGS.input)[:FLAGS.num_images]
  if not files:
    raise app.UsageError(f"--input={FLAGS.input} holds no images.")
  data_lib.check_headers(files)  # Before any is decoded.
  rows = translate_pairs(FLAGS.saved_model, files)
  energies = np.array([[metrics.high_frequency_energy(image)
                        for image in row[1:]] for row in rows])
  print("| image | size | " + " | ".join(COLUMNS[1:]) + " |")
  print("|---|---|---|---|---|")
  for path, row, energy in zip(files, rows, energies):
    print(f"| {os.path.basename(path)} | {row[0].shape[1]}x"
          f"{row[0].shape[0]} | " + " | ".join(f"{e:.1f}" for e in energy) +
          " |")
  print("| mean | | " + " | ".join(f"{e:.1f}" for e in energies.mean(0)) +
        " |")
  output.write(name, Image.fromarray(grid(rows)).save)
  print(f"Wrote {FLAGS.output}: {' | '.join(COLUMNS)}")


if __name__ == "__main__":
  app.run(errors.guarded("compare_resolutions", main))
