"""The serving signatures of an exported generator.

* serving_default: float32 [batch, height, width, C] in [-1, 1] -> float32 in
  [-1, 1]; height and width multiples of 2**depth. (The signatures declare
  an unknown rank and check rank, channels and size on every call, with a
  message that gives the expected shape.)
* translate_uint8: uint8 [batch, height, width, C] of any size -> uint8 of the
  same size, at the training resolution: resized to the scale the generator
  was trained at (the --crop_size square; width --load_size, aspect kept,
  for scale_width*) and back.
* translate_native: the same at native resolution: the generator runs on
  the image itself, reflect-padded to a multiple of 2**depth and cropped
  back; nothing is resized.
* translate_encoded: string [batch] of encoded JPEG/PNG/BMP/GIF -> PNG strings,
  each the size of its input (TensorFlow Serving REST: {"b64": ...}), at
  the training resolution; an image whose header declares more than
  max_pixels pixels is refused before it is decoded. A 16-bit PNG is
  translated from its 16 bits and answered as a 16-bit PNG.
* translate_encoded_native: the same at native resolution.
* metadata: () -> a JSON string (training flags, direction, image size,
  step, inference mode, resolution, max_pixels, palette); also the
  variable `metadata_json`. Its "resolution" is the one the training run's
  --preprocess implies (or export --resolution): what predict, evaluate
  and serve use unless told otherwise.
"""

import datetime
import json
from typing import Callable, Dict, Optional

import keras
import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf import data as data_lib
from pix2pix_tf import models

FORMAT = "pix2pix_tf SavedModel"


def export_metadata(config: config_lib.Config, step: int,
                    inference_mode: str, max_pixels: int,
                    resolution: Optional[str] = None) -> Dict:
  """What the `metadata` signature answers; `resolution` defaults to what
  the run's --preprocess implies."""
  metadata = {
      "format": f"{FORMAT} 1",
      "direction": config.data.direction,
      "image_size": config.data.crop_size,
      "size_multiple": 2 ** config.model.generator_depth,
      "input_channels": config.data.input_channels,
      "output_channels": config.data.output_channels,
      "step": step,
      "inference_mode": inference_mode,
      "resolution": resolution or data_lib.implied_resolution(
          config.data.preprocess),
      "preprocess": config.data.preprocess,
      "load_size": config.data.load_size,
      "max_pixels": max_pixels,
      "generator": config.model.generator,
      "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      "flags": json.loads(config.to_json()),
  }
  if config.outputs.label_palette:
    # The palette travels with the model, for pages that draw label maps.
    palette = data_lib.load_palette(config.outputs.label_palette)
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
    self._metadata = metadata
    # One function that every signature calls: the generator's graph is
    # traced and stored once, not once per signature and branch.
    self._generate = tf.function(
        self._generate_fn, autograph=False, input_signature=[tf.TensorSpec(
            [None, None, None, self._in_channels], tf.float32)])

  def _generate_fn(self, images):
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
              f"expected shape {expected}; use translate_native (or "
              "translate_uint8) for other sizes")))
    with tf.control_dependencies(checks):
      images = tf.identity(images)
    return tf.ensure_shape(images, [None, None, None, channels])

  @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.float32,
                                              name="images")])
  def serving_default(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """float32 [b, h, w, c] in [-1, 1], at a size the generator takes."""
    images = self._checked(images, self._multiple)
    return {"generated_image": self._generate(images)}

  def _translate(self, images, resolution):
    """uint8 [b, h, w, c] -> uint8 [b, h, w, out] at `resolution`."""
    return data_lib.to_uint8(translate_at(
        self._generate, tf.cast(images, tf.float32), resolution,
        self._metadata))

  @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.uint8,
                                              name="images")])
  def translate_uint8(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """uint8 [b, h, w, c] of any size -> uint8 of the same size, at the
    training resolution."""
    return {"generated_image": self._translate(self._checked(images, 1),
                                               "training")}

  @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.uint8,
                                              name="images")])
  def translate_native(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """uint8 [b, h, w, c] of any size -> uint8 of the same size, at native
    resolution (no resize)."""
    return {"generated_image": self._translate(self._checked(images, 1),
                                               "native")}

  def _translate_encoded(self, images_bytes, resolution):
    """Encoded images (JPEG, PNG, BMP, GIF, WebP) -> PNGs."""
    def one(encoded):
      # The decoding rule of training and predict (Exif orientation,
      # alpha on white), in TensorFlow ops that the SavedModel keeps.
      encoded = data_lib.check_encoded_pixels(encoded, self._max_pixels)
      return tf.cond(data_lib.is_16_bit_png(encoded),
                     lambda: deep(encoded), lambda: shallow(encoded))

    def shallow(encoded):
      image = data_lib.decode_image(encoded)
      if self._in_channels == 1:
        image = tf.image.rgb_to_grayscale(image)
      return tf.io.encode_png(self._translate(image[None], resolution)[0])

    def deep(encoded):
      # A 16-bit PNG is translated from its 16 bits and answered in 16.
      image = tf.cast(data_lib.decode_image(encoded, tf.uint16),
                      tf.float32) / 257.0
      if self._in_channels == 1:
        image = tf.image.rgb_to_grayscale(image)
      generated = translate_at(self._generate, image[None], resolution,
                               self._metadata)[0]
      return tf.io.encode_png(to_uint16(generated))

    # The output name ends in _bytes so that TensorFlow Serving's REST API
    # returns it base64-encoded as {"b64": ...}.
    return {"generated_image_bytes": tf.map_fn(
        one, images_bytes, fn_output_signature=tf.string)}

  @tf.function(autograph=False, input_signature=[tf.TensorSpec([None], tf.string,
                                              name="images_bytes")])
  def translate_encoded(self, images_bytes: tf.Tensor
                        ) -> Dict[str, tf.Tensor]:
    """Encoded images -> PNGs, at the training resolution."""
    return self._translate_encoded(images_bytes, "training")

  @tf.function(autograph=False, input_signature=[tf.TensorSpec([None], tf.string,
                                              name="images_bytes")])
  def translate_encoded_native(self, images_bytes: tf.Tensor
                               ) -> Dict[str, tf.Tensor]:
    """Encoded images -> PNGs, at native resolution."""
    return self._translate_encoded(images_bytes, "native")

  @tf.function(autograph=False, input_signature=[])
  def metadata(self) -> Dict[str, tf.Tensor]:
    """The export's metadata JSON (flags, step, palette)."""
    return {"metadata": tf.identity(self.metadata_json)}

  def signatures(self) -> Dict:
    """The signatures `tf.saved_model.save` exports."""
    return {"serving_default": self.serving_default,
            "translate_uint8": self.translate_uint8,
            "translate_native": self.translate_native,
            "translate_encoded": self.translate_encoded,
            "translate_encoded_native": self.translate_encoded_native,
            "metadata": self.metadata}


def translate_at(generate: Callable[[tf.Tensor], tf.Tensor],
                 images: tf.Tensor, resolution: str, metadata: Dict
                 ) -> tf.Tensor:
  """float32 [b, h, w, c] images in 0..255, any size -> `generate`'s
  float32 [b, h, w, out] in [-1, 1], at `resolution` ("native" or
  "training"; see the module docstring), for the export `metadata`
  describes."""
  multiple = metadata["size_multiple"]
  if resolution == "native":
    return data_lib.through_padding(generate, data_lib.normalize(images),
                                    multiple)
  height_width = tf.shape(images)[1:3]
  if metadata.get("preprocess", "").startswith("scale_width"):
    size = tf.cast(tf.stack(data_lib.scaled_size(
        height_width[0], height_width[1], "scale_width",
        metadata["load_size"], metadata["image_size"])), tf.int32)
  else:
    size = tf.constant([metadata["image_size"]] * 2)
  resized = tf.clip_by_value(tf.image.resize(
      images, size, method="bicubic", antialias=True), 0.0, 255.0)
  generated = data_lib.through_padding(
      generate, data_lib.normalize(resized), multiple)
  return tf.image.resize(generated, height_width, method="bicubic",
                         antialias=True)


def to_uint16(image: tf.Tensor) -> tf.Tensor:
  """Maps [-1, 1] to uint16 0..65535."""
  return tf.cast(tf.round(tf.clip_by_value((image + 1.0) * 32767.5, 0,
                                           65535)), tf.uint16)


def build_module(generator: keras.Model, config: config_lib.Config,
                 step: int, inference_mode: str,
                 max_pixels: Optional[int] = None,
                 resolution: Optional[str] = None) -> ServingModule:
  """The signatures around `generator` in `inference_mode`; translate_encoded
  refuses images larger than `max_pixels` (default:
  config.DEFAULT_MAX_PIXELS) before decoding them; the metadata records
  `resolution` (default: what config.data.preprocess implies)."""
  model = (models.paper_mode(generator) if inference_mode == "paper"
           else generator)
  return ServingModule(model, export_metadata(
      config, step, inference_mode,
      max_pixels or config_lib.DEFAULT_MAX_PIXELS, resolution))
