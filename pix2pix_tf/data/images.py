"""Image files as Pillow reads them: listing, names, the declared size, and
`read_rgb`, the project's decoding rule for the dataset tools and predict."""

import collections
import io
import os
import tempfile
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageOps

from pix2pix_tf import config as config_lib


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
    raise ValueError("Inputs whose names differ only in case or punctuation "
                     "would overwrite each other's outputs; rename them.")
  return names


def check_output_folder(output: str, create: bool = True) -> None:
  """`output` is (or can be made) a folder, or ValueError before any work;
  made now if `create`."""
  existing = os.path.abspath(output)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ValueError(f"--output: {existing} is a file, not a folder. Choose "
                     "a folder to write into.")
  if not create:
    return
  try:
    os.makedirs(output, exist_ok=True)
  except OSError as e:
    raise ValueError(f"--output: {output} cannot be created ({e.strerror})."
                     " Choose another folder.") from None


def check_output_file(path: str, flag: str,
                      example: str = "results.json") -> None:
  """A file named by --`flag` can be written (appended to, if it exists), or
  ValueError naming the flag, before any work: a run's results and a
  participant's first answer are not where a bad path shows up. `example`
  is the file name the message suggests for a folder.
  """
  if os.path.isdir(path):
    raise ValueError(f"--{flag}={path} is a folder; give a file name, such "
                     f"as {os.path.join(path, example)}.")
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise ValueError(f"--{flag}={path}: the folder {folder} does not exist. "
                     "Create it first.")
  try:  # A probe that changes nothing (os.access says yes to root).
    if os.path.exists(path):
      open(path, "ab").close()
    else:
      tempfile.TemporaryFile(dir=folder).close()
  except OSError as e:
    raise ValueError(f"--{flag}={path} cannot be written ({e.strerror}). "
                     "Choose a file in a folder you can write to.") from None


def list_images(folder: str,
                extensions: Sequence[str] = IMAGE_EXTENSIONS) -> List[str]:
  """The sorted paths of the files in `folder` whose names end with one of
  `extensions` (any case).

  Raises:
    ValueError: `folder` is not a folder.
  """
  if not os.path.isdir(folder):
    raise ValueError(f"{folder} is not a folder.")
  return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                if f.lower().endswith(tuple(extensions))
                and os.path.isfile(os.path.join(folder, f)))


class TooLargeError(ValueError):
  """An image that declares more pixels than --max_pixels."""

  def __init__(self, path: str, message: str):
    super().__init__(message)
    self.path = path


def declared_pixels(encoded: bytes) -> Optional[float]:
  """width x height from an encoded image's header (nothing decoded); inf
  for one past Pillow's own bomb limit, None for data that is no image
  Pillow knows."""
  try:
    with Image.open(io.BytesIO(encoded)) as image:
      width, height = image.size
  except Image.DecompressionBombError:
    return float("inf")
  except Exception:  # pylint: disable=broad-except
    return None  # Not an image: whoever decodes it says so.
  return width * height


def declared_size(path: str, upright: bool = False) -> Tuple[int, int]:
  """(width, height) from the file's header: Pillow decodes nothing until
  it is asked to. With `upright`, as the decoding rule turns the image
  (a JPEG whose Exif orientation is 5..8 is transposed: its sides swap).
  Raises TooLargeError for a size past Pillow's own bomb limit, and OSError
  for a header Pillow cannot read."""
  try:
    with Image.open(path) as image:
      width, height = image.size
      if upright and image.format == "JPEG" and (
          image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)):
        width, height = height, width
      return width, height
  except Image.DecompressionBombError as e:
    raise TooLargeError(path, f"{path}: {e}") from None


_ORIENTATION = 0x0112  # The Exif orientation tag.


def check_pixels(path: str, max_pixels: int) -> None:
  """Raises TooLargeError if the file's header declares more than
  `max_pixels` pixels, so that a small file declaring a huge image (a
  decompression bomb) is never decoded."""
  width, height = declared_size(path)
  check_size(path, width, height, max_pixels)


def check_size(path: str, width: int, height: int, max_pixels: int) -> None:
  """TooLargeError if a `width`x`height` image at `path` has more than
  `max_pixels` pixels."""
  if width * height > max_pixels:
    raise TooLargeError(
        path, f"{path} is {width}x{height} = {width * height} pixels, more "
        f"than --max_pixels={max_pixels}. Shrink it, or raise --max_pixels "
        "if the machine has the memory.")


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
  check_pixels(path, max_pixels or config_lib.DEFAULT_MAX_PIXELS)
  with Image.open(path) as image:
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
