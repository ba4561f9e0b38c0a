"""An export, or a run's export, as a Python function on images:

    translate = pix2pix_tf.load("runs/facades")  # a run, or an export folder
    photo = translate("labels.png")             # a path: a PIL image
    photo = translate(Image.open("labels.png"))  # a PIL image: a PIL image
    array = translate(np.asarray(labels))         # an H x W x C array: one

Each image is decoded and translated as `predict` does it: by the decoding
rule of training, in the export's direction and channels, at the export's
resolution (or `resolution=`), the output as large as the input.
"""

import io
import json
import os
from typing import Optional, Union

import numpy as np
from PIL import Image

from pix2pix_tf import config as config_lib
from pix2pix_tf.serving import saved_model as saved_model_lib
from pix2pix_tf.serving import translation

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]
# The PIL modes a PNG holds, which the decoding rule reads.
PNG_MODES = ("1", "L", "LA", "I;16", "P", "RGB", "RGBA")


class ExportTranslator:
  """`translator(image)`: an image translated by an export; `metadata` is
  the export's (direction, value range, training size, palette, ...)."""

  def __init__(self, export_dir: str, resolution: Optional[str] = None,
               max_pixels: int = config_lib.DEFAULT_MAX_PIXELS):
    loaded = saved_model_lib.load_export(export_dir)
    self.export_dir = export_dir
    self.metadata = json.loads(loaded.metadata_json.numpy().decode())
    self._translate = translation.make_translate(loaded, self.metadata,
                                                 resolution)
    self._decode = translation.decoder()
    self._max_pixels = max_pixels
    self._loaded = loaded  # The signatures live as long as it does.

  def __call__(self, image: ImageLike) -> Union[Image.Image, np.ndarray]:
    """The translation of `image`: a PIL image for a path or a PIL image,
    an array (uint8, or uint16 for a uint16 input) for an array."""
    if isinstance(image, np.ndarray):
      if image.dtype not in (np.uint8, np.uint16) or image.ndim not in (2, 3):
        raise ValueError(
            f"An image array is H x W or H x W x C of uint8 (or uint16); "
            f"got {image.dtype} of shape {image.shape}. Convert [-1, 1] "
            "floats with ((x + 1) * 127.5).round().astype('uint8').")
      self._check_size(image.shape[1], image.shape[0])
      pixels = image if image.ndim == 3 else image[..., None]
      if pixels.shape[-1] not in (1, 3):  # Alpha: by the decoding rule.
        if image.dtype != np.uint8 or pixels.shape[-1] not in (2, 4):
          raise ValueError(
              f"An image array has 1 or 3 channels, or 2 or 4 with alpha "
              f"in uint8; got {image.dtype} with {pixels.shape[-1]}. Drop "
              "or composite the alpha first.")
        pixels = self._decoded(Image.fromarray(image))
      return self._translate(self._in_channels(pixels))
    if isinstance(image, Image.Image):
      pixels = self._decoded(image)
    else:
      pixels = translation.read_image(os.fspath(image), self._decode,
                                      self._max_pixels)
    return to_pil(self._translate(self._in_channels(pixels)))

  def _decoded(self, image: Image.Image) -> np.ndarray:
    """A PIL image's pixels as a file of it would be read: through PNG and
    the decoding rule of training and predict (transparency on white,
    palettes and 16-bit samples as from a file)."""
    self._check_size(image.width, image.height)
    if image.mode in ("CMYK", "YCbCr", "HSV", "LAB"):
      image = image.convert("RGB")
    if image.mode not in PNG_MODES:
      raise ValueError(
          f"A PIL image of mode {image.mode} is not an image's pixels as a "
          "file holds them: convert it to RGB (or L) first.")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return self._decode(buffer.getvalue()).numpy()

  def _check_size(self, width: int, height: int) -> None:
    """ValueError for an image above max_pixels, as files are refused."""
    if width * height > self._max_pixels:
      raise ValueError(
          f"The image has {width}x{height} pixels, more than "
          f"max_pixels={self._max_pixels}: resize it first.")

  def _in_channels(self, pixels: np.ndarray) -> np.ndarray:
    """H x W x 1 or 3 pixels in the export's input channels."""
    if pixels.shape[-1] == 1 and self.metadata["input_channels"] == 3:
      pixels = np.repeat(pixels, 3, axis=-1)
    return translation.split_input(pixels, False, self.metadata)[0]


def to_pil(array: np.ndarray) -> Image.Image:
  """An H x W x C uint8 (or uint16) array as a PIL image."""
  if array.dtype == np.uint16:
    array = (array >> 8).astype(np.uint8)
  return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def load(export_or_run: str, resolution: Optional[str] = None
         ) -> ExportTranslator:
  """The translator of an export folder, or of a training run (its
  `export/`). `resolution`: "native" or "training" (default: the
  export's).

  Raises:
    saved_model.ExportError: naming the folder, when it is neither.
  """
  export_dir = export_or_run
  if not saved_model_lib.is_saved_model(export_dir):
    export_dir = os.path.join(export_or_run, "export")
    if not saved_model_lib.is_saved_model(export_dir):
      raise saved_model_lib.ExportError(
          f"{export_or_run} is neither an export nor a run with one "
          f"(no {export_dir}). Export the run with python -m "
          f"pix2pix_tf.export --model_dir={export_or_run}.")
  return ExportTranslator(export_dir, resolution)
