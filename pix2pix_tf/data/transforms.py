"""The pipeline's small pure functions: a file's pair in order, the joint
jitter of both halves, and the value ranges."""

from typing import Tuple

import tensorflow as tf

from pix2pix_tf.data import decoding


def load_pair(path: tf.Tensor, direction: str = "AtoB",
              input_channels: int = 3, output_channels: int = 3
              ) -> Tuple[tf.Tensor, tf.Tensor]:
  """Reads an A|B file and returns (input_image, target_image), float32 0..255.

  The left half is A and the right half B (for an odd width B gets the extra
  column, as the reference does). `direction='BtoA'` swaps them.
  """
  return split_pair(decoding.decode_image(tf.io.read_file(path)), direction,
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


def normalize(image: tf.Tensor) -> tf.Tensor:
  """Maps 0..255 to [-1, 1], the range of the generator's tanh."""
  return image / 127.5 - 1.0


def to_uint8(image: tf.Tensor) -> tf.Tensor:
  """Maps [-1, 1] back to uint8 0..255."""
  return tf.cast(tf.round(tf.clip_by_value((image + 1.0) * 127.5, 0, 255)),
                 tf.uint8)
