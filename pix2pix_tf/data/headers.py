"""What an encoded image's header declares, read in TensorFlow before any
decoding: its pixels (the gate against --max_pixels inside tf.data and the
SavedModel), its format, a 16-bit PNG, an animated WebP, a BMP's fields."""

from typing import NamedTuple, Union

import tensorflow as tf

from pix2pix_tf.data import images


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _gif_frames_at_most(contents: tf.Tensor) -> tf.Tensor:
  """At least as many as a GIF's frames, int64 scalar, none decoded.

  A frame's descriptor (0x2C) comes right after the header and global
  colour table, or after the 0x00 that ends the block before it; and it
  names an LZW code size of 2 to 8 after its own colour table (giflib
  refuses another before anything is allocated). Such places bound the
  frames; a place inside the compressed data that looks like one adds a
  frame (rarely: a few bytes must match).
  Counted in one vectorized pass: walking the blocks exactly is a chain of
  up to millions of dependent reads, which a crafted file makes take
  minutes.
  """
  data = tf.io.decode_raw(contents, tf.uint8)
  padded = tf.concat([data, tf.zeros([800], tf.uint8)], 0)

  def byte(at):
    return tf.cast(tf.gather(padded, at), tf.int64)

  def table(flags):  # A colour table's bytes, from its packed field.
    return tf.where(flags >= 128, 3 * 2 ** (flags % 8 + 1), 0)

  first = 13 + table(byte(10))
  after_end = tf.where(tf.logical_and(tf.equal(data[:-1], 0),
                                      tf.equal(data[1:], 0x2C)))[:, 0] + 1
  at = tf.concat([[first], tf.boolean_mask(after_end, after_end != first)],
                 0)
  code_size = byte(at + 10 + table(byte(at + 9)))
  frames = tf.logical_and(tf.equal(byte(at), 0x2C),
                          tf.logical_and(code_size >= 2, code_size <= 8))
  return tf.reduce_sum(tf.cast(frames, tf.int64))


def _first_bytes(contents: tf.Tensor, size: int) -> tf.Tensor:
  """The first `size` bytes of encoded bytes as an int64 vector of `size`,
  zeros past the end of a shorter file."""
  head = tf.io.decode_raw(tf.strings.substr(contents, 0, size), tf.uint8)
  return tf.concat([tf.cast(head, tf.int64), tf.zeros([size], tf.int64)],
                   0)[:size]


def _little(head: tf.Tensor, at: int, size: int) -> tf.Tensor:
  """The unsigned little-endian integer in head[at:at + size]."""
  return tf.add_n([head[at + k] * 256 ** k for k in range(size)])


def _big(head: tf.Tensor, at: int, size: int) -> tf.Tensor:
  """The unsigned big-endian integer in head[at:at + size]."""
  return tf.add_n([head[at + k] * 256 ** (size - 1 - k)
                   for k in range(size)])


class BmpHeader(NamedTuple):
  """A BMP's header fields (int64 scalars). The size is read from both
  kinds of header, the OS/2 1.x one of 12 bytes and the Windows ones of 40
  bytes or more; the rest from a Windows header (no OS/2 1.x BMP is
  decoded: see `unread_bmp`)."""
  size: tf.Tensor  # The header's own size in bytes; the colour table follows.
  width: tf.Tensor
  height: tf.Tensor  # Its magnitude: negative in the file for top-down rows.
  bits: tf.Tensor  # Bits per pixel.
  compression: tf.Tensor  # 0 for none, 3 for BI_BITFIELDS masks.
  masks: tf.Tensor  # (red, green, blue) masks of BI_BITFIELDS.
  colours: tf.Tensor  # The colour table's entries (0: all 2**bits).


def bmp_header(contents: tf.Tensor) -> BmpHeader:
  """The header fields of a BMP (meaningless for other formats)."""
  head = _first_bytes(contents, 66)
  os2 = tf.equal(_little(head, 14, 4), 12)

  def signed32(value):
    return tf.abs(tf.where(value >= 2 ** 31, value - 2 ** 32, value))

  return BmpHeader(
      size=_little(head, 14, 4),
      width=tf.where(os2, _little(head, 18, 2),
                     signed32(_little(head, 18, 4))),
      height=tf.where(os2, _little(head, 20, 2),
                      signed32(_little(head, 22, 4))),
      bits=_little(head, 28, 2),
      compression=_little(head, 30, 4),
      masks=tf.stack([_little(head, at, 4) for at in (54, 58, 62)]),
      colours=_little(head, 46, 4))


def is_bmp(contents: tf.Tensor) -> tf.Tensor:
  """Whether encoded bytes begin as a BMP (bool scalar)."""
  return tf.equal(tf.strings.substr(contents, 0, 2), images.BMP_SIGNATURE)


def unread_bmp(contents: tf.Tensor) -> tf.Tensor:
  """Whether encoded bytes are a BMP of a kind TensorFlow's decoder does
  not read as Pillow does (bool scalar): `images.is_unread_bmp`'s rule,
  for the graphs that decode. Only a BMP's header is read."""
  def unread():
    header = bmp_header(contents)
    plain = tf.logical_and(
        tf.equal(header.compression, 0),
        tf.reduce_any(tf.equal(header.bits, images.BMP_BITS)))
    masked = tf.logical_and(
        tf.logical_and(tf.equal(header.compression, 3),
                       tf.equal(header.bits, 32)),
        tf.reduce_all(tf.equal(header.masks, images.BMP_MASKS)))
    return tf.logical_not(tf.logical_and(
        tf.greater_equal(header.size, 40), tf.logical_or(plain, masked)))

  return tf.cond(is_bmp(contents), unread, lambda: tf.constant(False))


def encoded_pixels(contents: tf.Tensor) -> tf.Tensor:
  """The pixels that decoding an encoded image holds, as its header declares
  them, int64 scalar: width x height (x a bound on the frames of a GIF).

  Read from the header alone, before any decoding. Hand-written (but for
  JPEG, where tf.image.extract_jpeg_shape reads the header) because
  TensorFlow has no op that reads an image's size without decoding it.
  Knows every format `decode_image` decodes: PNG (IHDR), GIF (the logical
  screen, which TensorFlow decodes every frame into), BMP (both header
  kinds), WebP (VP8, VP8L and VP8X) and JPEG; -1 for anything else, which
  then fails to decode.
  """
  head = _first_bytes(contents, 32)

  def starts(offset, magic):
    return tf.equal(tf.strings.substr(contents, offset, len(magic)), magic)

  png = _big(head, 16, 4) * _big(head, 20, 4)
  # Read only for a GIF.
  gif = _little(head, 6, 2) * _little(head, 8, 2) * tf.cond(
      starts(0, b"GIF8"), lambda: _gif_frames_at_most(contents),
      lambda: tf.constant(1, tf.int64))
  bmp = bmp_header(contents)
  # VP8L packs width - 1 and height - 1 into 14 bits each.
  vp8l = ((head[21] + (head[22] % 64) * 256 + 1) *
          (head[22] // 64 + head[23] * 4 + (head[24] % 16) * 1024 + 1))
  webp = tf.where(
      starts(12, b"VP8X"),
      (_little(head, 24, 3) + 1) * (_little(head, 27, 3) + 1),
      tf.where(starts(12, b"VP8L"), vp8l,
               tf.where(starts(12, b"VP8 "),
                        (_little(head, 26, 2) % 16384) *
                        (_little(head, 28, 2) % 16384),
                        tf.constant(-1, tf.int64))))
  is_webp = tf.logical_and(starts(0, b"RIFF"), starts(8, b"WEBP"))

  def jpeg():
    shape = tf.cast(tf.image.extract_jpeg_shape(contents), tf.int64)
    return shape[0] * shape[1]

  def other():
    return tf.where(
        starts(0, PNG_SIGNATURE), png,
        tf.where(starts(0, b"GIF8"), gif,
                 tf.where(starts(0, images.BMP_SIGNATURE),
                          bmp.width * bmp.height,
                          tf.where(is_webp, webp,
                                   tf.constant(-1, tf.int64)))))

  return tf.cond(starts(0, b"\xff\xd8\xff"), jpeg, other)


def check_encoded_pixels(contents: tf.Tensor, max_pixels: int) -> tf.Tensor:
  """`contents`, once its header declares at most `max_pixels` pixels
  (an InvalidArgumentError otherwise, raised before any decoding)."""
  pixels = encoded_pixels(contents)
  check = tf.debugging.assert_less_equal(
      pixels, tf.constant(max_pixels, tf.int64), message=(
          f"the image has more than max_pixels={max_pixels} pixels (width "
          "x height)"))
  with tf.control_dependencies([check]):
    return tf.identity(contents)


# The first bytes by which TensorFlow's decoders tell the formats apart.
_SIGNATURES = (b"\xff\xd8\xff", PNG_SIGNATURE, b"GIF",
               images.BMP_SIGNATURE)


def is_encoded_image(contents: bytes) -> bool:
  """Whether `decode_image` takes `contents` for an image, by its first
  bytes: those of a JPEG, PNG, GIF, BMP or WebP."""
  return contents.startswith(_SIGNATURES) or (
      contents[:4] == b"RIFF" and contents[8:12] == b"WEBP")


def is_16_bit_png(contents: Union[bytes, tf.Tensor]) -> tf.Tensor:
  """Whether encoded bytes are a PNG of 16 bits per channel (bool scalar;
  from the IHDR chunk's bit depth, byte 24)."""
  padded = tf.strings.join([contents, b"\0" * 25])
  depth = tf.io.decode_raw(tf.strings.substr(padded, 24, 1), tf.uint8)[0]
  return tf.logical_and(
      tf.equal(tf.strings.substr(padded, 0, 8), PNG_SIGNATURE),
      tf.equal(depth, 16))


ANIMATED_WEBP = (
    "an animated WebP image, which is not read (TensorFlow's WebP decoder "
    "corrupts memory on animations); send a still image, its first frame")


def is_animated_webp(contents: tf.Tensor) -> tf.Tensor:
  """Whether encoded bytes are an animated WebP (bool scalar): a VP8X
  header whose animation flag (byte 20, bit 1) is set."""
  # The first 21 bytes, padded with zeros for a shorter file.
  head = tf.strings.join([tf.strings.substr(contents, 0, 21), b"\0" * 21])
  flags = tf.io.decode_raw(tf.strings.substr(head, 20, 1), tf.uint8)
  return tf.logical_and(
      tf.logical_and(tf.equal(tf.strings.substr(head, 0, 4), b"RIFF"),
                     tf.equal(tf.strings.substr(head, 8, 8), b"WEBPVP8X")),
      tf.equal(tf.bitwise.bitwise_and(flags[0], 2), 2))


UNKNOWN_FORMAT = (
    "not a JPEG, PNG, GIF, BMP or WebP image (the formats whose size is "
    "read before decoding); convert it to one of them")


def is_known_format(contents: tf.Tensor) -> tf.Tensor:
  """Whether encoded bytes begin as a JPEG, PNG, GIF, BMP or WebP (bool
  scalar): the formats `encoded_pixels` reads the size of."""
  head = tf.strings.join([tf.strings.substr(contents, 0, 12), b"\0" * 12])
  webp = tf.logical_and(tf.equal(tf.strings.substr(head, 0, 4), b"RIFF"),
                        tf.equal(tf.strings.substr(head, 8, 4), b"WEBP"))
  return tf.reduce_any(tf.stack(
      [tf.equal(tf.strings.substr(head, 0, len(s)), s) for s in _SIGNATURES]
      + [webp]))


def check_decodable(contents: tf.Tensor) -> tf.Tensor:
  """`contents`, once it is of a format whose size the gate reads, and not
  an animated WebP or a BMP of a kind TensorFlow's decoder does not read
  (`unread_bmp`): an InvalidArgumentError saying which otherwise, before
  TensorFlow's decoder sees it. TensorFlow decodes more (JPEG XL) than the
  gate can size; those are refused rather than decoded unmeasured."""
  checks = [
      tf.debugging.Assert(is_known_format(contents),
                          [tf.constant(UNKNOWN_FORMAT)]),
      tf.debugging.Assert(tf.logical_not(is_animated_webp(contents)),
                          [tf.constant(ANIMATED_WEBP)]),
      tf.debugging.Assert(tf.logical_not(unread_bmp(contents)),
                          [tf.constant(images.UNREAD_BMP)])]
  with tf.control_dependencies(checks):
    return tf.identity(contents)
