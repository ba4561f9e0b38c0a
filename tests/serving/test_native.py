"""Inference at any size: native resolution (padded to a multiple, cropped
back), the resolution an export records, and tiled translation."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import (ENV, gradient_image, run_command, small_config,
                      visible_generator, write_pair)
from pix2pix_tf import outputs
from pix2pix_tf import data as data_lib
from pix2pix_tf import serving
from pix2pix_tf.serving import tiling


def smooth_image(height, width, channels=3):
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  planes = [127 + 100 * np.sin(x / 37.0 + c) * np.cos(y / 53.0 - c)
            for c in range(channels)]
  return np.stack(planes, -1).round().astype(np.uint8)


# -- Padding to a multiple and back.

@pytest.mark.parametrize("height,width", [(7, 9), (1, 1), (3, 50), (50, 3),
                                          (32, 17)])
def test_fit_to_multiple_mirrors_any_size_and_crops_back(height, width):
  images = tf.random.uniform([2, height, width, 3])
  padded = data_lib.fit_to_multiple(images, 16)
  assert padded.shape[1] % 16 == 0 and padded.shape[2] % 16 == 0
  assert padded.shape[1] - height < 16 and padded.shape[2] - width < 16
  np.testing.assert_array_equal(
      data_lib.crop_to(padded, height, width), images)
  rows = data_lib.transforms.padding(height, 16)
  columns = data_lib.transforms.padding(width, 16)
  if max(rows) < height and max(columns) < width:
    # Where tf.pad can reflect, the result is tf.pad's REFLECT.
    np.testing.assert_array_equal(
        padded, tf.pad(images, [[0, 0], rows, columns, [0, 0]], "REFLECT"))


def test_through_padding_runs_the_model_on_the_padded_image():
  images = tf.random.uniform([1, 20, 37, 3])
  seen = []

  def generate(padded):
    seen.append(padded.shape)
    return padded * 2.0

  out = data_lib.through_padding(generate, images, 8)
  assert seen == [(1, 24, 40, 3)]
  np.testing.assert_allclose(out, images * 2.0)


# -- The export's signatures and metadata.

@pytest.mark.parametrize("preprocess,expected", [
    ("resize_and_crop", "training"), ("scale_width", "training"),
    ("scale_width_and_crop", "training"), ("crop", "native"),
    ("none", "native")])
def test_the_recorded_resolution_follows_preprocess(preprocess, expected,
                                                    tmp_path):
  config = small_config(tmp_path, tmp_path / "run", preprocess=preprocess,
                        load_size=64)
  assert serving.export_metadata(config, 0, "eval", 100)["resolution"] == (
      expected)
  assert serving.export_metadata(config, 0, "eval", 100, "native")[
      "resolution"] == "native"


def module_for(tmp_path, inference_mode="eval", **overrides):
  """The signatures of a fresh depth-4 generator whose output shows its
  input."""
  config = small_config(tmp_path, tmp_path / "run", unet_depth=4,
                        dropout=0.0, **overrides)
  generator = visible_generator(config)
  return generator, serving.build_module(generator, config, 0,
                                         inference_mode)


def test_translate_native_pads_runs_and_crops_without_resizing(tmp_path):
  generator, module = module_for(tmp_path)
  image = gradient_image(37, 45)[None]
  native = module.translate_native(images=tf.constant(image))[
      "generated_image"].numpy()
  assert native.shape == (1, 37, 45, 3)
  # Computed another way: the generator on the image mirrored to 48x48
  # (11 rows: 5 above, 6 below; 3 columns: 1 left, 2 right), cropped back.
  padded = np.pad(image / 127.5 - 1.0, [[0, 0], [5, 6], [1, 2], [0, 0]],
                  mode="reflect").astype(np.float32)
  expected = generator(padded, training=False).numpy()[:, 5:42, 1:46]
  expected = np.round(np.clip((expected + 1) * 127.5, 0, 255))
  assert np.abs(native.astype(int) - expected).max() <= 1
  # The training resolution goes through the 32x32 training size instead.
  training = module.translate_uint8(images=tf.constant(image))[
      "generated_image"].numpy()
  assert np.abs(training.astype(int) - native.astype(int)).mean() > 2


def test_scale_width_training_resolution_keeps_the_aspect(tmp_path):
  generator, module = module_for(tmp_path, preprocess="scale_width",
                                 load_size=48)
  image = smooth_image(60, 96)[None]
  out = module.translate_uint8(images=tf.constant(image))[
      "generated_image"].numpy()
  # Width 48, height 30 (aspect kept) but at least --crop_size (32);
  # padded to 32x48 for the depth-4 generator, then back to 60x96.
  small = tf.clip_by_value(tf.image.resize(
      image.astype(np.float32), [32, 48], "bicubic", antialias=True), 0, 255)
  generated = generator(small / 127.5 - 1.0, training=False)
  expected = tf.image.resize(generated, [60, 96], "bicubic", antialias=True)
  expected = np.round(np.clip((expected.numpy() + 1) * 127.5, 0, 255))
  assert out.shape == (1, 60, 96, 3)
  assert np.abs(out.astype(int) - expected).max() <= 1


def test_paper_mode_at_native_size_uses_each_images_statistics(tmp_path):
  generator, module = module_for(tmp_path, inference_mode="paper")
  images = np.stack([smooth_image(48, 80), gradient_image(48, 80)])
  both = module.translate_native(images=tf.constant(images))[
      "generated_image"].numpy()
  alone = module.translate_native(images=tf.constant(images[:1]))[
      "generated_image"].numpy()
  np.testing.assert_array_equal(both[:1], alone)  # Not the batch's.
  expected = generator(images[:1] / 127.5 - 1.0, training=True).numpy()
  expected = np.round(np.clip((expected + 1) * 127.5, 0, 255))
  assert np.abs(alone.astype(int) - expected).max() <= 1
  _, eval_module = module_for(tmp_path, inference_mode="eval")
  eval_module.model.set_weights(generator.get_weights())
  moving = eval_module.translate_native(images=tf.constant(images[:1]))[
      "generated_image"].numpy()
  assert np.abs(moving.astype(int) - alone.astype(int)).mean() > 2


# -- Tiles.

@pytest.mark.parametrize("length,tile,overlap", [
    (1000, 256, 32), (257, 256, 32), (256, 256, 32), (100, 256, 32),
    (4096, 512, 64), (700, 64, 32), (513, 256, 128)])
def test_tiles_cover_the_side_with_the_overlap(length, tile, overlap):
  starts = tiling.tile_starts(length, tile, overlap)
  size = min(tile, length)
  assert starts[0] == 0 and starts[-1] + size == length
  for before, after in zip(starts, starts[1:]):
    assert before < after and before + size - after >= overlap


def blur(tile):
  """An identity-like model with context: a 3x3 mean, zero-padded, so that
  a tile's outermost pixels differ from the whole image's."""
  x = tf.constant(tile[None].astype(np.float32))
  kernel = tf.ones([3, 3, 1, 1]) / 9.0
  return tf.nn.depthwise_conv2d(x, tf.tile(kernel, [1, 1, 3, 1]),
                                [1, 1, 1, 1], "SAME")[0].numpy()


def test_tiled_translation_has_no_seams():
  image = smooth_image(300, 410)
  whole = np.clip(np.round(blur(image)), 0, 255)
  tiled = tiling.translate_tiled(blur, image, 128, 32)
  inner = (slice(1, -1), slice(1, -1))  # The image's own border is zero
  # padded in both.
  assert np.abs(tiled[inner].astype(int) - whole[inner]).max() <= 1
  # Tiles pasted without blending show their edges: the test can fail.
  pasted = np.zeros_like(whole)
  for y in tiling.tile_starts(300, 128, 32):
    for x in tiling.tile_starts(410, 128, 32):
      pasted[y:y + 128, x:x + 128] = np.round(blur(image[y:y + 128,
                                                         x:x + 128]))
  assert np.abs(pasted[inner] - whole[inner]).max() > 30


class FakeExport:
  """An export whose generator is the identity, for the choice of
  signature."""

  def __init__(self):
    identity = lambda images: {"generated_image": images}  # noqa: E731
    self.signatures = {"translate_native": identity,
                       "translate_uint8": None, "serving_default": None}


def test_tiles_are_native_whatever_the_exports_default():
  metadata = {"resolution": "training", "size_multiple": 16,
              "inference_mode": "eval"}
  translate = serving.make_translate(FakeExport(), metadata, None, 32, 8)
  image = smooth_image(50, 70)
  np.testing.assert_array_equal(translate(image), image)
  with pytest.raises(ValueError, match="leave out --resolution=training"):
    serving.make_translate(FakeExport(), metadata, "training", 32, 8)


@pytest.mark.parametrize("tile,overlap,message", [
    (100, 32, "--tile=100 is not a multiple of 16"),
    (64, 40, "--overlap=40 must be from 2 to half of --tile"),
    (64, 1, "--overlap=1")])
def test_bad_tiling_names_the_flag(tile, overlap, message):
  with pytest.raises(ValueError, match=message):
    tiling.check_tiling(tile, overlap, 16)


# -- End to end: predict and evaluate at native resolution, tiles' memory.

@pytest.fixture(scope="module")
def odd_export(tmp_path_factory):
  """A paper-mode export of a fresh depth-4 generator (dropout off, so
  that predict and evaluate can be compared) and odd-sized pairs."""
  root = tmp_path_factory.mktemp("native")
  config = small_config(root, root / "run", unet_depth=4, dropout=0.0,
                        preprocess="none")
  saved_model = serving.save(visible_generator(config), config, 0,
                             str(root / "export"), "paper")
  (root / "data" / "test").mkdir(parents=True)
  for i, (height, width) in enumerate([(37, 45), (30, 52), (48, 32)]):
    write_pair(root / "data" / "test" / f"{i}.png",
               smooth_image(height, width), gradient_image(height, width))
  # An odd-width pair: its right half one column wider.
  write_pair(root / "data" / "test" / "3.png", smooth_image(33, 40),
             gradient_image(33, 41))
  return saved_model, str(root / "data")


@pytest.mark.slow
def test_predict_and_evaluate_agree_at_native_resolution(odd_export,
                                                         tmp_path):
  saved_model, data_dir = odd_export
  assert serving.read_metadata(saved_model)["resolution"] == "native"

  def evaluate(*flags):
    output = tmp_path / "result.json"
    result = run_command("evaluate", f"--saved_model={saved_model}",
                         f"--data_dir={data_dir}", "--metrics=l1",
                         f"--output={output}", *flags)
    assert result.returncode == 0, result.stderr
    return json.loads(output.read_text())

  evaluated = evaluate("--batch_size=2")
  assert evaluated["resolution"] == "native"
  result = run_command("predict", f"--saved_model={saved_model}", "--paired",
                       f"--input={os.path.join(data_dir, 'test')}",
                       f"--output={tmp_path / 'predicted'}")
  assert result.returncode == 0, result.stderr
  for row in evaluated["per_image"]:
    generated, target = (np.asarray(Image.open(
        tmp_path / "predicted" / folder / row["file"]), np.float32)
                         for folder in ("", "targets"))
    with Image.open(os.path.join(data_dir, "test", row["file"])) as pair:
      assert generated.shape == (pair.height, pair.width // 2, 3)
    l1 = np.abs(generated - target).mean() / 127.5
    assert abs(l1 - row["l1"]) < 0.004, row["file"]
  # At the training resolution the numbers differ: the flag is used.
  training = evaluate("--resolution=training")
  assert training["resolution"] == "training"
  # (Each image's score, not the mean: this saturated generator's means can
  # agree to 1e-3.)
  assert ([row["l1"] for row in training["per_image"]] !=
          [row["l1"] for row in evaluated["per_image"]])


@pytest.mark.slow
def test_predict_tiles_a_large_image(odd_export, tmp_path):
  saved_model, _ = odd_export
  Image.fromarray(smooth_image(150, 230)).save(tmp_path / "big.png")
  result = run_command("predict", f"--saved_model={saved_model}",
                       f"--input={tmp_path / 'big.png'}",
                       f"--output={tmp_path / 'out'}", "--tile=64",
                       "--overlap=16")
  assert result.returncode == 0, result.stderr
  assert "paper-mode export normalises each tile" in result.stderr
  with Image.open(tmp_path / "out" / "big.png") as out:
    assert out.size == (230, 150)
  result = run_command("predict", f"--saved_model={saved_model}",
                       f"--input={tmp_path / 'big.png'}",
                       f"--output={tmp_path / 'out2'}", "--tile=60")
  assert result.returncode != 0
  assert "--tile=60 is not a multiple of 16" in result.stderr


# Peak memory growth of a tiled 4096x4096 translation, measured in a child
# process (ru_maxrss) after one tile has run: the output image (48 MiB), the
# accumulator of one row of tiles (512 rows x 4096 x 4 float32: 32 MiB), and
# room for one tile's work and the allocator (128 MiB grew in all when
# measured). Untiled, the same translation grew by 1269 MiB.
TILED_4096_BOUND_MB = 256


@pytest.mark.slow
def test_tiled_4096_image_stays_under_the_memory_bound(odd_export, tmp_path):
  saved_model, _ = odd_export
  script = f"""
import json, resource
import numpy as np
import tensorflow as tf
from pix2pix_tf import serving
loaded = serving.load_export({saved_model!r})
metadata = json.loads(loaded.metadata_json.numpy())
translate = serving.make_translate(loaded, metadata, "native", 512, 32)
image = np.random.RandomState(0).randint(0, 256, (4096, 4096, 3), np.uint8)
translate(image[:600, :600])  # Every tile shape traced and run once.
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = translate(image)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert out.shape == (4096, 4096, 3), out.shape
print(json.dumps({{"growth_mb": (after - before) / 1024}}))
"""
  result = subprocess.run([sys.executable, "-c", script], env=ENV,
                          capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr
  growth = json.loads(result.stdout.strip().splitlines()[-1])["growth_mb"]
  assert growth < TILED_4096_BOUND_MB, growth


@pytest.mark.slow
def test_native_output_has_the_detail_a_resized_one_lacks(odd_export,
                                                          tmp_path):
  # The paper's maps setting at small sizes: trained at 32x32, tested on
  # 64x96 at native resolution, against the same images translated at 32x32
  # and resized up (tools/compare_resolutions.py, which docs/inference.md's
  # figure comes from).
  saved_model, _ = odd_export
  (tmp_path / "pairs").mkdir()
  for i in range(2):
    write_pair(tmp_path / "pairs" / f"{i}.png", gradient_image(64, 96, offset=i),
               smooth_image(64, 96))
  result = subprocess.run(
      [sys.executable, "tools/compare_resolutions.py",
       f"--saved_model={saved_model}", f"--input={tmp_path / 'pairs'}",
       f"--output={tmp_path / 'grid.png'}"],
      capture_output=True, text=True, env=ENV, timeout=600,
      cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
  assert result.returncode == 0, result.stderr
  rows = [line.split("|")[1:-1] for line in result.stdout.splitlines()
          if line.startswith("| ")]
  assert [row[0].strip() for row in rows[1:]] == ["0.png", "1.png", "mean"]
  training, native, _ = (float(v) for v in rows[-1][2:])
  assert native > 2 * training
  with Image.open(tmp_path / "grid.png") as grid:
    assert grid.size == (4 * 96 + 12, 2 * 64 + 4)


# -- 16-bit PNGs.

def encode_png16(array):
  return tf.io.encode_png(array).numpy()


def test_16_bit_pngs_decode_at_full_precision():
  rng = np.random.RandomState(0)
  rgb = rng.randint(0, 65536, (5, 7, 3)).astype(np.uint16)
  assert bool(data_lib.is_16_bit_png(encode_png16(rgb)))
  np.testing.assert_array_equal(
      data_lib.decode_image(encode_png16(rgb), tf.uint16), rgb)
  # As uint8: the high bytes, as before.
  np.testing.assert_array_equal(data_lib.decode_image(encode_png16(rgb)),
                                rgb >> 8)
  gray = rng.randint(0, 65536, (4, 6, 1)).astype(np.uint16)
  np.testing.assert_array_equal(
      data_lib.decode_image(encode_png16(gray), tf.uint16),
      np.concatenate([gray] * 3, -1))
  # Alpha composited on white, by the rule of 8-bit images.
  rgba = np.concatenate([rgb, np.full((5, 7, 1), 65535, np.uint16)], -1)
  rgba[0, 0, 3] = 0
  rgba[0, 1, 3] = 32768
  decoded = data_lib.decode_image(encode_png16(rgba), tf.uint16).numpy()
  np.testing.assert_array_equal(decoded[1:], rgb[1:])
  np.testing.assert_array_equal(decoded[0, 0], [65535] * 3)
  expected = np.round(rgb[0, 1] * (32768 / 65535) + 65535 * (32767 / 65535))
  np.testing.assert_array_equal(decoded[0, 1], expected)
  # 8-bit images read as uint16 are scaled by 257 (255 -> 65535).
  eight = rng.randint(0, 256, (3, 4, 3)).astype(np.uint8)
  assert not bool(data_lib.is_16_bit_png(encode_png16(eight)))
  np.testing.assert_array_equal(
      data_lib.decode_image(encode_png16(eight), tf.uint16),
      eight.astype(np.uint16) * 257)
  with pytest.raises(ValueError, match="uint8 or uint16"):
    data_lib.decode_image(encode_png16(eight), tf.float32)


@pytest.mark.slow
def test_16_bit_png_in_16_bit_png_out(odd_export, tmp_path):
  saved_model, _ = odd_export
  # Two images that differ only below the eighth bit: clipped to 8 bits
  # they would be one image.
  high = (smooth_image(37, 45).astype(np.uint16) * 257)
  low = high + np.uint16(100)
  (tmp_path / "in").mkdir()
  for name, image in (("high", high), ("low", low)):
    (tmp_path / "in" / f"{name}.png").write_bytes(encode_png16(image))
  result = run_command("predict", f"--saved_model={saved_model}",
                       f"--input={tmp_path / 'in'}",
                       f"--output={tmp_path / 'out'}")
  assert result.returncode == 0, result.stderr
  outputs = {}
  for name in ("high", "low"):
    contents = (tmp_path / "out" / f"{name}.png").read_bytes()
    assert bool(data_lib.is_16_bit_png(contents)), name
    outputs[name] = tf.io.decode_png(contents, dtype=tf.uint16).numpy()
    assert outputs[name].shape == (37, 45, 3)
  assert np.abs(outputs["high"].astype(int) - outputs["low"]).max() > 0
  # Computed another way: the float signature on the mirrored image.
  floats = tf.saved_model.load(saved_model).signatures["serving_default"]
  padded = np.pad(low / 32767.5 - 1.0, [[5, 6], [1, 2], [0, 0]],
                  mode="reflect").astype(np.float32)
  expected = floats(images=tf.constant(padded[None]))["generated_image"][
      0].numpy()[5:42, 1:46]
  expected = np.round(np.clip((expected + 1) * 32767.5, 0, 65535))
  assert np.abs(outputs["low"] - expected).max() <= 2
  # The SavedModel's encoded signature answers a 16-bit PNG, the same.
  loaded = tf.saved_model.load(saved_model)
  answer = loaded.signatures["translate_encoded_native"](
      images_bytes=tf.constant([encode_png16(low)]))[
          "generated_image_bytes"][0].numpy()
  answered = tf.io.decode_png(answer, dtype=tf.uint16).numpy()
  # (One float rounding apart: in the graph, and eagerly in predict.)
  assert np.abs(answered.astype(int) - outputs["low"]).max() <= 1


@pytest.mark.slow
def test_training_and_evaluation_read_16_bit_pairs_at_full_precision(
    tmp_path):
  rng = np.random.RandomState(1)
  pair = rng.randint(0, 65536, (32, 64, 3)).astype(np.uint16)
  (tmp_path / "train").mkdir()
  (tmp_path / "train" / "0.png").write_bytes(encode_png16(pair))
  config = small_config(tmp_path, tmp_path / "run", preprocess="none",
                        flip=False, batch_size=1)
  expected = pair / 257.0 / 127.5 - 1.0
  files = [str(tmp_path / "train" / "0.png")]
  for training, resolution in ((True, "training"), (False, "native")):
    input_image, target_image = next(iter(data_lib.make_dataset(
        files, config, 1, training=training, resolution=resolution)))
    np.testing.assert_allclose(input_image[0], expected[:, :32], atol=1e-5)
    np.testing.assert_allclose(target_image[0], expected[:, 32:], atol=1e-5)
  # The cache holds 8 bits: the nearest 8-bit values, half a level at most.
  input_image, _ = next(iter(data_lib.make_dataset(
      files, config, 1, training=True, cache="memory")))
  assert np.abs(input_image[0] - expected[:, :32]).max() <= 0.5 / 127.5 + 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("resolution", ["native", "training"])
def test_degenerate_sizes_come_back_at_their_size(odd_export, resolution,
                                                  tmp_path):
  saved_model, _ = odd_export
  sizes = {"dot": (1, 1), "flat": (3, 5000), "tall": (5000, 3)}
  files = []
  for name, (height, width) in sizes.items():
    Image.fromarray(smooth_image(height, width)).save(tmp_path / f"{name}.png")
    files.append(str(tmp_path / f"{name}.png"))
  out = outputs.Folder(str(tmp_path / "out"), "output")
  failed = serving.translate_files(saved_model, files, out,
                                   resolution=resolution)
  assert failed == []
  for name, (height, width) in sizes.items():
    with Image.open(tmp_path / "out" / f"{name}.png") as out:
      assert out.size == (width, height), name
