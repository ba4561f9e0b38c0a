r"""Exports a run in every format and measures each file against the
SavedModel on real images: the "Export formats" table of docs/inference.md.

    python tools/compare_formats.py --model_dir=runs/facades \
        --input=datasets/facades/val --num_images=50 --output_dir=/tmp/formats

Writes, in --output_dir, the SavedModel (export/) and the .keras, LiteRT and
ONNX files (float32, and float16 weights) of the run's latest checkpoint in eval mode
(deterministic, so that differences are the formats', not dropout's). Each
file is run by its own runtime (Keras, the LiteRT interpreter, ONNX Runtime)
on the input halves of the first --num_images A|B pairs of --input, resized
to the training crop size, and compared with the SavedModel's
serving_default. Prints a Markdown table: file size, the largest and the
mean absolute difference in [-1, 1], and the share of output values whose
8-bit level differs.
"""

import os

from absl import app
from absl import flags
from absl import logging
import numpy as np

from pix2pix_tf import errors

flags.DEFINE_string("model_dir", None, "A training run of pix2pix_tf.")
flags.DEFINE_string("input", None, "A folder of A|B pairs.")
flags.DEFINE_integer("num_images", 50, "Pairs to translate.")
flags.DEFINE_string("output_dir", None, "Where to write the exports.")
FLAGS = flags.FLAGS

VARIANTS = (("keras", "float32"), ("litert", "float32"), ("litert", "fp16"),
            ("onnx", "float32"), ("onnx", "fp16"))


def inputs(config, folder, count):
  """[count, S, S, C] float32 input halves in [-1, 1]."""
  import tensorflow as tf
  from pix2pix_tf import data as data_lib
  files = sorted(os.listdir(folder), key=lambda n: (len(n), n))[:count]
  data_lib.check_headers([os.path.join(folder, name) for name in files])
  halves = []
  for name in files:
    image = data_lib.decode_image(
        tf.io.read_file(os.path.join(folder, name)))
    a, b = data_lib.split_pair(image)
    half = a if config.data.direction == "AtoB" else b
    half = tf.image.resize(tf.cast(half, tf.float32),
                           [config.data.crop_size] * 2, antialias=True)
    halves.append(half.numpy() / 127.5 - 1)
  return np.stack(halves).astype(np.float32)


def level(x):
  return np.round((np.clip(x, -1, 1) + 1) * 127.5)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  import tensorflow as tf
  from pix2pix_tf import outputs
  from pix2pix_tf import serving
  from pix2pix_tf.serving import formats
  # Everything it writes, checked before the work.
  out = outputs.Folder(FLAGS.output_dir, "output_dir", [
      outputs.Input(FLAGS.model_dir, "model_dir"),
      outputs.Input(FLAGS.input, "input")], kind="export")
  out.check_folder("export", serving.is_own_export)
  out.check([os.path.basename(formats.default_path(out.path, fmt, weights))
             for fmt, weights in VARIANTS])
  config = serving.load_run_config(FLAGS.model_dir)
  generator, step = serving.saved_model.restore_generator(
      config, serving.latest_checkpoint(FLAGS.model_dir))
  saved_model = serving.save(generator, config, step,
                             os.path.join(FLAGS.output_dir, "export"),
                             "eval")
  images = inputs(config, FLAGS.input, FLAGS.num_images)
  reference = tf.saved_model.load(saved_model).signatures["serving_default"]
  expected = np.concatenate([
      reference(images=tf.constant(x[None]))["generated_image"].numpy()
      for x in images])
  size = sum(os.path.getsize(os.path.join(d, f))
             for d, _, names in os.walk(saved_model) for f in names)
  model = config.model
  print(f"{model.generator}, ngf {model.ngf}, {model.norm} norm, "
        f"{config.data.crop_size}x{config.data.crop_size}, step {step}, "
        f"{len(images)} images of {FLAGS.input}, eval mode\n")
  print("| format | file | size (MiB) | max abs diff | mean abs diff | "
        "8-bit levels changed |")
  print("|---|---|---|---|---|---|")
  print(f"| SavedModel | export/ | {size / 2**20:.1f} | 0 | 0 | 0 |")
  for fmt, weights in VARIANTS:
    path = formats.default_path(FLAGS.output_dir, fmt, weights)
    written = formats.write_format(generator, config, fmt, path, "eval",
                                   weights)
    run = formats.runner(path, fmt)
    got = np.concatenate([run(x[None]) for x in images])
    difference = np.abs(got - expected)
    changed = float((level(got) != level(expected)).mean())
    name = fmt + (", float16 weights" if weights == "fp16" else "")
    print(f"| {name} | {os.path.basename(path)} | "
          f"{written.size_bytes / 2**20:.1f} | {difference.max():.2g} | "
          f"{difference.mean():.2g} | {changed:.2%} |")


if __name__ == "__main__":
  flags.mark_flags_as_required(["model_dir", "input", "output_dir"])
  app.run(errors.guarded("compare_formats", main))
