"""The reference's --preprocess modes, and fitting sizes to the generator."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import small_config
from pix2pix_tf import data as data_lib
from pix2pix_tf.data import transforms


def halves(height, width, seed=0):
  """An input half and a target half with the same pixels."""
  rng = np.random.default_rng(seed)
  image = tf.constant(rng.uniform(0, 255, (height, width, 3)), tf.float32)
  return image, tf.identity(image)


@pytest.mark.parametrize("mode,size,expected", [
    ("resize_and_crop", (40, 70), (32, 32)),
    ("crop", (40, 70), (32, 32)),
    ("scale_width", (80, 70), (41, 36)),  # 36 * 80 // 70 = 41.
    ("scale_width", (10, 70), (32, 36)),  # At least crop_size high.
    ("scale_width_and_crop", (40, 70), (32, 32)),
    ("none", (41, 67), (41, 67)),
])
def test_each_mode_gives_the_references_size_and_one_crop_for_both_halves(
    mode, size, expected):
  input_image, target_image = halves(*size)
  seed = tf.constant([3, 7], tf.int64)
  a, b = transforms.preprocess(input_image, target_image, seed, mode,
                               load_size=36, crop_size=32)
  assert tuple(a.shape[:2]) == expected
  assert transforms.output_size(*size, mode, 36, 32) == expected
  np.testing.assert_array_equal(a.numpy(), b.numpy())  # Same crop, flip.


def test_resize_and_crop_is_unchanged():
  """The default mode is the jitter as it was: each half resized, then one
  crop (at the offset the seed's first half draws) and one flip."""
  input_image, _ = halves(50, 60)
  target_image = 255.0 - halves(50, 61)[0]  # An odd pair's wider half.
  for i in range(4):
    seed = tf.constant([0, i], tf.int64)
    crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 2))
    stacked = tf.concat([transforms.resize(input_image, 36),
                         transforms.resize(target_image, 36)], axis=-1)
    expected = tf.image.stateless_random_flip_left_right(
        tf.image.stateless_random_crop(stacked, [32, 32, 6], seed=crop_seed),
        seed=flip_seed)
    a, b = transforms.preprocess(input_image, target_image, seed,
                                 "resize_and_crop", 36, 32)
    np.testing.assert_allclose(tf.concat([a, b], -1).numpy(),
                               expected.numpy(), atol=1e-3)


def test_crop_keeps_pixels_unscaled():
  input_image, target_image = halves(40, 40)
  a, _ = transforms.preprocess(input_image, target_image,
                               tf.constant([1, 2], tf.int64), "crop", 36, 32,
                               flip=False)
  pixels = input_image.numpy()
  found = [(y, x) for y in range(9) for x in range(9)
           if np.array_equal(pixels[y:y + 32, x:x + 32], a.numpy())]
  assert len(found) == 1


def test_fit_to_multiple_reflects_and_crops_back():
  image, _ = halves(21, 35)
  padded = transforms.fit_to_multiple(image, 16)
  assert tuple(padded.shape) == (32, 48, 3)
  (top, _), (left, _) = transforms.padding(21, 16), transforms.padding(35, 16)
  np.testing.assert_array_equal(
      padded[top:top + 21, left:left + 35].numpy(), image.numpy())
  # Reflection: the row above the image mirrors the row below its edge.
  np.testing.assert_array_equal(padded[top - 1, left:left + 35].numpy(),
                                image[1].numpy())


def test_sizes_the_generator_cannot_take_are_named_with_the_nearest_valid():
  assert transforms.check_preprocessable("a.png", 64, 96, "none", 36, 32,
                                         32, pad=False) == (64, 96)
  assert transforms.check_preprocessable("a.png", 50, 70, "none", 36, 32,
                                         32, pad=True) == (64, 96)
  with pytest.raises(ValueError, match=r"a\.png: a 70x50 half .* nearest "
                     r"valid size is 64x64.*--size_policy=pad"):
    transforms.check_preprocessable("a.png", 50, 70, "none", 36, 32, 32,
                                    pad=False)


@pytest.mark.parametrize("height,width", [(1, 1), (3, 5000), (5000, 3)])
def test_degenerate_sizes_get_a_clear_error(height, width):
  for pad in (True, False):
    with pytest.raises(ValueError, match=f"x.png: a {width}x{height} half"):
      transforms.check_preprocessable("x.png", height, width, "none", 36,
                                      32, 32, pad)
  with pytest.raises(ValueError, match="smaller than --crop_size=32"):
    transforms.check_preprocessable("x.png", height, width, "crop", 36, 32,
                                    32, True)
  # The resizing modes make any of them a valid size.
  assert transforms.check_preprocessable(
      "x.png", height, width, "resize_and_crop", 36, 32, 32, False) == (
          32, 32)


def test_pair_sizes_are_checked_upright_before_training(tmp_path):
  """A JPEG stored 64x40 with Exif orientation 6 decodes 40x64: its halves
  are 20 wide, too narrow for a 32 crop; the check reads it as decoded."""
  path = tmp_path / "turned.jpg"
  exif = Image.Exif()
  exif[0x0112] = 6
  Image.new("RGB", (64, 40), (90, 120, 200)).save(path, exif=exif)
  config = small_config(tmp_path, tmp_path, preprocess="crop")
  with pytest.raises(data_lib.DatasetError,
                     match=r"turned\.jpg: a 20x64 half is smaller than "
                     r"--crop_size=32"):
    data_lib.check_pair_sizes([str(path)], config)
  # As stored (32x40 halves) it would pass: the orientation decides.
  upright = tmp_path / "upright.jpg"
  Image.new("RGB", (64, 40), (90, 120, 200)).save(upright)
  data_lib.check_pair_sizes([str(upright)], config)
  # The resizing modes take any size: nothing is read.
  data_lib.check_pair_sizes([str(path)], small_config(tmp_path, tmp_path))
