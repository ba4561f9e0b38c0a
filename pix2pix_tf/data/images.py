"""Image files as Pillow reads them: listing, names, `check_pixels` (the
gate every image passes before it is decoded: the declared size, from the
header, against --max_pixels), and `read_rgb`, the project's decoding rule
for the dataset tools and predict."""

import collections
import io
import os
import struct
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageOps

from pix2pix_tf import config as config_lib
from pix2pix_tf import errors


# What the dataset tools and predict read (with Pillow).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif",
                    ".tiff", ".gif")
# What a training folder holds: the formats whose first bytes
# sources.check_headers knows, and TensorFlow decodes.
PAIR_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def png_names(files: Sequence[str]) -> List[str]:
  """The PNG name of each input's output: its stem plus ".png".

  Inputs whose stems collide (a.jpg and a.png) keep their extension in the
  name (a_jpg.png, a_png.png) so that no output overwrites another.
  """
  stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
  counts = collections.Counter(stems)
  names = []
  for path, stem in zip(files, stems):
    if counts[stem] > 1:
      stem = os.path.basename(path).replace(".", "_")
    names.append(f"{stem}.png")
  if len(set(names)) != len(names):
    raise errors.CommandError(
        "Inputs whose names differ only in case or punctuation would "
        "overwrite each other's outputs; rename them.")
  return names


def list_images(folder: str, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                required: bool = False) -> List[str]:
  """The sorted paths of the files in `folder` whose names end with one of
  `extensions` (any case).

  Raises:
    CommandError: `folder` is not a folder, or holds none of them when
      `required` (the folders a study or predict reads).
  """
  if not os.path.isdir(folder):
    raise errors.CommandError(f"{folder} is not a folder.")
  files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                 if f.lower().endswith(tuple(extensions))
                 and os.path.isfile(os.path.join(folder, f)))
  if required and not files:
    raise errors.CommandError(
        f"{folder} holds no images ({', '.join(extensions)}).")
  return files


class RefusedImageError(errors.CommandError):
  """An image refused before it is decoded; `path` names it."""

  def __init__(self, path: str, message: str):
    super().__init__(message)
    self.path = path


class UnsupportedImageError(RefusedImageError):
  """An image of a kind that is not read (an animated WebP, some BMPs)."""


class TooLargeError(RefusedImageError):
  """An image that declares more pixels than --max_pixels."""


class Declared(collections.namedtuple("Declared", "width height frames")):
  """An image's size as its header declares it. TensorFlow decodes every
  frame of an animated GIF or WebP (then keeps the first), so the pixels
  that decoding holds are those of every frame."""

  @property
  def pixels(self) -> int:
    """What decoding holds: width x height x frames."""
    return self.width * self.height * self.frames


# The formats whose every frame TensorFlow's decode_image decodes.
_ANIMATED_FORMATS = ("GIF", "WEBP")


def check_pixels(source: Union[str, bytes], max_pixels: int,
                 name: Optional[str] = None,
                 for_tensorflow: bool = True) -> Declared:
  """The gate every image passes before it is decoded: its size as its
  header declares it (every frame of an animation counted), nothing
  decoded, and a refusal above `max_pixels` pixels, so that a small file
  declaring a huge image (a decompression bomb) is never decoded.

  Args:
    source: a path, or an encoded image's bytes.
    max_pixels: the most width x height allowed (--max_pixels).
    name: what a refusal calls the image (default: the path).
    for_tensorflow: whether TensorFlow's decoder reads it next (Pillow's
      otherwise, which reads every BMP).

  Raises:
    TooLargeError: naming the image, its declared size and --max_pixels
      (sizes past Pillow's own bomb limit included).
    UnsupportedImageError: an animated WebP, or (`for_tensorflow`) a BMP
      of a kind TensorFlow does not read (`is_unread_bmp`).
    OSError: for data whose header Pillow cannot read.
  """
  name = name or _label(source)
  try:
    header = _open_header(source)
  except TooLargeError:
    raise TooLargeError(name, (
        f"{name} declares more than {2 * Image.MAX_IMAGE_PIXELS} pixels, and "
        "its exact size cannot be read to check it against --max_pixels="
        f"{max_pixels}. Shrink it.")) from None
  with header:
    width, height = header.size
    check_size(name, width, height, max_pixels)
    image_format, frames = header.format, _frames(header)
  if (for_tensorflow and image_format == "BMP" and
      is_unread_bmp(_read_head(source, 66))):
    raise UnsupportedImageError(name, f"{name} is {UNREAD_BMP}.")
  if image_format == "WEBP" and frames > 1:
    raise UnsupportedImageError(
        name, f"{name} is an animated WebP image, which is not read "
        "(TensorFlow's WebP decoder corrupts memory on animations). Send a "
        "still image, its first frame.")
  declared = Declared(width, height, frames)
  if declared.pixels > max_pixels:
    raise TooLargeError(name, (
        f"{name} is an animation of {declared.frames} frames of "
        f"{width}x{height}, {declared.pixels} pixels when decoded, more than "
        f"--max_pixels={max_pixels}. Send its first frame as a still image, "
        "or raise --max_pixels if the machine has the memory."))
  return declared


# The BMPs TensorFlow's decoder reads as Pillow does: a Windows header (40
# bytes or more), uncompressed pixels of 8, 24 or 32 bits, or 32 bits whose
# BI_BITFIELDS masks are those of uncompressed ones (it ignores the masks).
# It fails on others, or decodes them wrong: where it decodes, they are
# refused (`check_pixels` names the file); where Pillow decodes, read.
BMP_SIGNATURE = b"BM"
BMP_BITS = (8, 24, 32)
BMP_MASKS = (0xFF0000, 0xFF00, 0xFF)  # Red, green, blue.
UNREAD_BMP = ("a BMP of a kind that TensorFlow does not read as Pillow does "
              "(1, 4 or 16 bits per pixel, RLE-compressed, unusual colour "
              "masks or an OS/2 header); save it as PNG")


def is_unread_bmp(contents: bytes) -> bool:
  """Whether encoded bytes (the first 66 suffice) are a BMP of a kind
  TensorFlow does not read (see the rule above BMP_SIGNATURE); the Python
  twin of `headers.unread_bmp`."""
  if not contents.startswith(BMP_SIGNATURE):
    return False
  head = contents[:66].ljust(66, b"\0")
  size, = struct.unpack_from("<I", head, 14)
  bits, compression = struct.unpack_from("<HI", head, 28)
  if size < 40:
    return True
  if compression == 3 and bits == 32:
    return struct.unpack_from("<III", head, 54) != BMP_MASKS
  return compression != 0 or bits not in BMP_BITS


def _frames(header: Image.Image) -> int:
  """The frames decoding reads: those of an animated GIF or WebP (counted
  by walking the file's blocks, none decoded), else 1."""
  if header.format not in _ANIMATED_FORMATS:
    return 1
  return getattr(header, "n_frames", 1)


def declared_size(source: Union[str, bytes],
                  upright: bool = False) -> Tuple[int, int]:
  """(width, height) from the header of `source` (a path, or encoded
  bytes): Pillow decodes nothing until it is asked to. With `upright`, as
  the decoding rule turns the image (a JPEG whose Exif orientation is 5..8
  is transposed: its sides swap). Sizes past Pillow's own bomb limit are
  read too. Raises OSError for a header Pillow cannot read, TooLargeError
  for an image past that limit whose plugin checks it too (WebP; a GIF
  frame larger than its screen)."""
  with _open_header(source) as image:
    width, height = image.size
    if upright and image.format == "JPEG" and (
        image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)):
      width, height = height, width
    return width, height


_ORIENTATION = 0x0112  # The Exif orientation tag.


def _open_header(source: Union[str, bytes]) -> Image.Image:
  """`source` opened by Pillow, its header read and nothing decoded.

  Image.open refuses an image past Pillow's own bomb limit without saying
  its size; the format's plugin then reads the header as Image.open does
  (Image.ID, Image.OPEN), without that check, so that a refusal can say it.
  """
  def file():
    return source if isinstance(source, str) else io.BytesIO(source)

  try:
    return Image.open(file())
  except Image.DecompressionBombError:
    pass
  except OSError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # Some plugins raise ValueError and others for a damaged header.
    raise OSError(f"{_label(source)} has an unreadable header ({e})") from e
  with file() if isinstance(source, bytes) else open(source, "rb") as head:
    prefix = head.read(16)
  for format_id in Image.ID:
    factory, accept = Image.OPEN[format_id]
    matches = accept is None or accept(prefix)
    if matches and not isinstance(matches, str):  # A str: a mere warning.
      try:
        return factory(file(), None)
      except (SyntaxError, IndexError, TypeError, ValueError, EOFError,
              OSError, struct.error, Image.DecompressionBombError):
        continue
  raise TooLargeError(_label(source), f"{_label(source)} declares more "
                      "pixels than Pillow reads the size of.")


def _read_head(source: Union[str, bytes], size: int) -> bytes:
  """The first `size` bytes of a path's file, or of encoded bytes."""
  if isinstance(source, bytes):
    return source[:size]
  with open(source, "rb") as file:
    return file.read(size)


def _label(source: Union[str, bytes]) -> str:
  return source if isinstance(source, str) else "the image"


def check_size(path: str, width: int, height: int, max_pixels: int) -> None:
  """TooLargeError if a `width`x`height` image at `path` has more than
  `max_pixels` pixels."""
  if width * height > max_pixels:
    raise TooLargeError(
        path, f"{path} is {width}x{height} = {width * height} pixels, more "
        f"than --max_pixels={max_pixels}. Shrink it, or raise --max_pixels "
        "if the machine has the memory.")


def open_image(path: str, max_pixels: int) -> Image.Image:
  """The image at `path` opened by Pillow, nothing decoded yet, once its
  header passed `check_pixels`; opened past Pillow's own bomb limit too,
  since --max_pixels is the limit (and its refusal the one a user reads)."""
  check_pixels(path, max_pixels, for_tensorflow=False)
  return _open_header(path)


def read_rgb(path: str, max_pixels: Optional[int] = None) -> Image.Image:
  """An image as RGB by the project's one decoding rule, with Pillow.

  The rule is `decoding.decode_image`'s (which training, the
  SavedModel and predict use): the Exif orientation of a JPEG applied,
  transparency (RGBA, LA, palette with transparency) composited on white,
  16-bit samples reduced to their high byte. Pillow reads more formats
  (TIFF), which the dataset tools accept. Raises OSError (or ValueError) for
  a file Pillow cannot read, TooLargeError above `max_pixels` (default:
  config_lib.DEFAULT_MAX_PIXELS), before decoding.
  """
  with open_image(path, max_pixels or config_lib.DEFAULT_MAX_PIXELS) as image:
    image.load()
    source_format = image.format
    if source_format == "JPEG":
      image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I"):
      # 16-bit gray: Pillow's convert() clips at 255; the rule keeps the
      # high byte, as tf.io.decode_image(dtype=uint8) does.
      image = Image.fromarray(
          (np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8), "L")
    # BMP alpha and GIF transparency are ignored, as decode_image does.
    if source_format not in ("BMP", "GIF") and (
        image.mode in ("RGBA", "LA", "PA") or (
            image.mode == "P" and "transparency" in image.info)):
      rgba = np.asarray(image.convert("RGBA"), np.float32)
      # The same arithmetic as decoding's, so both give equal bytes.
      opacity = rgba[..., 3:] / 255.0
      on_white = rgba[..., :3] * opacity + 255.0 * (1.0 - opacity)
      return Image.fromarray(np.round(on_white).astype(np.uint8), "RGB")
    return image.convert("RGB")
