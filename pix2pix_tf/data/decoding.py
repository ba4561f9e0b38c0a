"""One decoding rule for every path (tf.data, the SavedModel, predict):
JPEG Exif orientation applied, transparency composited on white, 16-bit
PNGs at 16 bits where asked (else their high byte). What a header declares,
read before decoding, is `headers`'."""


import functools
from typing import Callable

import tensorflow as tf

from pix2pix_tf.data import headers
from pix2pix_tf.data import images


# What `decode_image` reads (training folders take IMAGE_EXTENSIONS only).
TENSORFLOW_FORMATS = images.PAIR_EXTENSIONS + (".gif", ".webp")


# The Exif orientation is searched for in JPEG segments that start within
# this many bytes (an Exif APP1 segment comes first, or right after JFIF's).
_EXIF_SCAN_BYTES = 64 * 1024


_EXIF_HEADER = (0x45, 0x78, 0x69, 0x66, 0, 0)  # "Exif\0\0"


_ORIENTATION_TAG = 0x0112


_SHORT = 3  # The TIFF type of the orientation tag.


def exif_orientation(contents: tf.Tensor) -> tf.Tensor:
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
  head = _Bytes(tf.strings.substr(contents, 0, 2 * _EXIF_SCAN_BYTES + 4))
  tiff, end = _exif_segment(head)
  return _orientation_tag(head, tiff, end)


class _Bytes:
  """The first bytes of an encoded image, read as unsigned integers. Reads
  past the end give zeros (indices are clipped into the padding), so a
  truncated file needs no special case; the checks then fail."""

  def __init__(self, contents):
    head = tf.io.decode_raw(contents, tf.uint8)
    self.size = tf.size(head, out_type=tf.int64)
    self._padded = tf.concat([head, tf.zeros([8], tf.uint8)], 0)
    self.little = tf.constant(False)  # The TIFF byte order, once known.

  def byte(self, i):
    i = tf.clip_by_value(tf.cast(i, tf.int64), 0, self.size + 7)
    return tf.cast(tf.gather(self._padded, i), tf.int64)

  def u16(self, i):
    return tf.where(self.little, self.byte(i) + 256 * self.byte(i + 1),
                    256 * self.byte(i) + self.byte(i + 1))

  def u32(self, i):
    return tf.where(self.little, self.u16(i) + 65536 * self.u16(i + 2),
                    65536 * self.u16(i) + self.u16(i + 2))


def _exif_segment(head: _Bytes):
  """(start of the TIFF structure, end of the segment) of the first Exif
  APP1 segment in a JPEG's header; (-1, -1) when there is none."""
  byte = head.byte

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
                          pos + 4 <= head.size)

  is_jpeg = tf.logical_and(tf.equal(byte(0), 0xFF), tf.equal(byte(1), 0xD8))
  start = tf.where(is_jpeg, tf.constant(2, tf.int64),
                   tf.constant(_EXIF_SCAN_BYTES, tf.int64))
  minus_one = tf.constant(-1, tf.int64)
  # Each step advances at least one byte, so the loop ends by itself;
  # maximum_iterations bounds a file of nothing but fill bytes.
  _, tiff, end = tf.while_loop(searching, segment,
                               (start, minus_one, minus_one),
                               maximum_iterations=4096)
  return tiff, tf.minimum(end, head.size)


def _orientation_tag(head: _Bytes, tiff, end):
  """Tag 0x0112 of IFD0 in the TIFF structure at `tiff` (before `end`), as
  an int32 in 1..8; 1 when it is missing or out of range."""
  # The TIFF structure inside the segment: byte order, 42, IFD0's offset.
  head.little = tf.logical_and(tf.equal(head.byte(tiff), 0x49),
                               tf.equal(head.byte(tiff + 1), 0x49))  # "II"
  big = tf.logical_and(tf.equal(head.byte(tiff), 0x4D),
                       tf.equal(head.byte(tiff + 1), 0x4D))  # "MM"
  u16 = head.u16
  ifd = tiff + head.u32(tiff + 4)
  valid = tf.reduce_all(tf.stack([
      tiff >= 0, tf.logical_or(head.little, big),
      tf.equal(u16(tiff + 2), 42), tiff + 8 <= end, ifd + 2 <= end]))
  # Only the entries (12 bytes each) that lie wholly inside the segment.
  count = tf.where(valid, tf.minimum(u16(ifd), (end - ifd - 2) // 12), 0)
  entries = ifd + 2 + 12 * tf.range(tf.maximum(count, 0))
  matches = tf.logical_and(tf.equal(u16(entries), _ORIENTATION_TAG),
                           tf.equal(u16(entries + 2), _SHORT))
  # The value of a SHORT sits in the first two bytes of the value field.
  value = tf.reduce_max(tf.where(matches, u16(entries + 8), 0))
  in_range = tf.logical_and(value >= 1, value <= 8)
  return tf.cast(tf.where(in_range, value, 1), tf.int32)


def apply_orientation(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
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


def decode_image(contents: tf.Tensor, dtype: tf.DType = tf.uint8
                 ) -> tf.Tensor:
  """Encoded image bytes -> (height, width, 3) of `dtype`: the one decoding
  rule.

  Training, the SavedModel's translate_encoded and predict all decode with
  this function, so a model sees at serving time exactly what it was trained
  on. The rule, which `images.read_rgb` follows with Pillow:

  * JPEG (with libjpeg's accurate integer DCT), PNG, BMP, GIF (first
    frame) and WebP. A 16-bit PNG keeps its 16 bits with dtype uint16 (8-bit
    images are then scaled by 257, so 255 is 65535); with uint8 it is
    reduced to its high bytes.
  * The Exif orientation of a JPEG is applied (see `exif_orientation`).
  * Gray becomes RGB; palette images (PNG, GIF, 8-bit BMP) become RGB (or
    RGBA with a transparent entry); transparency is composited on white.
    BMP alpha is ignored, as Pillow does: 32-bit BMPs often leave that byte
    0. BMPs TensorFlow's decoder does not read as Pillow does (1, 4 or 16
    bits per pixel, RLE-compressed, unusual masks, OS/2 headers) are
    refused (`headers.unread_bmp`).

  Exif in PNG and WebP files, the single transparent colour of gray and RGB
  PNGs and GIF transparency are not used (Pillow would use some of them by
  itself; `read_rgb` does not either).

  Pure TensorFlow: it runs eagerly, in tf.data and inside a SavedModel that
  is loaded without this package.

  Args:
    contents: a scalar string, the file's bytes.
    dtype: tf.uint8 or tf.uint16.

  Returns:
    `dtype` (height, width, 3), upright.
  """
  if dtype not in _RULES:
    raise ValueError(f"decode_image decodes to uint8 or uint16, not {dtype}.")
  return _decoder(dtype)(headers.check_decodable(contents))


def _decode_uint16(contents):
  return tf.cond(
      headers.is_16_bit_png(contents),
      lambda: _rgb_upright(tf.io.decode_png(contents, channels=0,
                                            dtype=tf.uint16), contents),
      lambda: tf.cast(_decoder(tf.uint8)(contents), tf.uint16) * 257)


def _decode_uint8(contents):
  is_jpeg = tf.equal(tf.strings.substr(contents, 0, 3), b"\xff\xd8\xff")
  # INTEGER_ACCURATE is libjpeg's default DCT, the one Pillow uses: the two
  # then give equal bytes (TensorFlow's own default differs by up to 6).
  image = tf.cond(
      is_jpeg,
      lambda: tf.io.decode_jpeg(contents, channels=3,
                                dct_method="INTEGER_ACCURATE"),
      lambda: tf.io.decode_image(contents, channels=0, dtype=tf.uint8,
                                 expand_animations=False))
  return _rgb_upright(_bmp_colours(image, contents), contents)


def _bmp_colours(image, contents):
  """An 8-bit BMP's pixels as the colours of its colour table. TensorFlow's
  BMP decoder returns the table's indices as gray; the table follows the
  header (a Windows one: the OS/2 1.x header's 8-bit files are not read),
  one (blue, green, red, 0) entry per colour."""
  def lookup(header):
    count = tf.where(tf.equal(header.colours, 0), tf.constant(256, tf.int64),
                     header.colours)
    table = tf.io.decode_raw(
        tf.strings.substr(contents, 14 + header.size, 4 * count), tf.uint8)
    rgb = tf.reverse(tf.reshape(table, [-1, 4])[:, :3], [1])
    return tf.gather(rgb, tf.cast(image[..., 0], tf.int32))

  def from_table():
    header = headers.bmp_header(contents)
    indexed = tf.logical_and(tf.greater_equal(header.size, 40),
                             tf.equal(header.bits, 8))
    return tf.cond(indexed, lambda: lookup(header), lambda: image)

  # Only a BMP of one channel reads its header.
  return tf.cond(tf.logical_and(headers.is_bmp(contents),
                                tf.equal(tf.shape(image)[-1], 1)),
                 from_table, lambda: image)


_RULES = {tf.uint8: _decode_uint8, tf.uint16: _decode_uint16}


@functools.cache
def _decoder(dtype: tf.DType) -> Callable[[tf.Tensor], tf.Tensor]:
  """The rule for `dtype` as one graph, traced once per process (by each
  thread that asks at the same first moment, at worst) and called as a
  function from every graph that decodes (tf.data's maps, each signature
  of a SavedModel, which stores it once): the Exif reader alone is
  thousands of ops. A concrete function, not the tf.function itself,
  which traces again under a distribution strategy's scope (the scope is
  part of its cache key). Plain graph code, so AutoGraph has nothing to
  convert."""
  return tf.function(_RULES[dtype], autograph=False).get_concrete_function(
      tf.TensorSpec([], tf.string))


def decode_float(contents: tf.Tensor) -> tf.Tensor:
  """float32 (height, width, 3) in 0..255 by `decode_image`'s rule, read
  at 16 bits: a 16-bit PNG keeps its precision, an 8-bit image its exact
  values."""
  return tf.cast(decode_image(contents, tf.uint16), tf.float32) / 257.0


def _rgb_upright(image, contents):
  """Decoded pixels of 1 to 4 channels -> RGB, upright (`decode_image`)."""
  channels = tf.shape(image)[-1]
  channels = tf.where(tf.logical_and(headers.is_bmp(contents),
                                     tf.equal(channels, 4)), 3,
                      channels)
  image = tf.switch_case(channels - 1, [
      # (concat, not tf.tile, which has no uint16 kernel.)
      lambda: tf.concat([image] * 3, -1),  # Gray.
      lambda: _on_white(tf.concat([image[..., :1]] * 3, -1),
                        image[..., 1:]),
      lambda: image[..., :3],  # RGB (or a BMP's RGBX).
      lambda: _on_white(image[..., :3], image[..., 3:]),  # RGBA.
  ])
  image = tf.ensure_shape(image, [None, None, 3])
  return apply_orientation(image, exif_orientation(contents))
