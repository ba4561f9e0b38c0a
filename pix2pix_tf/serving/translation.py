"""Translating image files with an export, as `python -m pix2pix_tf.predict`
does: one image per call, by the decoding rule of training, each written as
a PNG; paired inputs also give inputs/, targets/ and an index.html page."""

import html
import io
import json
import os
import sys
from typing import Callable, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from pix2pix_tf import config as config_lib
from pix2pix_tf import errors
from pix2pix_tf import data as data_lib
from pix2pix_tf import outputs
from pix2pix_tf.serving import saved_model as saved_model_lib
from pix2pix_tf.serving import signatures
from pix2pix_tf.serving import tiling


def list_inputs(path: str) -> List[str]:
  """`path` itself if it is a file, else the images in the folder."""
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    raise errors.CommandError(f"--input={path} is neither a file nor a folder.")
  return data_lib.list_images(path, required=True)


def encode_png(array: np.ndarray) -> bytes:
  """An HxWxC uint8 array (C of 1 or 3) as PNG bytes; a uint16 array as a
  16-bit PNG."""
  if array.dtype == np.uint16:
    # Pillow cannot write 16-bit RGB; TensorFlow's PNG encoder can.
    return tf.io.encode_png(array).numpy()
  buffer = io.BytesIO()
  Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(
      buffer, format="PNG")
  return buffer.getvalue()


def read_image(path: str, decode: Callable,
               max_pixels: Optional[int] = None) -> np.ndarray:
  """The file's pixels by the decoding rule of training and the SavedModel
  (`decode`: `decoder()`, uint16 for 16-bit PNGs); Pillow, by the same
  rule, for what TensorFlow cannot read (TIFF, the BMPs of
  data_lib.is_unread_bmp). An image larger than `max_pixels` is refused
  (data_lib.TooLargeError) before it is decoded; one that cannot be
  decoded is an UnreadableImageError naming it."""
  max_pixels = max_pixels or config_lib.DEFAULT_MAX_PIXELS
  try:
    if path.lower().endswith(data_lib.TENSORFLOW_FORMATS):
      # Its size checked from the header before the file is read whole.
      data_lib.check_pixels(path, max_pixels, for_tensorflow=False)
      with open(path, "rb") as f:
        contents = f.read()
      if not data_lib.is_unread_bmp(contents):
        return decode(contents).numpy()
    return np.asarray(data_lib.read_rgb(path, max_pixels))  # Checks it too.
  except errors.CommandError:
    raise
  except (tf.errors.OpError, OSError, ValueError) as e:
    if errors.out_of_space(e):
      raise
    raise UnreadableImageError(
        f"{path} is not a readable image (corrupt, truncated, or of a "
        "format not read here). Replace it, or move it away.") from None


class UnreadableImageError(errors.CommandError):
  """An input image that does not decode."""


def decoder() -> Callable[[bytes], tf.Tensor]:
  """Encoded bytes -> the decoded image: uint16 for a 16-bit PNG (read at
  full precision), else uint8."""
  spec = [tf.TensorSpec([], tf.string)]
  shallow = tf.function(data_lib.decode_image, input_signature=spec)
  deep = tf.function(lambda contents: data_lib.decode_image(
      contents, tf.uint16), input_signature=spec)
  return lambda contents: (deep if bool(data_lib.is_16_bit_png(contents))
                           else shallow)(contents)


def split_input(image: np.ndarray, paired: bool, metadata: dict
                ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
  """(input_image, target_image or None) of a file's pixels: a pair's halves
  in the export's direction, in the export's input channels. An odd-width
  pair's right half loses its extra column, as in training and evaluate."""
  target = None
  if paired:
    half = image.shape[1] // 2
    image, target = image[:, :half], image[:, half:2 * half]
    if metadata["direction"] == "BtoA":
      image, target = target, image
  if metadata["input_channels"] == 1:
    image = np.asarray(tf.image.rgb_to_grayscale(image))
  return image, target


def output_names(files: Sequence[str]) -> List[str]:
  """PNG names for `files`; inputs whose stems collide keep their extension
  in the name, which is reported."""
  names = data_lib.png_names(files)
  for path, name in zip(files, names):
    if name != os.path.splitext(os.path.basename(path))[0] + ".png":
      print(f"{path} shares its name with another input: written as {name}.",
            file=sys.stderr)
  return names


def output_files(names: Sequence[str], paired: bool) -> List[str]:
  """Everything translating files of these output `names` writes."""
  if not paired:
    return list(names)
  return [f"{folder}{name}" for name in names
          for folder in ("", "inputs/", "targets/")] + ["index.html"]


def failure(path: str, error: Exception) -> str:
  """Why `path` was skipped: the sentence of an expected failure (which
  names the file), else the error's first line (TensorFlow's errors carry
  their whole stack)."""
  if isinstance(error, errors.CommandError):
    return str(error)
  text = (str(error).strip().splitlines() or [""])[0]
  return f"{path}: {type(error).__name__}: {text[:300]}"


def make_translate(loaded: tf.Module, metadata: dict,
                   resolution: Optional[str] = None, tile: int = 0,
                   overlap: int = 32) -> Callable[[np.ndarray], np.ndarray]:
  """A translate function: an H x W x C image -> its H x W x C_out
  translation, of the same dtype (uint8, or uint16 translated from its 16
  bits), by the export `loaded` at `resolution` (default: the export's); in
  blended tiles of `tile` pixels (native resolution) when `tile` is not 0.

  Raises:
    ValueError: naming the flag, for a tiling the generator cannot run,
      tiles at the training resolution, or native resolution from an
      export that predates it (`saved_model.translate_signature`).
  """
  if tile and resolution == "training":
    raise errors.CommandError("--tile translates at native resolution: leave out "
                     "--resolution=training (or --tile).")
  # Tiles are native whatever the export's default.
  resolution = "native" if tile else saved_model_lib.resolution_of(
      metadata, resolution)
  signature = loaded.signatures[saved_model_lib.translate_signature(
      loaded.signatures, metadata, resolution, "uint8")]
  floats = loaded.signatures["serving_default"]

  def translate(image):
    if image.dtype == np.uint16:  # From its 16 bits, into 16 bits.
      generated = signatures.translate_at(
          lambda x: floats(images=x)["generated_image"],
          tf.constant(image[None], tf.float32) / 257.0, resolution,
          metadata)
      return signatures.to_uint16(generated)[0].numpy()
    return signature(images=tf.constant(image[None]))[
        "generated_image"][0].numpy()

  if not tile:
    return translate
  tiling.check_tiling(tile, overlap, metadata["size_multiple"])
  if metadata["inference_mode"] == "paper":
    print("Note: a paper-mode export normalises each tile by its own "
          "statistics (and keeps dropout on), which can show between tiles; "
          "an eval-mode export (export --inference_mode=eval) blends "
          "seamlessly.", file=sys.stderr)
  return lambda image: tiling.translate_tiled(translate, image, tile, overlap)


def translate_files(saved_model: str, files: Sequence[str],
                    output: outputs.Folder, paired: bool = False,
                    max_pixels: Optional[int] = None,
                    resolution: Optional[str] = None, tile: int = 0,
                    overlap: int = 32) -> List[str]:
  """Translates `files` into the folder `output`; returns the files that
  failed. What `output_files` names is checked before the model loads.

  Every image is written as PNG (lossless: a JPEG output would add its own
  artefacts to what FID or a perceptual study then measures). `resolution`,
  `tile` and `overlap`: see `make_translate`.
  """
  names = output_names(files)
  output.check(output_files(names, paired))
  loaded = saved_model_lib.load_export(saved_model)
  metadata = json.loads(loaded.metadata_json.numpy().decode())
  translate = make_translate(loaded, metadata, resolution, tile, overlap)
  decode = decoder()
  rows, failed = [], []
  progbar = keras.utils.Progbar(len(files), unit_name="image",
                                verbose=1 if sys.stdout.isatty() else 2)
  for i, (path, name) in enumerate(zip(files, names)):
    try:
      input_image, target = split_input(
          read_image(path, decode, max_pixels), paired, metadata)
      generated = translate(input_image)
      output.write_bytes(name, encode_png(generated))
      if paired:
        output.write_bytes(f"inputs/{name}", encode_png(input_image))
        output.write_bytes(f"targets/{name}", encode_png(target))
        rows.append((os.path.basename(path), f"inputs/{name}", name,
                     f"targets/{name}"))
    except outputs.OutputError:
      raise  # A file of the user's appeared meanwhile: stop, as at start.
    except Exception as e:  # pylint: disable=broad-except
      if errors.out_of_space(e):
        raise
      # One bad file must not stop the rest: report it and go on.
      failed.append(path)
      print(f"\nSkipped: {failure(path, e)}", file=sys.stderr)
    progbar.update(i + 1)
  if paired:
    output.write_text("index.html", index_page(rows, metadata))
  return failed


def index_page(rows: Sequence[Tuple[str, str, str, str]],
               metadata: dict) -> str:
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
  return "\n".join(lines) + "\n"
