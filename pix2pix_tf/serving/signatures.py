"""The serving signatures of an exported generator.

* serving_default: float32 [batch, height, width, C] in [-1, 1] -> float32 in
  [-1, 1]; height and width multiples of 2**depth. (The signatures declare
  an unknown rank and check rank, channels and size on every call, with a
  message that gives the expected shape.)
* translate_uint8: uint8 [batch, height, width, C] of any size -> uint8 of the
  same size (resized to the training size and back).
* translate_encoded: string [batch] of encoded JPEG/PNG/BMP/GIF -> PNG strings,
  each the size of its input (TensorFlow Serving REST: {"b64": ...}); an
  image whose header declares more than max_pixels pixels is refused before
  it is decoded.
* metadata: () -> a JSON string (training flags, direction, image size,
  step, inference mode, max_pixels, palette); also the variable
  `metadata_json`.
"""

import datetime
import json
from typing import Dict, Optional

import keras
import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf import data as data_lib
from pix2pix_tf import models

FORMAT = "pix2pix_tf SavedModel"


def export_metadata(config: config_lib.Config, step: int,
                    inference_mode: str, max_pixels: int) -> Dict:
  """What the `metadata` signature answers."""
  metadata = {
      "format": f"{FORMAT} 1",
      "direction": config.direction,
      "image_size": config.crop_size,
      "size_multiple": 2 ** config.generator_depth,
      "input_channels": config.input_channels,
      "output_channels": config.output_channels,
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
    palette = data_lib.load_palette(config.label_palette)
    metadata["palette"] = [{"name": n, "color": [int(v) for v in c]}
                           for n, c in zip(palette.class_names,
                                           palette.colors)]
  return metadata


class ServingModule(tf.Module):
  """The signatures around a generator (see the module docstring).

  Args:
    model: the generator as it runs at inference (paper mode or eval).
    metadata: `export_metadata`'s dict; its sizes and channels are checked
      on every call.
  """

  def __init__(self, model: keras.Model, metadata: Dict):
    super().__init__(name="pix2pix")
    self.model = model
    self.metadata_json = tf.Variable(json.dumps(metadata, sort_keys=True),
                                     trainable=False, name="metadata_json")
    self._size = metadata["image_size"]
    self._multiple = metadata["size_multiple"]
    self._in_channels = metadata["input_channels"]
    self._max_pixels = metadata["max_pixels"]

  def _generate(self, images):
    return tf.cast(self.model(images, training=False), tf.float32)

  def _checked(self, images, multiple_of):
    """`images`, once checked to be [batch, height, width, C].

    The signatures declare an unknown rank so that these checks run on
    every call: a request of the wrong rank or channel count must fail with
    this message, not reach the convolutions.
    """
    channels = self._in_channels
    expected = (f"[batch, height, width, {channels}]" + (
        f" with height and width multiples of {multiple_of}"
        if multiple_of > 1 else ""))
    # Padded, so that reading four dimensions cannot fail whatever the rank.
    shape = tf.concat([tf.shape(images), tf.ones([4], tf.int32)], 0)[:4]
    checks = [
        tf.debugging.assert_equal(tf.rank(images), 4,
                                  message=f"expected shape {expected}"),
        tf.debugging.assert_equal(shape[3], channels,
                                  message=f"expected shape {expected}")]
    if multiple_of > 1:
      checks.append(tf.debugging.assert_equal(
          tf.math.floormod(shape[1:3], multiple_of), 0, message=(
              f"expected shape {expected}; use translate_uint8 for other "
              "sizes")))
    with tf.control_dependencies(checks):
      images = tf.identity(images)
    return tf.ensure_shape(images, [None, None, None, channels])

  @tf.function(input_signature=[tf.TensorSpec(None, tf.float32,
                                              name="images")])
  def serving_default(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """float32 [b, h, w, c] in [-1, 1], at a size the generator takes."""
    images = self._checked(images, self._multiple)
    return {"generated_image": self._generate(images)}

  def _translate(self, images_uint8):
    """uint8 [b, h, w, c] -> uint8 [b, h, w, out], via the trained size."""
    height_width = tf.shape(images_uint8)[1:3]
    x = data_lib.resize(tf.cast(images_uint8, tf.float32), self._size)
    generated = self._generate(data_lib.normalize(x))
    generated = tf.image.resize(generated, height_width, method="bicubic",
                                antialias=True)
    return data_lib.to_uint8(generated)

  @tf.function(input_signature=[tf.TensorSpec(None, tf.uint8,
                                              name="images")])
  def translate_uint8(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """uint8 [b, h, w, c] of any size -> uint8 of the same size."""
    return {"generated_image": self._translate(self._checked(images, 1))}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                              name="images_bytes")])
  def translate_encoded(self, images_bytes: tf.Tensor
                        ) -> Dict[str, tf.Tensor]:
    """Encoded images (JPEG, PNG, BMP, GIF, WebP) -> PNGs."""
    def one(encoded):
      # The decoding rule of training and predict (Exif orientation,
      # alpha on white), in TensorFlow ops that the SavedModel keeps.
      image = data_lib.decode_image(
          data_lib.check_encoded_pixels(encoded, self._max_pixels))
      if self._in_channels == 1:
        image = tf.image.rgb_to_grayscale(image)
      return tf.io.encode_png(self._translate(image[None])[0])

    # The output name ends in _bytes so that TensorFlow Serving's REST API
    # returns it base64-encoded as {"b64": ...}.
    return {"generated_image_bytes": tf.map_fn(
        one, images_bytes, fn_output_signature=tf.string)}

  @tf.function(input_signature=[])
  def metadata(self) -> Dict[str, tf.Tensor]:
    """The export's metadata JSON (flags, step, palette)."""
    return {"metadata": tf.identity(self.metadata_json)}

  def signatures(self) -> Dict:
    """The signatures `tf.saved_model.save` exports."""
    return {"serving_default": self.serving_default,
            "translate_uint8": self.translate_uint8,
            "translate_encoded": self.translate_encoded,
            "metadata": self.metadata}


def build_module(generator: keras.Model, config: config_lib.Config,
                 step: int, inference_mode: str,
                 max_pixels: Optional[int] = None) -> ServingModule:
  """The signatures around `generator` in `inference_mode`; translate_encoded
  refuses images larger than `max_pixels` (default:
  config.DEFAULT_MAX_PIXELS) before decoding them."""
  model = (models.paper_mode(generator) if inference_mode == "paper"
           else generator)
  return ServingModule(model, export_metadata(
      config, step, inference_mode,
      max_pixels or config_lib.DEFAULT_MAX_PIXELS))
