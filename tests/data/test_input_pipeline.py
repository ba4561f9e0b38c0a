"""The tf.data pipeline: values, paired jitter, direction, odd files, errors."""


import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import (gradient_image, small_config, truncate_after_header,
                      write_pair)
from pix2pix_tf import data as data_lib
from pix2pix_tf.data import decoding


def make_split(tmp_path, pairs, split="train"):
  folder = tmp_path / "data" / split
  folder.mkdir(parents=True, exist_ok=True)
  for name, (left, right) in pairs.items():
    write_pair(folder / name, left, right)
  return str(tmp_path / "data")


def test_values_are_in_range_and_shapes_follow_the_config(tiny_dataset,
                                                          tmp_path):
  config = small_config(tiny_dataset, tmp_path)
  files = data_lib.list_split(tiny_dataset, "train")
  dataset = data_lib.make_dataset(files, config, 4, training=True)
  input_image, target_image = next(iter(dataset))
  assert input_image.shape == (4, 32, 32, 3)
  assert target_image.shape == (4, 32, 32, 3)
  for x in (input_image, target_image):
    assert float(tf.reduce_min(x)) >= -1.0
    assert float(tf.reduce_max(x)) <= 1.0
    # Real content spans most of the range, not a sliver of it.
    assert float(tf.reduce_max(x)) - float(tf.reduce_min(x)) > 1.0


def test_both_halves_get_the_same_crop_and_flip(tmp_path):
  image = gradient_image(40, 40)
  data_dir = make_split(tmp_path, {"same.png": (image, image)})
  config = small_config(data_dir, tmp_path, load_size=48, crop_size=32)
  files = data_lib.list_split(data_dir, "train")
  dataset = data_lib.make_dataset(files, config, 1, training=True)
  crops = []
  for input_image, target_image in dataset.take(12):
    np.testing.assert_array_equal(input_image.numpy(), target_image.numpy())
    crops.append(input_image.numpy())
  # The jitter really varies: not every crop is the same.
  assert len({c.tobytes() for c in crops}) > 1


def test_flip_mirrors_both_halves(tmp_path):
  left, right = gradient_image(32, 32), gradient_image(32, 32, offset=90)
  input_image = tf.constant(left, tf.float32)
  target_image = tf.constant(right, tf.float32)
  flipped = None
  for i in range(20):
    seed = tf.constant([0, i], tf.int64)
    a, b = data_lib.random_jitter(input_image, target_image, seed,
                                        load_size=32, crop_size=32)
    if not np.array_equal(a.numpy(), input_image.numpy()):
      flipped = (a, b)
      break
  assert flipped is not None
  np.testing.assert_allclose(flipped[0].numpy(), left[:, ::-1], atol=1e-3)
  np.testing.assert_allclose(flipped[1].numpy(), right[:, ::-1], atol=1e-3)


def test_no_flip_flag_never_mirrors():
  image = tf.constant(gradient_image(32, 32), tf.float32)
  for i in range(10):
    a, _ = data_lib.random_jitter(image, image, tf.constant([0, i],
                                                                   tf.int64),
                                        32, 32, flip=False)
    np.testing.assert_allclose(a.numpy(), image.numpy(), atol=1e-3)


def test_direction_swaps_input_and_target(tmp_path):
  left = np.full((8, 8, 3), 10, np.uint8)
  right = np.full((8, 8, 3), 200, np.uint8)
  path = write_pair(tmp_path / "pair.png", left, right)
  a_to_b = data_lib.load_pair(path, "AtoB")
  b_to_a = data_lib.load_pair(path, "BtoA")
  assert float(tf.reduce_mean(a_to_b[0])) == 10
  assert float(tf.reduce_mean(a_to_b[1])) == 200
  assert float(tf.reduce_mean(b_to_a[0])) == 200
  assert float(tf.reduce_mean(b_to_a[1])) == 10


def test_odd_sizes_become_crop_sized_pairs(tmp_path):
  # 101 px wide (not 2:1, odd), 37 px high.
  odd = gradient_image(37, 101)
  path = tmp_path / "odd.png"
  Image.fromarray(odd).save(path)
  input_image, target_image = data_lib.load_pair(str(path))
  assert input_image.shape == (37, 50, 3)
  assert target_image.shape == (37, 51, 3)  # B gets the extra column.
  data_dir = make_split(tmp_path, {})
  Image.fromarray(odd).save(tmp_path / "data" / "train" / "odd.png")
  config = small_config(data_dir, tmp_path)
  files = data_lib.list_split(data_dir, "train")
  for training in (True, False):
    batch = next(iter(data_lib.make_dataset(files, config, 1,
                                                  training)))
    assert batch[0].shape == batch[1].shape == (1, 32, 32, 3)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA"])
def test_grayscale_palette_and_rgba_files_become_rgb(tmp_path, mode):
  rgb = Image.fromarray(gradient_image(16, 32))
  image = rgb.convert(mode)
  path = tmp_path / f"pair_{mode}.png"
  image.save(path)
  input_image, target_image = data_lib.load_pair(str(path))
  assert input_image.shape == (16, 16, 3)
  expected = np.asarray(image.convert("RGB"), np.float32)
  np.testing.assert_array_equal(input_image.numpy(), expected[:, :16])
  np.testing.assert_array_equal(target_image.numpy(), expected[:, 16:])


def quadrants(height, width):
  """Four flat colours: any turn or mirror of it is told apart."""
  image = np.zeros((height, width, 3), np.uint8)
  image[:height // 2, :width // 2] = (250, 10, 10)
  image[:height // 2, width // 2:] = (10, 250, 10)
  image[height // 2:, :width // 2] = (10, 10, 250)
  image[height // 2:, width // 2:] = (240, 240, 20)
  return image


def decoded(path):
  return data_lib.decode_image(tf.io.read_file(str(path))).numpy()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_as_pillow_does(tmp_path,
                                                          orientation):
  from PIL import ImageOps
  exif = Image.Exif()
  exif[0x0112] = orientation
  path = tmp_path / "photo.jpg"
  Image.fromarray(quadrants(32, 48)).save(path, exif=exif, quality=95)
  with Image.open(path) as image:
    upright = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
  assert upright.shape == ((32, 48, 3) if orientation < 5 else (48, 32, 3))
  assert data_lib.exif_orientation(
      tf.io.read_file(str(path))).numpy() == orientation
  np.testing.assert_array_equal(decoded(path), upright)


def test_exif_after_jfif_big_endian_and_broken_exif(tmp_path):
  """Orientation is found after a JFIF segment and in big-endian TIFF, and a
  malformed or truncated Exif segment is ignored (orientation 1), never an
  error."""
  jpeg = tmp_path / "plain.jpg"
  Image.fromarray(quadrants(16, 24)).save(jpeg, quality=95)
  body = jpeg.read_bytes()
  assert body[2:4] == b"\xff\xe0"  # Pillow writes JFIF (APP0) first.

  def with_app1(payload):
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    jfif_end = 4 + int.from_bytes(body[4:6], "big")
    return body[:jfif_end] + segment + body[jfif_end:]

  big_endian = (b"Exif\0\0MM\0\x2a\0\0\0\x08" + b"\0\x01" +
                b"\x01\x12\0\x03\0\0\0\x01\0\x03\0\0" + b"\0\0\0\0")
  orientation = data_lib.exif_orientation
  assert orientation(tf.constant(with_app1(big_endian))).numpy() == 3
  # The first directory outside the segment, a wrong magic number, a value
  # out of range, a truncated file: all orientation 1.
  broken = [big_endian.replace(b"\0\0\0\x08", b"\0\0\x10\0"),
            big_endian.replace(b"\0\x2a", b"\0\x2b"),
            big_endian.replace(b"\0\x03\0\0\0\0", b"\0\x09\0\0\0\0"),
            ]
  for payload in broken:
    assert orientation(tf.constant(with_app1(payload))).numpy() == 1
  assert orientation(tf.constant(with_app1(big_endian)[:30])).numpy() == 1
  assert orientation(tf.constant(b"")).numpy() == 1
  assert orientation(tf.constant(b"\x89PNG\r\n\x1a\n")).numpy() == 1


def test_decoding_rule_matches_read_rgb_on_every_kind_of_file(tmp_path):
  """Transparency on white, palettes (PNG and 8-bit BMP, of 256 colours and
  of fewer), 16-bit samples, BMP, GIF and WebP:
  the pipeline's decode_image and Pillow's read_rgb give equal bytes."""
  from pix2pix_tf import data as data_lib
  rng = np.random.default_rng(0)
  rgba = rng.integers(0, 256, (8, 10, 4)).astype(np.uint8)
  Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
  Image.fromarray(rgba[..., [0, 3]], "LA").save(tmp_path / "la.png")
  palette = Image.fromarray(rgba[..., :3]).convert("P")
  palette.save(tmp_path / "palette.png")
  palette.save(tmp_path / "transparent_entry.png", transparency=3)
  palette.save(tmp_path / "palette.bmp")  # Its pixels index its table.
  Image.fromarray(rgba[..., :3]).quantize(16).save(tmp_path / "sixteen.bmp")
  sixteen = rng.integers(0, 65536, (8, 10)).astype(np.uint16)
  Image.fromarray(sixteen).save(tmp_path / "sixteen.png")
  Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.bmp")
  Image.fromarray(rgba[..., :3]).save(tmp_path / "frame.gif")
  Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.webp", lossless=True)
  Image.fromarray(rgba[..., 0]).save(tmp_path / "gray.jpg")
  for path in sorted(tmp_path.iterdir()):
    np.testing.assert_array_equal(decoded(path),
                                  np.asarray(data_lib.read_rgb(str(path))),
                                  err_msg=path.name)
  # Alpha on white, 16 bits by their high byte: checked against the
  # arithmetic itself.
  opacity = rgba[..., 3:] / 255.0
  np.testing.assert_array_equal(
      decoded(tmp_path / "rgba.png"),
      np.round(rgba[..., :3] * opacity + 255.0 * (1.0 - opacity)))
  np.testing.assert_array_equal(decoded(tmp_path / "sixteen.png")[..., 0],
                                sixteen >> 8)


def test_bmp_and_jpeg_files_are_read(tmp_path):
  image = Image.fromarray(gradient_image(16, 32))
  for name in ("pair.bmp", "pair.jpg", "pair.JPEG"):
    image.save(tmp_path / name)
    input_image, _ = data_lib.load_pair(str(tmp_path / name))
    assert input_image.shape == (16, 16, 3)


def counting(rule, traced):
  """`rule`, noting in `traced` each time it runs (is traced)."""
  def counted(contents):
    traced.append(rule.__name__)
    return rule(contents)
  return counted


@pytest.mark.slow  # Two strategies, a SavedModel and two traces of the rules.
def test_the_rule_is_traced_once_wherever_it_decodes(tmp_path, monkeypatch):
  """Eagerly, in tf.data, under a strategy's scope (which a tf.function
  keys its traces on) and in a SavedModel's signature: one trace of each
  rule per process (the Exif reader alone is thousands of ops)."""
  traced = []
  for dtype, rule in dict(decoding._RULES).items():
    monkeypatch.setitem(decoding._RULES, dtype, counting(rule, traced))
  # Forget the traces of the real rules: the counted ones are traced below,
  # and the real ones again by the next test that decodes.
  decoding._decoder.cache_clear()
  try:
    path = write_pair(tmp_path / "pair.png", gradient_image(8, 8),
                      gradient_image(8, 8))
    contents = tf.io.read_file(path)
    expected = decoding.decode_float(contents).numpy()
    files = tf.data.Dataset.from_tensors(path)
    for strategy in (tf.distribute.get_strategy(),
                     tf.distribute.OneDeviceStrategy("/cpu:0"),
                     tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])):
      with strategy.scope():
        decoded_there = files.map(
            lambda f: decoding.decode_float(tf.io.read_file(f)))
        np.testing.assert_array_equal(next(iter(decoded_there)), expected)

    class Signature(tf.Module):
      @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
      def decode(self, contents):
        return decoding.decode_float(contents)

    tf.saved_model.save(Signature(), str(tmp_path / "model"))
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.decode(contents), expected)
  finally:
    decoding._decoder.cache_clear()
  assert sorted(traced) == ["_decode_uint16", "_decode_uint8"]


def test_one_channel_inputs_and_targets(tmp_path):
  path = write_pair(tmp_path / "pair.png", gradient_image(8, 8),
                    gradient_image(8, 8, offset=5))
  input_image, target_image = data_lib.load_pair(path, "AtoB", 1, 3)
  assert input_image.shape == (8, 8, 1)
  assert target_image.shape == (8, 8, 3)


def test_jitter_is_the_same_eagerly_and_inside_tf_data(tmp_path):
  data_dir = make_split(tmp_path, {"a.png": (gradient_image(40, 40),
                                             gradient_image(40, 40, offset=33))})
  # --deterministic: the k-th element out is the k-th in. Without it the
  # parallel map may hand out element 1 before element 0 (each still with
  # its own index's jitter), and comparing by position would race.
  config = small_config(data_dir, tmp_path, load_size=44, crop_size=32,
                        deterministic=True)
  files = data_lib.list_split(data_dir, "train")
  dataset = data_lib.make_dataset(files, config, 1, training=True)
  from_pipeline = [b for b in dataset.take(3)]
  for index, (input_image, target_image) in enumerate(from_pipeline):
    a, b = data_lib.load_pair(files[0])
    seed = tf.constant([config.optimisation.seed, index], tf.int64)
    a, b = data_lib.random_jitter(a, b, seed, 44, 32, True)
    np.testing.assert_allclose(data_lib.normalize(a).numpy(),
                               input_image[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(data_lib.normalize(b).numpy(),
                               target_image[0].numpy(), atol=1e-6)


def test_missing_dataset_names_the_folder_and_the_download_command(tmp_path):
  with pytest.raises(data_lib.DatasetError) as error:
    data_lib.list_split(str(tmp_path / "datasets" / "facades"),
                               "train")
  message = str(error.value)
  assert str(tmp_path / "datasets" / "facades" / "train") in message
  assert "python -m pix2pix_tf.datasets download facades --output=" in (
      message)


def test_empty_dataset_folder_is_named(tmp_path):
  (tmp_path / "d" / "train").mkdir(parents=True)
  (tmp_path / "d" / "train" / "notes.txt").write_text("not an image")
  with pytest.raises(data_lib.DatasetError,
                     match=r"d/train holds no .jpg"):
    data_lib.list_split(str(tmp_path / "d"), "train")


def test_a_file_that_is_not_an_image_is_named(tmp_path):
  bad = tmp_path / "fake.jpg"
  bad.write_text("this is text, not a JPEG")
  good = write_pair(tmp_path / "good.png", gradient_image(8, 8),
                    gradient_image(8, 8))
  with pytest.raises(data_lib.DatasetError, match="fake.jpg is not a"):
    data_lib.check_headers([good, str(bad)])


def test_headers_name_an_image_over_max_pixels(tmp_path, monkeypatch):
  small = write_pair(tmp_path / "small.png", gradient_image(8, 8),
                     gradient_image(8, 8))
  large = write_pair(tmp_path / "large.png", gradient_image(40, 40),
                     gradient_image(40, 40))
  data_lib.check_headers([small, large])  # Under the default limit.
  data_lib.check_headers([small, large], max_pixels=40 * 80)
  with pytest.raises(data_lib.TooLargeError,
                     match="large.png is 80x40 = 3200 pixels") as error:
    data_lib.check_headers([small, large], max_pixels=40 * 80 - 1)
  assert error.value.path == large
  # Past Pillow's own bomb limit, where Pillow does not even give the size:
  # the size is read all the same, and --max_pixels is the limit.
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
  data_lib.check_headers([small, large])
  data_lib.check_headers([small, large], max_pixels=10 ** 9)
  with pytest.raises(data_lib.TooLargeError, match="large.png is 80x40 = "
                     "3200 pixels, more than --max_pixels=3199"):
    data_lib.check_headers([small, large], max_pixels=40 * 80 - 1)


def test_no_image_over_max_pixels_is_decoded_by_the_pipeline(tmp_path):
  """The tf.data gate, for what the header check does not see first
  (TFRecords, a file changed after the check): the header is read and the
  image refused before it is decoded, in training and evaluation."""
  data_dir = make_split(tmp_path, {
      "small.png": (gradient_image(8, 8), gradient_image(8, 8)),
      "large.png": (gradient_image(40, 40), gradient_image(40, 40))})
  config = small_config(data_dir, tmp_path / "run", max_pixels=40 * 80 - 1,
                        preprocess="none", crop_size=32)
  files = sorted(data_lib.list_split(data_dir, "train"))
  for training in (True, False):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="more than max_pixels=3199 pixels"):
      for _ in data_lib.make_dataset(files, config, 1, training=training):
        pass
  split = data_lib.Split(tuple(files), 2)
  assert data_lib.find_undecodable(split, 40 * 80 - 1) == [files[0]]
  assert data_lib.find_undecodable(split, 40 * 80) == []
  with pytest.raises(tf.errors.InvalidArgumentError, match="max_pixels"):
    data_lib.load_pair(files[0], max_pixels=40 * 80 - 1)


def test_a_corrupt_image_is_found_by_name(tmp_path):
  good = tmp_path / "good.jpg"
  Image.fromarray(gradient_image(64, 128)).save(good)
  truncated = tmp_path / "truncated.jpg"
  truncated.write_bytes(good.read_bytes())
  truncate_after_header(truncated)
  data_lib.check_headers([str(good), str(truncated)])  # Header is fine.
  # Cut inside the header: named up front, before any decoding.
  no_header = tmp_path / "no_header.jpg"
  no_header.write_bytes(good.read_bytes()[:200])
  with pytest.raises(data_lib.DatasetError,
                     match="no_header.jpg has an unreadable header"):
    data_lib.check_headers([str(good), str(no_header)])
  assert data_lib.find_undecodable(
      data_lib.Split((str(good),), 1), 10 ** 6) == []
  assert data_lib.find_undecodable(data_lib.Split(
      (str(good), str(truncated)), 2), 10 ** 6) == [str(truncated)]
