r"""Translates images, or a whole test split, with an exported generator.

    python -m pix2pix_tf.predict --saved_model=runs/facades/export \
        --input=photos/ --output=translated/
    python -m pix2pix_tf.predict --model_dir=runs/facades --paired \
        --input=datasets/facades/test --output=results/facades

Images of any size are translated at the model's training size and resized
back. Every output is a PNG named after the input's stem (photo.jpg ->
photo.png); images are decoded by the same rule as in training and the
SavedModel (Exif orientation applied, transparency on white). With --paired each input file is an A|B pair: the
input half (by the model's direction) is translated, the halves are saved to
inputs/ and targets/, and `index.html` shows input | generated | target for
every pair, as the reference's results page.
A file that cannot be read is reported and skipped; the command exits
non-zero at the end if any failed.
"""

import html
import os
import sys

from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import config as config_lib

FLAGS = flags.FLAGS

def list_inputs(path):
  from pix2pix_tf import data as data_lib
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    raise FileNotFoundError(f"--input={path} is neither a file nor a folder.")
  files = data_lib.list_images(path)
  if not files:
    raise FileNotFoundError(f"--input={path} holds no images "
                            f"({', '.join(data_lib.IMAGE_EXTENSIONS)}).")
  return files


def save_image(array, path):
  from PIL import Image
  Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(
      path)


def read_image(path, decode, max_pixels=None):
  """The file's pixels by the decoding rule of training and the SavedModel
  (`decode`: data_lib.decode_image); Pillow, by the same rule, for
  the formats TensorFlow cannot read (TIFF). An image larger than
  `max_pixels` is refused (data_lib.TooLargeError) before it is decoded."""
  import numpy as np
  from pix2pix_tf import data as data_lib
  max_pixels = max_pixels or config_lib.DEFAULT_MAX_PIXELS
  if path.lower().endswith(data_lib.TENSORFLOW_FORMATS):
    data_lib.check_pixels(path, max_pixels)
    with open(path, "rb") as f:
      return decode(f.read()).numpy()
  return np.asarray(data_lib.read_rgb(path, max_pixels))  # Checks it too.


def translate_files(saved_model, files, output, paired=False,
                    max_pixels=None):
  """Translates `files` into `output`; returns the list of failed files.

  Every image is written as PNG (lossless: a JPEG output would add its own
  artefacts to what FID or a perceptual study then measures).
  """
  import json
  import numpy as np
  import tensorflow as tf
  from keras.utils import Progbar
  from pix2pix_tf import data as data_lib
  from pix2pix_tf import export

  loaded = export.load(saved_model)
  metadata = json.loads(loaded.metadata_json.numpy().decode())
  translate = loaded.signatures["translate_uint8"]
  decode = tf.function(data_lib.decode_image,
                       input_signature=[tf.TensorSpec([], tf.string)])
  in_channels = metadata["input_channels"]
  # PNG names; inputs whose stems collide keep their extension in the name.
  names = data_lib.png_names(files)
  for path, name in zip(files, names):
    if name != os.path.splitext(os.path.basename(path))[0] + ".png":
      print(f"{path} shares its name with another input: written as {name}.",
            file=sys.stderr)
  os.makedirs(output, exist_ok=True)
  if paired:
    for folder in ("inputs", "targets"):
      os.makedirs(os.path.join(output, folder), exist_ok=True)
  rows, failed = [], []
  progbar = Progbar(len(files), unit_name="image",
                    verbose=1 if sys.stdout.isatty() else 2)
  for i, (path, name) in enumerate(zip(files, names)):
    try:
      image = read_image(path, decode, max_pixels)
      if paired:
        half = image.shape[1] // 2
        input_image, target = image[:, :half], image[:, half:]
        if metadata["direction"] == "BtoA":
          input_image, target = target, input_image
      else:
        input_image, target = image, None
      if in_channels == 1:
        input_image = np.asarray(tf.image.rgb_to_grayscale(input_image))
      generated = translate(images=tf.constant(input_image[None]))[
          "generated_image"][0].numpy()
      save_image(generated, os.path.join(output, name))
      if paired:
        save_image(input_image, os.path.join(output, "inputs", name))
        save_image(target, os.path.join(output, "targets", name))
        rows.append((os.path.basename(path), f"inputs/{name}", name,
                     f"targets/{name}"))
    except Exception as e:  # pylint: disable=broad-except
      # One bad file must not stop the rest: report it and go on.
      failed.append(path)
      print(f"\nSkipped {path}: {type(e).__name__}: {e}", file=sys.stderr)
    progbar.update(i + 1)
  if paired:
    write_index(os.path.join(output, "index.html"), rows, metadata)
  return failed


def write_index(path, rows, metadata):
  """The results page: one row per pair, input | generated | target."""
  title = (f"pix2pix_tf results, {metadata['direction']}, step "
           f"{metadata['step']}, {metadata['inference_mode']} inference")
  lines = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
           f"<title>{html.escape(title)}</title>",
           "<style>td{padding:4px;text-align:center;font:12px sans-serif}"
           "img{width:256px}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>", "<table>",
           "<tr><th>name</th><th>input</th><th>generated</th>"
           "<th>target</th></tr>"]
  for name, input_src, generated_src, target_src in rows:
    cells = "".join(f"<td><img src='{html.escape(src, quote=True)}'></td>"
                    for src in (input_src, generated_src, target_src))
    lines.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
  lines += ["</table>", "</body></html>"]
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  if bool(FLAGS.saved_model) == bool(FLAGS.model_dir):
    raise app.UsageError("Give one of --saved_model or --model_dir.")
  if not FLAGS.input or not FLAGS.output:
    raise app.UsageError("--input and --output are required.")
  from pix2pix_tf import data as data_lib
  from pix2pix_tf import export
  saved_model = FLAGS.saved_model or os.path.join(FLAGS.model_dir, "export")
  try:
    files = list_inputs(FLAGS.input)
    data_lib.check_output_folder(FLAGS.output, create=False)
    failed = translate_files(saved_model, files, FLAGS.output, FLAGS.paired,
                             FLAGS.max_pixels)
  except (FileNotFoundError, ValueError, export.ExportError) as e:
    sys.exit(f"pix2pix_tf.predict: error: {e}")
  written = len(files) - len(failed)
  print(f"Translated {written} of {len(files)} images into {FLAGS.output}.")
  if failed:
    sys.exit(f"pix2pix_tf.predict: {len(failed)} of {len(files)} images "
             f"failed: {', '.join(failed)}")


def define_flags():
  """Defines this command's flags (at start-up, like export's)."""
  flags.DEFINE_string("saved_model", None, "An exported SavedModel folder.")
  flags.DEFINE_string("model_dir", None,
                      "A training run: uses its export (<model_dir>/export).")
  flags.DEFINE_string("input", None, "An image file or a folder of images.")
  flags.DEFINE_string("output", None, "Folder for the translated images.")
  flags.DEFINE_bool("paired", False,
                    "Inputs are A|B pairs; also write index.html.")
  flags.DEFINE_integer("max_pixels", config_lib.DEFAULT_MAX_PIXELS,
                       "Images whose header declares more pixels (width x "
                       "height) are skipped with a message, before they are "
                       "decoded.", lower_bound=1)


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
