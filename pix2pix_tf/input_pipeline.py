"""tf.data pipeline over side-by-side A|B image pairs.

The steps are small pure functions, composed by `make_dataset`:

    load_pair -> random_jitter (training) or resize (evaluation) -> normalize

A split is read from a folder of image files or from the sharded TFRecords of
tools/make_tfrecords.py (a folder with a dataset.json); `open_split` returns
either as a `Split`.

`load_pair` splits a file into its left (A) and right (B) halves and orders
them by `direction` into (input_image, target_image). Both halves then go
through the same resize, crop and flip: they are stacked and transformed once.
"""

import dataclasses
import glob
import hashlib
import json
import os
from typing import List, Sequence, Tuple

import tensorflow as tf
from PIL import Image

from pix2pix_tf import config as config_lib

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# What `decode_image` reads (training folders take IMAGE_EXTENSIONS only).
TENSORFLOW_FORMATS = IMAGE_EXTENSIONS + (".gif", ".webp")

# The first bytes of each accepted format: a quick check that catches files
# that are not images at all before training starts.
_MAGIC = {
    ".jpg": (b"\xff\xd8",), ".jpeg": (b"\xff\xd8",),
    ".png": (b"\x89PNG",), ".bmp": (b"BM",),
}

STANDARD_DATASETS = ("facades", "cityscapes", "maps", "edges2shoes",
                     "edges2handbags", "night2day")


class DatasetError(ValueError):
  """A missing, empty or unreadable dataset, with the path and the remedy."""


def list_images(data_dir: str, split: str) -> Sequence[str]:
  """The sorted image files of `<data_dir>/<split>`.

  Raises:
    DatasetError: the folder is missing or holds no images.
  """
  folder = os.path.join(data_dir, split)
  if not os.path.isdir(folder):
    name = os.path.basename(os.path.normpath(data_dir))
    dest = os.path.dirname(os.path.normpath(data_dir)) or "."
    download = f"python tools/download_dataset.py {name} --dest {dest}"
    if name not in STANDARD_DATASETS:
      download = (f"python tools/download_dataset.py NAME --dest {dest}, "
                  f"NAME one of {', '.join(STANDARD_DATASETS)}")
    raise DatasetError(
        f"Dataset folder {folder} does not exist. Point --data_dir at a "
        "folder with train/ (and optionally val/, test/) subfolders of A|B "
        f"images, or download a standard dataset: {download}.")
  files = sorted(
      os.path.join(folder, f) for f in os.listdir(folder)
      if f.lower().endswith(IMAGE_EXTENSIONS))
  if not files:
    raise DatasetError(
        f"Dataset folder {folder} holds no {'/'.join(IMAGE_EXTENSIONS)} "
        "files. Put the A|B image pairs there, or point --data_dir "
        "elsewhere.")
  return files


def has_split(data_dir: str, split: str) -> bool:
  folder = os.path.join(data_dir, split)
  return os.path.isdir(folder) and any(
      f.lower().endswith(IMAGE_EXTENSIONS) for f in os.listdir(folder))


TFRECORD_INFO = "dataset.json"


def shard_name(split: str, index: int, count: int) -> str:
  return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def encode_record(contents: bytes, name: str) -> bytes:
  """A tf.train.Example with a pair file's bytes, as they are, and its name."""
  feature = {
      "pair": tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[contents])),
      "name": tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[name.encode()])),
  }
  return tf.train.Example(features=tf.train.Features(
      feature=feature)).SerializeToString()


def parse_record(record):
  """(name, contents) of a serialized record."""
  parsed = tf.io.parse_single_example(record, {
      "pair": tf.io.FixedLenFeature([], tf.string),
      "name": tf.io.FixedLenFeature([], tf.string)})
  return parsed["name"], parsed["pair"]


@dataclasses.dataclass(frozen=True)
class Split:
  """A split's data: image files, or TFRecord shards holding `count` pairs."""
  paths: Tuple[str, ...]
  count: int
  tfrecord: bool = False
  description: str = ""

  def without(self, names: Sequence[str]) -> "Split":
    """The split less the named files (folders only)."""
    bad = set(names)
    paths = tuple(p for p in self.paths if p not in bad)
    return dataclasses.replace(self, paths=paths, count=len(paths)) if (
        not self.tfrecord) else self


def is_tfrecord_dataset(data_dir: str) -> bool:
  return os.path.isfile(os.path.join(data_dir, TFRECORD_INFO))


def open_split(data_dir: str, split: str) -> Split:
  """The `split` of a folder dataset or of a TFRecord dataset.

  Raises:
    DatasetError: the split is missing or empty, naming the path.
  """
  if not is_tfrecord_dataset(data_dir):
    files = list_images(data_dir, split)
    return Split(tuple(files), len(files), False,
                 os.path.join(data_dir, split))
  info_path = os.path.join(data_dir, TFRECORD_INFO)
  try:
    with open(info_path) as f:
      info = json.load(f)["splits"][split]
  except KeyError:
    raise DatasetError(f"{info_path} lists no {split} split. Write it with "
                       "tools/make_tfrecords.py from a folder that has "
                       f"{split}/.") from None
  except ValueError as e:
    raise DatasetError(f"{info_path} is not readable ({e}); write the "
                       "dataset again with tools/make_tfrecords.py.") from e
  shards = tuple(os.path.join(data_dir, shard_name(split, i, info["shards"]))
                 for i in range(info["shards"]))
  missing = [p for p in shards if not os.path.exists(p)]
  if missing:
    raise DatasetError(f"{missing[0]} is missing ({len(missing)} of "
                       f"{len(shards)} {split} shards). Write the dataset "
                       "again with tools/make_tfrecords.py.")
  return Split(shards, int(info["pairs"]), True,
               os.path.join(data_dir, f"{split}-*.tfrecord"))


def split_exists(data_dir: str, split: str) -> bool:
  if is_tfrecord_dataset(data_dir):
    try:
      open_split(data_dir, split)
      return True
    except DatasetError:
      return False
  return has_split(data_dir, split)


def check_headers(files: Sequence[str]) -> None:
  """Rejects files whose first bytes are not those of their format, and
  images narrower than 2 pixels (which hold no two halves).

  Reads only each file's header (about 0.1 ms per file), so it is cheap
  even for large datasets. Corrupt image data beyond the header is found
  when decoding (see `find_undecodable`).

  Raises:
    DatasetError: naming the first such file.
  """
  for path in files:
    magic = _MAGIC[os.path.splitext(path)[1].lower()]
    with open(path, "rb") as f:
      head = f.read(8)
    if not head.startswith(magic):
      raise DatasetError(
          f"{path} is not a {os.path.splitext(path)[1]} image (its first "
          "bytes do not match the format). Remove or replace it.")
    try:  # Pillow parses the header and decodes nothing.
      with Image.open(path) as image:
        width, height = image.size
    except Image.DecompressionBombError:
      continue  # Huge, so wide enough; decoding it is the user's choice.
    except OSError as e:
      raise DatasetError(f"{path} has an unreadable header ({e}). Remove or "
                         "replace it.") from None
    if width < 2:
      raise DatasetError(
          f"{path} is {width}x{height} pixels, narrower than 2 pixels: it "
          "cannot hold two halves side by side. Remove or replace it.")


# The Exif orientation is searched for in JPEG segments that start within
# this many bytes (an Exif APP1 segment comes first, or right after JFIF's).
_EXIF_SCAN_BYTES = 64 * 1024
_EXIF_HEADER = (0x45, 0x78, 0x69, 0x66, 0, 0)  # "Exif\0\0"
_ORIENTATION_TAG = 0x0112
_SHORT = 3  # The TIFF type of the orientation tag.


def exif_orientation(contents):
  """The Exif orientation (1..8) of an encoded image, as an int32 scalar.

  Hand-written because TensorFlow has no op that reads Exif, and a Python
  reader (tf.py_function) would not run inside a SavedModel. It walks the
  JPEG header's application segments (APPn and comments) up to the first
  Exif APP1, stopping at the first other segment (the quantisation tables,
  which come before the image data in every JPEG writer's output) or after
  _EXIF_SCAN_BYTES, and reads tag 0x0112 of its first IFD. Anything
  else (no Exif, other formats, a malformed or truncated segment, a value
  outside 1..8) gives 1, never an error: orientation is a display hint, and
  a bad one must not lose an image.
  """
  # The segment that starts last in the scan can reach 64 KiB beyond it.
  head = tf.io.decode_raw(
      tf.strings.substr(contents, 0, 2 * _EXIF_SCAN_BYTES + 4), tf.uint8)
  size = tf.size(head, out_type=tf.int64)
  # Reads past the end give zeros (indices are clipped into the padding),
  # so a truncated file needs no special case; the checks below then fail.
  padded = tf.concat([head, tf.zeros([8], tf.uint8)], 0)

  def byte(i):
    i = tf.clip_by_value(tf.cast(i, tf.int64), 0, size + 7)
    return tf.cast(tf.gather(padded, i), tf.int64)

  def segment(pos, tiff_start, tiff_end):
    marker = byte(pos + 1)
    length = byte(pos + 2) * 256 + byte(pos + 3)
    is_exif = tf.logical_and(tf.equal(marker, 0xE1), length >= 8)
    for i, expected in enumerate(_EXIF_HEADER):
      is_exif = tf.logical_and(is_exif, tf.equal(byte(pos + 4 + i), expected))
    # Fill bytes (0xFF) and markers without a length (TEM, RSTn) are
    # stepped over; any segment but APPn and COM (the header's application
    # part is over), a missing 0xFF or a length under 2 end the search.
    fill = tf.equal(marker, 0xFF)
    standalone = tf.logical_or(
        tf.equal(marker, 0x01),
        tf.logical_and(marker >= 0xD0, marker <= 0xD7))
    has_length = tf.logical_not(tf.logical_or(fill, standalone))
    application = tf.logical_or(
        tf.logical_and(marker >= 0xE0, marker <= 0xEF), tf.equal(marker, 0xFE))
    stop = tf.reduce_any(tf.stack([
        tf.not_equal(byte(pos), 0xFF),
        tf.logical_and(has_length, tf.logical_not(application)),
        tf.logical_and(has_length, length < 2)]))
    step = tf.where(fill, tf.constant(1, tf.int64),
                    tf.where(standalone, tf.constant(2, tf.int64), 2 + length))
    next_pos = tf.where(stop, tf.constant(_EXIF_SCAN_BYTES, tf.int64),
                        pos + step)
    return (next_pos, tf.where(is_exif, pos + 10, tiff_start),
            tf.where(is_exif, pos + 2 + length, tiff_end))

  def searching(pos, tiff_start, tiff_end):
    del tiff_end
    return tf.logical_and(tf.logical_and(tiff_start < 0,
                                         pos < _EXIF_SCAN_BYTES),
                          pos + 4 <= size)

  is_jpeg = tf.logical_and(tf.equal(byte(0), 0xFF), tf.equal(byte(1), 0xD8))
  start = tf.where(is_jpeg, tf.constant(2, tf.int64),
                   tf.constant(_EXIF_SCAN_BYTES, tf.int64))
  minus_one = tf.constant(-1, tf.int64)
  # Each step advances at least one byte, so the loop ends by itself;
  # maximum_iterations bounds a file of nothing but fill bytes.
  _, tiff, end = tf.while_loop(searching, segment,
                               (start, minus_one, minus_one),
                               maximum_iterations=4096)
  end = tf.minimum(end, size)

  # The TIFF structure inside the segment: byte order, 42, IFD0's offset.
  little = tf.logical_and(tf.equal(byte(tiff), 0x49),
                          tf.equal(byte(tiff + 1), 0x49))  # "II"
  big = tf.logical_and(tf.equal(byte(tiff), 0x4D),
                       tf.equal(byte(tiff + 1), 0x4D))  # "MM"

  def u16(i):
    return tf.where(little, byte(i) + 256 * byte(i + 1),
                    256 * byte(i) + byte(i + 1))

  def u32(i):
    return tf.where(little, u16(i) + 65536 * u16(i + 2),
                    65536 * u16(i) + u16(i + 2))

  ifd = tiff + u32(tiff + 4)
  valid = tf.reduce_all(tf.stack([
      tiff >= 0, tf.logical_or(little, big), tf.equal(u16(tiff + 2), 42),
      tiff + 8 <= end, ifd + 2 <= end]))
  # Only the entries (12 bytes each) that lie wholly inside the segment.
  count = tf.where(valid, tf.minimum(u16(ifd), (end - ifd - 2) // 12), 0)
  entries = ifd + 2 + 12 * tf.range(tf.maximum(count, 0))
  matches = tf.logical_and(tf.equal(u16(entries), _ORIENTATION_TAG),
                           tf.equal(u16(entries + 2), _SHORT))
  # The value of a SHORT sits in the first two bytes of the value field.
  value = tf.reduce_max(tf.where(matches, u16(entries + 8), 0))
  in_range = tf.logical_and(value >= 1, value <= 8)
  return tf.cast(tf.where(in_range, value, 1), tf.int32)


def apply_orientation(image, orientation):
  """Turns a decoded (h, w, c) image upright, as PIL's ImageOps.exif_transpose.

  Args:
    image: the pixels as stored.
    orientation: the Exif orientation, 1..8 (1: as stored).
  """
  return tf.switch_case(orientation - 1, [
      lambda: image,  # 1: upright.
      lambda: image[:, ::-1],  # 2: mirrored.
      lambda: image[::-1, ::-1],  # 3: rotated 180 degrees.
      lambda: image[::-1],  # 4: flipped.
      lambda: tf.transpose(image, [1, 0, 2]),  # 5: transposed.
      lambda: tf.image.rot90(image, 3),  # 6: turned 90 degrees clockwise.
      lambda: tf.transpose(image[::-1, ::-1], [1, 0, 2]),  # 7: transverse.
      lambda: tf.image.rot90(image, 1),  # 8: turned 90 counterclockwise.
  ])


def _on_white(color, alpha):
  """`color` composited over white by `alpha` (same dtype, its full range)."""
  white = color.dtype.max
  opacity = tf.cast(alpha, tf.float32) / white
  blended = tf.cast(color, tf.float32) * opacity + white * (1.0 - opacity)
  return tf.cast(tf.round(blended), color.dtype)


DEFAULT_MAX_PIXELS = config_lib.DEFAULT_MAX_PIXELS


def encoded_pixels(contents):
  """width x height as declared in an encoded image's header, int64 scalar.

  Read from the header alone, before any decoding. Hand-written (but for
  JPEG, where tf.image.extract_jpeg_shape reads the header) because
  TensorFlow has no op that reads an image's size without decoding it.
  Knows every format `decode_image` decodes: PNG (IHDR), GIF (the logical
  screen, which TensorFlow decodes into), BMP (both header kinds), WebP
  (VP8, VP8L and VP8X) and JPEG; -1 for anything else, which then fails to
  decode.
  """
  head = tf.io.decode_raw(tf.strings.substr(contents, 0, 32), tf.uint8)
  padded = tf.concat([tf.cast(head, tf.int64), tf.zeros([32], tf.int64)], 0)

  def little(i, n):
    return tf.add_n([padded[i + k] * 256 ** k for k in range(n)])

  def big(i, n):
    return tf.add_n([padded[i + k] * 256 ** (n - 1 - k) for k in range(n)])

  def signed32(value):
    return tf.abs(tf.where(value >= 2 ** 31, value - 2 ** 32, value))

  def starts(offset, magic):
    return tf.equal(tf.strings.substr(contents, offset, len(magic)), magic)

  png = big(16, 4) * big(20, 4)
  gif = little(6, 2) * little(8, 2)
  bmp = tf.where(tf.equal(little(14, 4), 12),
                 little(18, 2) * little(20, 2),  # OS/2 1.x header.
                 signed32(little(18, 4)) * signed32(little(22, 4)))
  # VP8L packs width - 1 and height - 1 into 14 bits each.
  vp8l = ((padded[21] + (padded[22] % 64) * 256 + 1) *
          (padded[22] // 64 + padded[23] * 4 + (padded[24] % 16) * 1024 + 1))
  webp = tf.where(
      starts(12, b"VP8X"), (little(24, 3) + 1) * (little(27, 3) + 1),
      tf.where(starts(12, b"VP8L"), vp8l,
               tf.where(starts(12, b"VP8 "),
                        (little(26, 2) % 16384) * (little(28, 2) % 16384),
                        tf.constant(-1, tf.int64))))
  is_webp = tf.logical_and(starts(0, b"RIFF"), starts(8, b"WEBP"))

  def jpeg():
    shape = tf.cast(tf.image.extract_jpeg_shape(contents), tf.int64)
    return shape[0] * shape[1]

  def other():
    return tf.where(
        starts(0, b"\x89PNG\r\n\x1a\n"), png,
        tf.where(starts(0, b"GIF8"), gif,
                 tf.where(starts(0, b"BM"), bmp,
                          tf.where(is_webp, webp,
                                   tf.constant(-1, tf.int64)))))

  return tf.cond(starts(0, b"\xff\xd8\xff"), jpeg, other)


def check_pixels(contents, max_pixels: int):
  """`contents`, once its header declares at most `max_pixels` pixels
  (an InvalidArgumentError otherwise, raised before any decoding)."""
  pixels = encoded_pixels(contents)
  check = tf.debugging.assert_less_equal(
      pixels, tf.constant(max_pixels, tf.int64), message=(
          f"the image has more than max_pixels={max_pixels} pixels (width "
          "x height)"))
  with tf.control_dependencies([check]):
    return tf.identity(contents)


def decode_image(contents):
  """Encoded image bytes -> uint8 (height, width, 3): the one decoding rule.

  Training, the SavedModel's translate_encoded and predict all decode with
  this function, so a model sees at serving time exactly what it was trained
  on. The rule, which `datasets.read_rgb` follows with Pillow:

  * JPEG (with libjpeg's accurate integer DCT), PNG, BMP, GIF (first
    frame) and WebP; 16-bit PNGs are reduced to 8 bits (the high byte).
  * The Exif orientation of a JPEG is applied (see `exif_orientation`).
  * Gray becomes RGB; palette images become RGB (or RGBA with a
    transparent entry); transparency is composited on white. BMP alpha is
    ignored, as Pillow does: 32-bit BMPs often leave that byte 0.

  Exif in PNG and WebP files, the single transparent colour of gray and RGB
  PNGs and GIF transparency are not used (Pillow would use some of them by
  itself; `read_rgb` does not either).

  Pure TensorFlow: it runs eagerly, in tf.data and inside a SavedModel that
  is loaded without this package.

  Args:
    contents: a scalar string, the file's bytes.

  Returns:
    uint8 (height, width, 3), upright.
  """
  is_jpeg = tf.equal(tf.strings.substr(contents, 0, 3), b"\xff\xd8\xff")
  # INTEGER_ACCURATE is libjpeg's default DCT, the one Pillow uses: the two
  # then give equal bytes (TensorFlow's own default differs by up to 6).
  image = tf.cond(
      is_jpeg,
      lambda: tf.io.decode_jpeg(contents, channels=3,
                                dct_method="INTEGER_ACCURATE"),
      lambda: tf.io.decode_image(contents, channels=0, dtype=tf.uint8,
                                 expand_animations=False))
  channels = tf.shape(image)[-1]
  is_bmp = tf.equal(tf.strings.substr(contents, 0, 2), b"BM")
  channels = tf.where(tf.logical_and(is_bmp, tf.equal(channels, 4)), 3,
                      channels)
  image = tf.switch_case(channels - 1, [
      lambda: tf.tile(image, [1, 1, 3]),  # Gray.
      lambda: _on_white(tf.tile(image[..., :1], [1, 1, 3]), image[..., 1:]),
      lambda: image[..., :3],  # RGB (or a BMP's RGBX).
      lambda: _on_white(image[..., :3], image[..., 3:]),  # RGBA.
  ])
  image = tf.ensure_shape(image, [None, None, 3])
  return apply_orientation(image, exif_orientation(contents))


def _decode(contents, channels):
  # `decode_image` gives RGB; channels=1 then takes its luma.
  image = decode_image(contents)
  if channels == 1:
    image = tf.image.rgb_to_grayscale(image)
  return image


def load_pair(path, direction: str = "AtoB", input_channels: int = 3,
              output_channels: int = 3):
  """Reads an A|B file and returns (input_image, target_image), float32 0..255.

  The left half is A and the right half B (for an odd width B gets the extra
  column, as the reference does). `direction='BtoA'` swaps them.
  """
  return split_pair(_decode(tf.io.read_file(path), 3), direction,
                    input_channels, output_channels)


def split_pair(image, direction: str = "AtoB", input_channels: int = 3,
               output_channels: int = 3):
  """A decoded A|B image (h, w, 3) -> (input_image, target_image) float32."""
  image = tf.cast(image, tf.float32)
  half = tf.shape(image)[1] // 2
  image_a = image[:, :half, :]
  image_b = image[:, half:, :]
  if direction == "BtoA":
    image_a, image_b = image_b, image_a
  return (_to_channels(image_a, input_channels),
          _to_channels(image_b, output_channels))


def _to_channels(image, channels):
  return tf.image.rgb_to_grayscale(image) if channels == 1 else image


def resize(image, size: int):
  """Bicubic, antialiased resize to size x size (the reference uses PIL's)."""
  image = tf.image.resize(image, [size, size], method="bicubic",
                          antialias=True)
  return tf.clip_by_value(image, 0.0, 255.0)


def random_jitter(input_image, target_image, seed, load_size: int = 286,
                  crop_size: int = 256, flip: bool = True):
  """The paper's jitter: resize to load_size, random crop, random mirror.

  Input and target are stacked so that one crop and one flip apply to both.
  Stateless random ops keyed by `seed` (shape [2]) make the result the same
  eagerly and inside tf.data.
  """
  input_image = resize(input_image, load_size)
  target_image = resize(target_image, load_size)
  in_channels = tf.shape(input_image)[-1]
  # Concatenate on channels (the two may differ in channel count).
  stacked = tf.concat([input_image, target_image], axis=-1)
  crop_seed, flip_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 2))
  stacked = tf.image.stateless_random_crop(
      stacked, [crop_size, crop_size, tf.shape(stacked)[-1]], seed=crop_seed)
  if flip:
    stacked = tf.image.stateless_random_flip_left_right(stacked,
                                                        seed=flip_seed)
  return stacked[..., :in_channels], stacked[..., in_channels:]


def normalize(image):
  """Maps 0..255 to [-1, 1], the range of the generator's tanh."""
  return image / 127.5 - 1.0


def to_uint8(image):
  """Maps [-1, 1] back to uint8 0..255."""
  return tf.cast(tf.round(tf.clip_by_value((image + 1.0) * 127.5, 0, 255)),
                 tf.uint8)


def find_undecodable(split: Split) -> List[str]:
  """Every file (or record name) of `split` that is no usable A|B pair: it
  does not decode, or it is narrower than 2 pixels (no two halves).

  One parallel decoding pass; used by --on_bad_image=skip to name each bad
  image once before training, and to name the one that stopped a run.
  """
  def check(name, contents):
    width = tf.shape(_decode(contents, 3))[1]
    with tf.control_dependencies([tf.debugging.assert_greater_equal(
        width, 2, message="narrower than 2 pixels")]):
      return name, tf.identity(width)

  dataset = _named_contents(split, input_context=None)
  dataset = dataset.map(check, num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.ignore_errors()
  good = {name.decode() for name, _ in dataset.as_numpy_iterator()}
  if not split.tfrecord:
    return [p for p in split.paths if p not in good]
  names = _named_contents(split, None).map(lambda name, _: name)
  return sorted({n.decode() for n in names.as_numpy_iterator()} - good)


def _named_contents(split: Split, input_context) -> tf.data.Dataset:
  """(name, encoded bytes) of every pair, in order, sharded across input
  pipelines. (Training streams are built from `_shard_paths` and `_read` by
  `make_dataset`, which skips before it reads.)"""
  return _read(split, _shard_paths(split, input_context), deterministic=True)


def _shard_paths(split: Split, input_context) -> tf.data.Dataset:
  """This input pipeline's part of the split's files (or TFRecord shards)."""
  paths = tf.data.Dataset.from_tensor_slices(list(split.paths))
  if input_context is not None and input_context.num_input_pipelines > 1:
    # Shard by file (image files or TFRecord shards) before anything is
    # read, so each worker reads only its own part.
    paths = paths.shard(input_context.num_input_pipelines,
                        input_context.input_pipeline_id)
  return paths


def _read(split: Split, paths: tf.data.Dataset,
          deterministic: bool) -> tf.data.Dataset:
  """(name, encoded bytes) for a dataset of image paths or TFRecord shards."""
  if not split.tfrecord:
    return paths.map(lambda path: (path, tf.io.read_file(path)),
                     num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=deterministic)
  # Several shards are read at once; with deterministic=False records come
  # in whichever order the reads finish, so --deterministic fixes it.
  records = paths.interleave(tf.data.TFRecordDataset,
                             cycle_length=tf.data.AUTOTUNE,
                             num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=deterministic)
  return records.map(parse_record, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=deterministic)


# Bumped whenever what the cache holds changes (the decoding rule, say), so
# that no cache written by an older version is read back.
_CACHE_FORMAT = 2  # 2: decode_image (Exif orientation, alpha on white).


def cache_path(prefix: str, split: Split, config, input_context=None) -> str:
  """The disk-cache file of this split and configuration under `prefix`.

  The name carries a digest of what is cached: the split's files (names,
  sizes and modification times, or the TFRecord shards'), this pipeline's
  shard, and the settings that shape a pair. Another split, another
  configuration or changed files give another file, so a cache is never read
  back for data it does not hold; it is rebuilt instead.
  """
  files = []
  for path in split.paths:
    try:
      info = os.stat(path)
      files.append([path, info.st_size, info.st_mtime_ns])
    except OSError:
      files.append([path, None, None])
  shard = ([input_context.num_input_pipelines, input_context.input_pipeline_id]
           if input_context is not None else [1, 0])
  what = {"format": _CACHE_FORMAT, "files": files, "tfrecord": split.tfrecord,
          "shard": shard, "direction": config.direction,
          "load_size": config.load_size, "crop_size": config.crop_size,
          "input_channels": config.input_channels,
          "output_channels": config.output_channels}
  digest = hashlib.sha256(json.dumps(what).encode()).hexdigest()[:16]
  return f"{prefix}-{digest}"


def _remove_stale_cache_files(path: str) -> None:
  """Removes what a killed run left of an unfinished cache at `path`.

  TensorFlow finishes a disk cache (writes `<path>.index`) only after a
  whole pass; a run killed before that leaves a lockfile that makes every
  later run fail with "a concurrent caching iterator". The path is unique to
  this split, configuration and input pipeline, so no other live run of the
  same data writes it.
  """
  if os.path.exists(path + ".index"):
    return
  for leftover in glob.glob(glob.escape(path) + "_*.lockfile") + glob.glob(
      glob.escape(path) + "_*.tempstate*"):
    os.remove(leftover)


def make_dataset(split, config, batch_size: int, training: bool,
                 input_context=None, with_names: bool = False,
                 skip: int = 0, cache: str = "") -> tf.data.Dataset:
  """The batched dataset of (input_image, target_image) in [-1, 1].

  Args:
    split: a `Split` from `open_split`, or a list of image paths.
    config: the run's Config (direction, sizes, flip, channels, seed,
      shuffle_buffer, deterministic, on_bad_image).
    batch_size: the batch size of this input pipeline (per replica under
      `distribute_datasets_from_function`).
    training: jitter, shuffle and repeat forever; otherwise one pass, resized
      to crop_size, in order.
    input_context: a `tf.distribute.InputContext`; shards the files across
      input pipelines (workers).
    with_names: evaluation only: yield (names, input_image, target_image).
    skip: training only: leave out this many elements of the stream first
      (a resumed run skips what it already trained on).
    cache: training only: "memory", or a path prefix for a disk cache of the
      decoded pairs (`cache_path` names the file). Evaluation makes one pass
      and is never cached.
  """
  if not isinstance(split, Split):
    split = Split(tuple(split), len(split))
  if cache and not training:
    raise ValueError("Only training data is cached: evaluation makes one "
                     "pass over its split.")
  skip_bad = getattr(config, "on_bad_image", "error") == "skip"
  deterministic = config.deterministic or not training
  # --shuffle_buffer counts elements (file names, records, or cached pairs);
  # 0 shuffles the whole split, as the reference's data loader does.
  buffer = config.shuffle_buffer or max(split.count, 1)

  def decode(name, contents):
    # Decoded pairs stay uint8 until after the cache: a quarter of float32.
    return name, _decode(contents, 3)

  def pair(image):
    return split_pair(image, config.direction, config.input_channels,
                      config.output_channels)

  paths = _shard_paths(split, input_context)
  if not training:
    dataset = _read(split, paths, deterministic=True)
  elif cache:
    # The decoded pairs are cached after the first pass and shuffled after
    # the cache, so each epoch still comes in a new order. (The first pass
    # reads every file to fill the cache, resumed or not.)
    dataset = _read(split, paths, deterministic).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic)
    if skip_bad:
      dataset = dataset.ignore_errors()
    if cache != "memory":
      cache = cache_path(cache, split, config, input_context)
      _remove_stale_cache_files(cache)
    dataset = dataset.cache("" if cache == "memory" else cache)
    dataset = dataset.shuffle(buffer, seed=config.seed,
                              reshuffle_each_iteration=True)
  elif not split.tfrecord:
    # Folders: the file names are shuffled (cheap) and nothing is read
    # before the skip below, so resuming late in a run costs no reads.
    dataset = paths.shuffle(buffer, seed=config.seed,
                            reshuffle_each_iteration=True)
  else:
    # TFRecords: shards in a new order each epoch, then records through a
    # shuffle buffer. Records must be read to be counted, so a resumed run
    # reads (but does not decode) the records it skips.
    dataset = _read(split, paths.shuffle(len(split.paths), seed=config.seed,
                                         reshuffle_each_iteration=True),
                    deterministic)
    dataset = dataset.shuffle(buffer, seed=config.seed,
                              reshuffle_each_iteration=True)
  if training:
    # Shuffle before repeat, so each epoch is a full pass and epochs do not
    # blend into each other.
    dataset = dataset.repeat()
    # A per-element index gives each element its own stateless seed.
    dataset = dataset.enumerate()
    if skip:
      # Before decoding (and, for folders, before reading).
      dataset = dataset.skip(skip)
    if not cache and not split.tfrecord:
      dataset = dataset.map(
          lambda index, path: (index, (path, tf.io.read_file(path))),
          num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)

    def preprocess(index, element):
      name, contents = element
      image = contents if cache else _decode(contents, 3)
      input_image, target_image = pair(image)
      seed = tf.stack([tf.constant(config.seed, tf.int64), index])
      input_image, target_image = random_jitter(
          input_image, target_image, seed, config.load_size,
          config.crop_size, config.flip)
      return normalize(input_image), normalize(target_image)
  else:
    def preprocess(name, contents):
      input_image, target_image = pair(_decode(contents, 3))
      input_image = normalize(resize(input_image, config.crop_size))
      target_image = normalize(resize(target_image, config.crop_size))
      if with_names:
        return name, input_image, target_image
      return input_image, target_image

  dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=deterministic)
  if skip_bad and not cache:
    # Bad files were named before training (find_undecodable); this drops
    # any that remain, e.g. records of a TFRecord dataset.
    dataset = dataset.ignore_errors()
  # Under a strategy every replica needs a full batch: drop the remainder in
  # training. Evaluation keeps every example.
  dataset = dataset.batch(batch_size, drop_remainder=training)
  return dataset.prefetch(tf.data.AUTOTUNE)
