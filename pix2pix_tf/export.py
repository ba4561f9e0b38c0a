r"""Exports a trained generator as a SavedModel for serving.

    python -m pix2pix_tf.export --model_dir=runs/facades --export_dir=exports/facades
    python -m pix2pix_tf.export --model_dir=runs/facades \
        --checkpoint=runs/facades/checkpoints/ckpt-40000 --inference_mode=eval \
        --export_dir=exports/facades-eval

The SavedModel needs nothing of this package to load (`tf.saved_model.load`,
`keras.layers.TFSMLayer`, TensorFlow Serving). Its signatures:

* serving_default: float32 [batch, height, width, C] in [-1, 1] -> float32 in
  [-1, 1]; height and width multiples of 2**depth. (The signatures declare
  an unknown rank and check rank, channels and size on every call, with a
  message that gives the expected shape.)
* translate_uint8: uint8 [batch, height, width, C] of any size -> uint8 of the
  same size (resized to the training size and back).
* translate_encoded: string [batch] of encoded JPEG/PNG/BMP/GIF -> PNG strings,
  each the size of its input (TensorFlow Serving REST: {"b64": ...}).
* metadata: () -> a JSON string (training flags, direction, image size,
  step, inference mode); also the variable `metadata_json`.
"""

import datetime
import json
import os
import shutil
import sys
import tempfile

from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import config as config_lib

FLAGS = flags.FLAGS


class ExportError(ValueError):
  """A missing run or checkpoint, named with what to do."""


# What tf.saved_model.save writes, and the folder TensorFlow Serving reads
# extra files from: an export folder holds nothing else.
SAVED_MODEL_ENTRIES = frozenset(
    {"saved_model.pb", "fingerprint.pb", "variables", "assets", "assets.extra"})
FORMAT = "pix2pix_tf SavedModel"
# Where the Translator's `metadata_json` variable sits in the SavedModel's
# variables, read without loading (and running) the graph.
METADATA_KEY = "metadata_json/.ATTRIBUTES/VARIABLE_VALUE"


def load_run_config(model_dir: str) -> config_lib.Config:
  path = os.path.join(model_dir, "config.json")
  if not os.path.exists(path):
    raise ExportError(f"{path} not found: {model_dir} is not a training run "
                      "of pix2pix_tf (train one with python -m "
                      "pix2pix_tf.train --model_dir=...).")
  try:
    with open(path) as f:
      return config_lib.Config.from_json(f.read())
  except (OSError, ValueError, TypeError) as e:
    raise ExportError(
        f"{path} is not readable ({str(e).splitlines()[0][:200]}). It "
        "records the run's flags: restore it from a copy, or write it again "
        f"by resuming the run with its flags (--flagfile="
        f"{os.path.join(model_dir, 'flags.txt')}).") from None


def read_metadata(export_dir: str):
  """The metadata of a SavedModel that pix2pix_tf wrote, read from its
  variables; None for any folder that is not one."""
  import tensorflow as tf
  if not os.path.exists(os.path.join(export_dir, "saved_model.pb")):
    return None
  try:
    reader = tf.train.load_checkpoint(
        os.path.join(export_dir, "variables", "variables"))
    metadata = json.loads(reader.get_tensor(METADATA_KEY))
  except (tf.errors.OpError, ValueError, KeyError):
    return None
  if not (isinstance(metadata, dict) and
          str(metadata.get("format", "")).startswith(FORMAT)):
    return None
  return metadata


def load(saved_model: str):
  """tf.saved_model.load, with one ExportError sentence (not TensorFlow's
  pages) for a folder that is not a readable SavedModel of pix2pix_tf."""
  import tensorflow as tf
  if not os.path.exists(os.path.join(saved_model, "saved_model.pb")):
    raise ExportError(f"{saved_model} is not a SavedModel. Export one with "
                      "python -m pix2pix_tf.export --model_dir=RUN.")
  try:
    loaded = tf.saved_model.load(saved_model)
    json.loads(loaded.metadata_json.numpy())
  except Exception as e:  # pylint: disable=broad-except
    first_line = (str(e).strip().splitlines() or [""])[0][:200]
    raise ExportError(
        f"{saved_model} could not be loaded ({type(e).__name__}: "
        f"{first_line}). It is damaged or was not written by pix2pix_tf: "
        "export it again with python -m pix2pix_tf.export.") from None
  return loaded


def check_replaceable(export_dir: str,
                      advice: str = "Choose another --export_dir") -> None:
  """`export_dir` is absent, empty or a SavedModel that pix2pix_tf wrote
  (with nothing else in it); anything else is an ExportError, so that an
  export never deletes a user's files."""
  if not os.path.lexists(export_dir):
    return
  if os.path.islink(export_dir) or not os.path.isdir(export_dir):
    raise ExportError(
        f"{export_dir} exists and is not a folder: an export is a folder. "
        f"{advice}.")
  entries = sorted(os.listdir(export_dir))
  if not entries:
    return
  others = [e for e in entries if e not in SAVED_MODEL_ENTRIES]
  if others or read_metadata(export_dir) is None:
    what = (f"files that an export does not hold ({', '.join(others[:5])}"
            f"{', ...' if len(others) > 5 else ''})" if others else
            "something other than a SavedModel written by pix2pix_tf")
    raise ExportError(
        f"{export_dir} holds {what}; an export replaces only a SavedModel "
        "that pix2pix_tf wrote, and nothing in this folder was touched. "
        f"{advice}, or move the folder away first.")


def restore_generator(config, checkpoint_path):
  """Builds the generator and restores every one of its weights; returns
  (model, step). A checkpoint that lacks a weight or holds one of another
  shape is an ExportError: an export with weights left at their random
  initial values must never be written."""
  import tensorflow as tf
  from pix2pix_tf import models
  from pix2pix_tf import trainer

  if not tf.io.gfile.exists(checkpoint_path + ".index"):
    raise ExportError(f"Checkpoint {checkpoint_path} not found (no "
                      f"{checkpoint_path}.index). Name one listed in the "
                      "run's checkpoints/ folder, or leave --checkpoint out "
                      "for the latest.")
  generator = models.build_generator(config)
  step = tf.Variable(0, dtype=tf.int64, trainable=False)
  checkpoint = tf.train.Checkpoint(generator=generator, step=step)
  # Every weight of the generator (and the step) must come from the file;
  # the discriminator and the optimizers in it are not needed here.
  try:
    trainer.restore(
        checkpoint, checkpoint_path,
        "the generator that the run's config.json describes",
        "Export from the run that wrote this checkpoint, with its own "
        "config.json.")
  except config_lib.ConfigError as e:
    raise ExportError(str(e)) from None
  return generator, int(step.numpy())


def latest_checkpoint(model_dir: str) -> str:
  import tensorflow as tf
  folder = os.path.join(model_dir, "checkpoints")
  path = tf.train.latest_checkpoint(folder)
  if path is None:
    raise ExportError(f"No checkpoint in {folder}. Train first, or name one "
                      "with --checkpoint.")
  return path


def build_module(generator, config, step: int, inference_mode: str,
                 max_pixels: int = None):
  """A tf.Module with the serving signatures around `generator`;
  translate_encoded refuses images larger than `max_pixels` before decoding
  them (default: config_lib.DEFAULT_MAX_PIXELS)."""
  import tensorflow as tf
  from pix2pix_tf import data as data_lib
  from pix2pix_tf import models

  model = models.paper_mode(generator) if inference_mode == "paper" else (
      generator)
  max_pixels = max_pixels or config_lib.DEFAULT_MAX_PIXELS
  multiple = 2 ** config.generator_depth
  size = config.crop_size
  in_channels, out_channels = config.input_channels, config.output_channels
  metadata = {
      "format": f"{FORMAT} 1",
      "direction": config.direction,
      "image_size": size,
      "size_multiple": multiple,
      "input_channels": in_channels,
      "output_channels": out_channels,
      "step": step,
      "inference_mode": inference_mode,
      "max_pixels": max_pixels,
      "generator": config.generator,
      "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      "flags": json.loads(config.to_json()),
  }
  if config.label_palette:
    # The palette travels with the model, for pages that draw label maps.
    from pix2pix_tf import segmentation
    palette = segmentation.load_palette(config.label_palette)
    metadata["palette"] = [{"name": n, "color": [int(v) for v in c]}
                           for n, c in zip(palette.class_names,
                                           palette.colors)]

  class Translator(tf.Module):
    """Serving signatures of a pix2pix generator."""

    def __init__(self):
      super().__init__(name="pix2pix")
      self.model = model
      self.metadata_json = tf.Variable(json.dumps(metadata, sort_keys=True),
                                       trainable=False, name="metadata_json")

    def _generate(self, images):
      return tf.cast(model(images, training=False), tf.float32)

    def _checked(self, images, multiple_of):
      """`images`, once checked to be [batch, height, width, C].

      The signatures declare an unknown rank so that these checks run on
      every call: a request of the wrong rank or channel count must fail with
      this message, not reach the convolutions.
      """
      expected = (f"[batch, height, width, {in_channels}]" + (
          f" with height and width multiples of {multiple_of}"
          if multiple_of > 1 else ""))
      # Padded, so that reading four dimensions cannot fail whatever the rank.
      shape = tf.concat([tf.shape(images), tf.ones([4], tf.int32)], 0)[:4]
      checks = [
          tf.debugging.assert_equal(tf.rank(images), 4,
                                    message=f"expected shape {expected}"),
          tf.debugging.assert_equal(shape[3], in_channels,
                                    message=f"expected shape {expected}")]
      if multiple_of > 1:
        checks.append(tf.debugging.assert_equal(
            tf.math.floormod(shape[1:3], multiple_of), 0, message=(
                f"expected shape {expected}; use translate_uint8 for other "
                "sizes")))
      with tf.control_dependencies(checks):
        images = tf.identity(images)
      return tf.ensure_shape(images, [None, None, None, in_channels])

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32,
                                                name="images")])
    def serving_default(self, images):
      images = self._checked(images, multiple)
      return {"generated_image": self._generate(images)}

    def _translate(self, images_uint8):
      """uint8 [b, h, w, c] -> uint8 [b, h, w, out], via the trained size."""
      height_width = tf.shape(images_uint8)[1:3]
      x = data_lib.resize(tf.cast(images_uint8, tf.float32), size)
      generated = self._generate(data_lib.normalize(x))
      generated = tf.image.resize(generated, height_width, method="bicubic",
                                  antialias=True)
      return data_lib.to_uint8(generated)

    @tf.function(input_signature=[tf.TensorSpec(None, tf.uint8,
                                                name="images")])
    def translate_uint8(self, images):
      return {"generated_image": self._translate(self._checked(images, 1))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                                name="images_bytes")])
    def translate_encoded(self, images_bytes):
      def one(encoded):
        # The decoding rule of training and predict (Exif orientation,
        # alpha on white), in TensorFlow ops that the SavedModel keeps.
        image = data_lib.decode_image(
            data_lib.check_encoded_pixels(encoded, max_pixels))
        if in_channels == 1:
          image = tf.image.rgb_to_grayscale(image)
        return tf.io.encode_png(self._translate(image[None])[0])

      # The output name ends in _bytes so that TensorFlow Serving's REST API
      # returns it base64-encoded as {"b64": ...}.
      return {"generated_image_bytes": tf.map_fn(
          one, images_bytes, fn_output_signature=tf.string)}

    @tf.function(input_signature=[])
    def metadata(self):
      return {"metadata": tf.identity(self.metadata_json)}

  return Translator()


def export(model_dir: str, export_dir: str = None, checkpoint: str = None,
           inference_mode: str = None, max_pixels: int = None) -> str:
  """Writes the SavedModel of a run's generator to `export_dir`.

  The SavedModel is written to a temporary folder beside `export_dir` and
  moved into place when complete: a failure never leaves a half-written
  export where a good one was.

  Returns:
    export_dir.
  """
  config = load_run_config(model_dir)
  export_dir = export_dir or os.path.join(model_dir, "export")
  check_replaceable(export_dir)  # Before the work, not only after it.
  checkpoint = checkpoint or latest_checkpoint(model_dir)
  generator, step = restore_generator(config, checkpoint)
  return save(generator, config, step, export_dir,
              inference_mode or config.inference_mode, max_pixels)


def save(generator, config, step, export_dir, inference_mode,
         max_pixels: int = None) -> str:
  """Saves `generator` with its signatures to `export_dir`, atomically."""
  import tensorflow as tf

  export_dir = os.path.normpath(export_dir)
  check_replaceable(export_dir)
  module = build_module(generator, config, step, inference_mode, max_pixels)
  parent = os.path.dirname(export_dir) or "."
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f".{os.path.basename(export_dir)}-",
                             dir=parent)
  try:
    tf.saved_model.save(module, staging, signatures={
        "serving_default": module.serving_default,
        "translate_uint8": module.translate_uint8,
        "translate_encoded": module.translate_encoded,
        "metadata": module.metadata,
    })
    old = None
    if os.path.lexists(export_dir):
      check_replaceable(export_dir)  # Again: it may have changed meanwhile.
      old = tempfile.mkdtemp(prefix=f".{os.path.basename(export_dir)}-old-",
                             dir=parent)
      os.replace(export_dir, os.path.join(old, "export"))
    os.replace(staging, export_dir)
    if old:
      shutil.rmtree(old, ignore_errors=True)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return export_dir


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  if not FLAGS.model_dir:
    raise app.UsageError("--model_dir is required.")
  try:
    path = export(FLAGS.model_dir, FLAGS.export_dir, FLAGS.checkpoint,
                  FLAGS.inference_mode, FLAGS.max_pixels)
  except ExportError as e:
    sys.exit(f"pix2pix_tf.export: error: {e}")
  print(f"Exported to {path}")


def define_flags():
  """Defines this command's flags (not at import: the training loop imports
  this module, and its flags share names with training's)."""
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
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
