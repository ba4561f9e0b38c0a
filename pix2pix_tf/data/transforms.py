"""The pipeline's small pure functions: a file's pair in order, the joint
jitter of both halves, and the value ranges."""

from typing import Callable, Tuple, Union

import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf import errors
from pix2pix_tf.data import decoding
from pix2pix_tf.data import headers


def load_pair(path: tf.Tensor, direction: str = "AtoB",
              input_channels: int = 3, output_channels: int = 3,
              max_pixels: int = config_lib.DEFAULT_MAX_PIXELS
              ) -> Tuple[tf.Tensor, tf.Tensor]:
  """Reads an A|B file and returns (input_image, target_image), float32 0..255.

  The left half is A and the right half B (for an odd width B gets the extra
  column, as the reference does). `direction='BtoA'` swaps them. A header
  that declares more than `max_pixels` pixels is an InvalidArgumentError,
  raised before decoding.
  """
  contents = headers.check_encoded_pixels(tf.io.read_file(path), max_pixels)
  return split_pair(decoding.decode_float(contents), direction,
                    input_channels, output_channels)


def split_pair(image: tf.Tensor, direction: str = "AtoB",
               input_channels: int = 3, output_channels: int = 3
               ) -> Tuple[tf.Tensor, tf.Tensor]:
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


def resize(image: tf.Tensor, size: int) -> tf.Tensor:
  """Bicubic, antialiased resize to size x size (the reference uses PIL's)."""
  image = tf.image.resize(image, [size, size], method="bicubic",
                          antialias=True)
  return tf.clip_by_value(image, 0.0, 255.0)


def random_jitter(input_image: tf.Tensor, target_image: tf.Tensor,
                  seed: tf.Tensor, load_size: int = 286, crop_size: int = 256,
                  flip: bool = True) -> Tuple[tf.Tensor, tf.Tensor]:
  """The paper's jitter: resize to load_size, random crop, random mirror
  (`preprocess`'s default mode)."""
  return preprocess(input_image, target_image, seed, "resize_and_crop",
                    load_size, crop_size, flip)


def normalize(image: tf.Tensor) -> tf.Tensor:
  """Maps 0..255 to [-1, 1], the range of the generator's tanh."""
  return image / 127.5 - 1.0


def to_uint8(image: tf.Tensor) -> tf.Tensor:
  """Maps [-1, 1] back to uint8 0..255."""
  return tf.cast(tf.round(tf.clip_by_value((image + 1.0) * 127.5, 0, 255)),
                 tf.uint8)


# --preprocess (config.PREPROCESS_MODES) has the reference's meaning: what
# is resized (both sides to load_size, or the width to load_size keeping
# the aspect), and whether a crop_size square is then cropped at random.
# The modes whose output size depends on the image's (crop: only whether
# it is large enough); the others resize to sizes the flags fix.
SIZE_KEEPING_MODES = ("crop", "scale_width", "none")


def scaled_size(height: Union[int, tf.Tensor], width: Union[int, tf.Tensor],
                mode: str, load_size: int, crop_size: int
                ) -> Tuple[tf.Tensor, tf.Tensor]:
  """(height, width) of a height x width image after `mode`'s resize,
  before its crop. scale_width keeps the aspect (the height floored, and
  at least crop_size, as the reference does) and leaves an image alone
  whose width is already load_size and height at least crop_size."""
  if mode not in config_lib.PREPROCESS_MODES:
    raise ValueError(f"Unknown preprocess mode {mode!r}; choose one of "
                     f"{', '.join(config_lib.PREPROCESS_MODES)}.")
  height, width = tf.cast(height, tf.int64), tf.cast(width, tf.int64)
  if mode == "resize_and_crop":
    side = tf.constant(load_size, tf.int64)
    return side, side
  if mode.startswith("scale_width"):
    keep = tf.logical_and(tf.equal(width, load_size), height >= crop_size)
    scaled = tf.maximum(load_size * height // width, crop_size)
    return (tf.where(keep, height, scaled),
            tf.where(keep, width, tf.constant(load_size, tf.int64)))
  return height, width


def output_size(height: int, width: int, mode: str, load_size: int,
                crop_size: int) -> Tuple[int, int]:
  """(height, width) `preprocess` gives a height x width image, before
  `fit_to_multiple`: the crop where the mode crops, else the scaled size."""
  if mode.endswith("crop"):
    return crop_size, crop_size
  scaled = scaled_size(height, width, mode, load_size, crop_size)
  return int(scaled[0]), int(scaled[1])


def implied_resolution(preprocess: str) -> str:
  """Where inference runs the generator by default after training with
  `preprocess`: "native" (the image itself, padded to a multiple) for the
  modes that train on unscaled pixels (crop, none); else "training"
  (resized to the scale training saw, and the result back)."""
  return "native" if preprocess in ("crop", "none") else "training"


def nearest_multiple(side: int, multiple: int) -> int:
  """The multiple of `multiple` nearest to `side` (at least `multiple`)."""
  return max(multiple, int(round(side / multiple)) * multiple)


def padding(side: Union[int, tf.Tensor], multiple: int) -> Tuple:
  """(before, after): the rows (or columns) that pad `side` up to the next
  multiple of `multiple`, split evenly (the extra one after)."""
  total = -side % multiple
  return total // 2, total - total // 2


def _mirrored(side: tf.Tensor, before: tf.Tensor, total: tf.Tensor
              ) -> tf.Tensor:
  """Indices into a side of `side` pixels that mirror it, without
  repeating the edge pixel, from `before` pixels before its start to
  `total` pixels in all. Written by hand because tf.pad's REFLECT mode
  cannot pad a side by as much as its own length, and inference must take a
  3x5000 image as well as a 1000x1000 one: indices repeat the reflection as
  often as needed (a side of one pixel repeats it)."""
  period = tf.maximum(2 * (side - 1), 1)
  index = tf.math.floormod(tf.range(total) - before, period)
  return tf.where(index >= side, period - index, index)


def fit_to_multiple(image: tf.Tensor, multiple: int) -> tf.Tensor:
  """`image` ([batch,] height, width, channels) reflect-padded on all sides
  to the next multiple of `multiple` in height and width: what a generator
  that downsamples log2(multiple) times can take. Reflection repeats no
  edge pixel, so the padded border looks like image content, not a frame;
  `crop_to` cuts the image back out."""
  shape = tf.shape(image)
  for axis in (-3, -2):
    side = shape[axis]
    before, after = padding(side, multiple)
    image = tf.gather(image, _mirrored(side, before, side + before + after),
                      axis=axis)
  return image


def crop_to(padded: tf.Tensor, height: tf.Tensor,
            width: tf.Tensor) -> tf.Tensor:
  """The height x width image that `fit_to_multiple` padded to `padded`'s
  size (the padding is centred)."""
  shape = tf.shape(padded)
  top = (shape[-3] - height) // 2
  left = (shape[-2] - width) // 2
  return padded[..., top:top + height, left:left + width, :]


def through_padding(generate: Callable[[tf.Tensor], tf.Tensor],
                    images: tf.Tensor, multiple: int) -> tf.Tensor:
  """`generate` on [batch, height, width, C] images of any size: run on
  them reflect-padded to a multiple of `multiple`, and cropped back."""
  shape = tf.shape(images)
  return crop_to(generate(fit_to_multiple(images, multiple)), shape[1],
                 shape[2])


def preprocess(input_image: tf.Tensor, target_image: tf.Tensor,
               seed: tf.Tensor, mode: str = "resize_and_crop",
               load_size: int = 286, crop_size: int = 256,
               flip: bool = True) -> Tuple[tf.Tensor, tf.Tensor]:
  """The reference's --preprocess for a training pair: `mode`'s resize,
  then (for the *_crop modes and crop) one random crop_size square, and a
  random mirror, the same for both halves; float32 0..255.

  Input and target are stacked on channels, so that one resize, one crop
  and one flip apply to both. Stateless random ops keyed by `seed` (shape
  [2]) give the same result eagerly and inside tf.data.
  """
  in_channels = tf.shape(input_image)[-1]
  # An odd-width pair's right half is one column wider (as the reference
  # splits it). The resizing modes resize each half from its own width to
  # one size (the narrower half's scaled size); crop and none cut the wider
  # half to the narrower width, so that the two stack.
  width = tf.minimum(tf.shape(input_image)[1], tf.shape(target_image)[1])
  size = tf.cast(tf.stack(scaled_size(tf.shape(input_image)[0], width, mode,
                                      load_size, crop_size)), tf.int32)
  if mode in ("crop", "none"):
    halves = [input_image[:, :width], target_image[:, :width]]
  else:
    halves = [tf.clip_by_value(tf.image.resize(
        half, size, method="bicubic", antialias=True), 0.0, 255.0)
              for half in (input_image, target_image)]
  stacked = tf.concat(halves, axis=-1)
  crop_seed, flip_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 2))
  if mode.endswith("crop"):
    stacked = tf.image.stateless_random_crop(
        stacked, [crop_size, crop_size, tf.shape(stacked)[-1]],
        seed=crop_seed)
  if flip:
    stacked = tf.image.stateless_random_flip_left_right(stacked,
                                                        seed=flip_seed)
  return stacked[..., :in_channels], stacked[..., in_channels:]


def check_preprocessable(name: str, height: int, width: int, mode: str,
                         load_size: int, crop_size: int, multiple: int,
                         pad: bool) -> Tuple[int, int]:
  """The (height, width) the generator gets from a height x width half
  named `name` under `mode`: padded to a multiple of `multiple` if `pad`.
  Raises ValueError, naming the image, its size and what to do, for a half
  the mode cannot crop, one too small to pad by reflection, and (without
  `pad`) one whose size is not a multiple."""
  if mode == "crop" and min(height, width) < crop_size:
    raise errors.CommandError(
        f"{name}: a {width}x{height} half is smaller than --crop_size="
        f"{crop_size}, which --preprocess=crop cuts from it unscaled. Use "
        "--preprocess=resize_and_crop or scale_width_and_crop, or a smaller "
        "--crop_size.")
  out_height, out_width = output_size(height, width, mode, load_size,
                                      crop_size)
  valid = (nearest_multiple(out_height, multiple),
           nearest_multiple(out_width, multiple))
  if out_height % multiple == 0 and out_width % multiple == 0:
    return out_height, out_width
  where = f"{name}: a {width}x{height} half" + (
      f" becomes {out_width}x{out_height} under --preprocess={mode}, which"
      if (out_height, out_width) != (height, width) else "")
  if not pad:
    raise errors.CommandError(
        f"{where} is not a multiple of {multiple} in each side, as the "
        f"generator needs; the nearest valid size is {valid[1]}x{valid[0]}. "
        "Resize the image, or pass --size_policy=pad to reflect-pad it.")
  # (scale_width fixes the width to --load_size, a multiple (a Config
  # check): only the height, which follows the image's aspect, can miss.)
  padded = tuple(side + sum(padding(side, multiple))
                 for side in (out_height, out_width))
  if any(max(padding(side, multiple)) >= side
         for side in (out_height, out_width)):
    raise errors.CommandError(
        f"{where} is too small to reflect-pad to {padded[1]}x{padded[0]} "
        f"(a multiple of {multiple}); the nearest valid size is "
        f"{valid[1]}x{valid[0]}. Resize the image, or choose a shallower "
        "generator.")
  return padded
