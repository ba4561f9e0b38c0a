"""SavedModel export, its signatures, loading without this package, predict."""

import base64
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import (ENV, gradient_image, run_command, small_config,
                      truncate_after_header, write_pair)
from pix2pix_tf import outputs
from pix2pix_tf import serving
from pix2pix_tf import models


@pytest.fixture(scope="module")
def eval_export(trained_run, tmp_path_factory):
  path = str(tmp_path_factory.mktemp("exports") / "eval")
  return serving.export(trained_run.outputs.model_dir,
                        path,
                        inference_mode="eval")


@pytest.mark.slow
def test_training_exports_at_the_end(trained_run):
  path = os.path.join(trained_run.outputs.model_dir, "export")
  loaded = tf.saved_model.load(path)
  metadata = json.loads(loaded.metadata_json.numpy())
  assert metadata["step"] == 3
  assert metadata["inference_mode"] == "paper"
  assert metadata["direction"] == trained_run.data.direction
  assert metadata["image_size"] == 32
  assert metadata["size_multiple"] == 32
  assert metadata["flags"]["ngf"] == 8
  signature = loaded.signatures["metadata"]()
  assert json.loads(signature["metadata"].numpy()) == metadata
  assert set(loaded.signatures) == {
      "serving_default", "translate_uint8", "translate_native",
      "translate_encoded", "translate_encoded_native", "metadata"}
  assert metadata["resolution"] == "training"  # --preprocess=resize_and_crop.


def keras_generator(config):
  generator, step = serving.saved_model.restore_generator(
      config, tf.train.latest_checkpoint(
          os.path.join(config.outputs.model_dir, "checkpoints")))
  assert step == 3
  return generator


@pytest.mark.slow
def test_eval_export_equals_the_keras_generator_in_another_process(
    trained_run, eval_export, tmp_path):
  rng = np.random.RandomState(0)
  images = rng.uniform(-1, 1, (2, 64, 96, 3)).astype(np.float32)
  np.save(tmp_path / "in.npy", images)
  # A separate process that imports TensorFlow and Keras only.
  script = f"""
import sys
import numpy as np
import tensorflow as tf
import keras
images = np.load({str(tmp_path / 'in.npy')!r})
loaded = tf.saved_model.load({eval_export!r})
out = loaded.signatures["serving_default"](images=tf.constant(images))
np.save({str(tmp_path / 'saved_model.npy')!r}, out["generated_image"].numpy())
layer = keras.layers.TFSMLayer({eval_export!r},
                               call_endpoint="serving_default")
out = layer(tf.constant(images))
np.save({str(tmp_path / 'tfsm.npy')!r}, out["generated_image"].numpy())
assert not any(m.startswith("pix2pix_tf") for m in sys.modules)
"""
  subprocess.run([sys.executable, "-c", script], check=True, env=ENV,
                 cwd=str(tmp_path), capture_output=True)
  expected = keras_generator(trained_run)(images, training=False).numpy()
  for name in ("saved_model.npy", "tfsm.npy"):
    got = np.load(tmp_path / name)
    assert got.shape == (2, 64, 96, 3)
    assert np.abs(got - expected).max() < 1e-5


@pytest.mark.slow
def test_paper_mode_is_stochastic_and_eval_mode_deterministic(
    trained_run, eval_export):
  images = tf.random.uniform([1, 32, 32, 3], -1, 1, seed=1)
  paper = tf.saved_model.load(
      os.path.join(trained_run.outputs.model_dir, "export"))
  first = paper.signatures["serving_default"](images=images)
  second = paper.signatures["serving_default"](images=images)
  assert np.abs(first["generated_image"] - second["generated_image"]).max(
  ) > 1e-3  # Dropout at test time.
  evaluated = tf.saved_model.load(eval_export)
  first = evaluated.signatures["serving_default"](images=images)
  second = evaluated.signatures["serving_default"](images=images)
  np.testing.assert_array_equal(first["generated_image"],
                                second["generated_image"])
  assert json.loads(evaluated.metadata_json.numpy())["inference_mode"] == (
      "eval")


@pytest.mark.slow
def test_paper_mode_uses_each_images_statistics(trained_run, tmp_path):
  # With dropout off, the paper-mode export of a batch equals the generator
  # run in training mode (batch statistics) on each image alone, as the
  # reference tests with batch size 1.
  config = trained_run
  generator = keras_generator(config)
  no_dropout = models.build_generator(
      small_config(config.data.data_dir, config.outputs.model_dir, dropout=0.0))
  no_dropout.set_weights(generator.get_weights())
  path = serving.save(no_dropout, config, 3, str(tmp_path / "paper"), "paper")
  images = tf.concat([tf.random.uniform([2, 32, 32, 3], -1, 1, seed=2),
                      tf.random.uniform([2, 32, 32, 3], -0.2, 0.9, seed=3)],
                     0)
  exported = tf.saved_model.load(path).signatures["serving_default"](
      images=images)["generated_image"]
  expected = tf.concat([no_dropout(images[i:i + 1], training=True)
                        for i in range(4)], 0)
  assert np.abs(exported.numpy() - expected.numpy()).max() < 1e-5
  # Statistics pooled over the batch would give other images.
  assert np.abs(exported.numpy() - no_dropout(images, training=True)).max(
  ) > 1e-3
  assert np.abs(exported.numpy() - no_dropout(images, training=False)).max(
  ) > 1e-3


@pytest.mark.slow
def test_translate_uint8_takes_any_size(eval_export):
  loaded = tf.saved_model.load(eval_export)
  translate = loaded.signatures["translate_uint8"]
  for height, width in [(32, 32), (17, 45), (100, 64)]:
    images = tf.constant(np.stack([gradient_image(height, width)] * 2))
    out = translate(images=images)["generated_image"]
    assert out.dtype == tf.uint8
    assert out.shape == (2, height, width, 3)
  # At the working size, it is serving_default with the value mapping.
  images = gradient_image(32, 32)[None]
  out = translate(images=tf.constant(images))["generated_image"].numpy()
  floats = loaded.signatures["serving_default"](
      images=tf.constant(images / 127.5 - 1.0, tf.float32))["generated_image"]
  expected = np.round(np.clip((floats.numpy() + 1) * 127.5, 0, 255))
  assert np.abs(out.astype(int) - expected).max() <= 1


@pytest.mark.slow
def test_translate_encoded_round_trips_png_and_jpeg(eval_export, tmp_path):
  loaded = tf.saved_model.load(eval_export)
  encoded = []
  for name, size in (("a.png", (40, 24)), ("b.jpg", (32, 32))):
    Image.fromarray(gradient_image(*size)).save(tmp_path / name)
    encoded.append((tmp_path / name).read_bytes())
  out = loaded.signatures["translate_encoded"](
      images_bytes=tf.constant(encoded))["generated_image_bytes"].numpy()
  assert len(out) == 2
  shapes = [tf.io.decode_png(png).shape for png in out]
  assert shapes == [(40, 24, 3), (32, 32, 3)]
  # TensorFlow Serving's REST form: base64 of these bytes.
  assert base64.b64decode(base64.b64encode(out[0])) == out[0]


@pytest.mark.slow
def test_serving_default_says_what_it_expects(eval_export):
  loaded = tf.saved_model.load(eval_export)
  serving = loaded.signatures["serving_default"]
  expected = r"expected shape \[batch, height, width, 3\]"
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=expected + " with height and width multiples of 32"):
    serving(images=tf.zeros([1, 40, 32, 3]))
  with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
    serving(images=tf.zeros([32, 32, 3]))  # No batch axis.
  with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
    serving(images=tf.zeros([1, 32, 32, 4]))  # RGBA.
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="expected to be a float tensor but is a int32"):
    serving(images=tf.zeros([1, 32, 32, 3], tf.int32))
  with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
    loaded.signatures["translate_uint8"](images=tf.zeros([5, 5], tf.uint8))
  # The model still answers after bad requests.
  assert serving(images=tf.zeros([1, 32, 32, 3]))["generated_image"].shape == (
      1, 32, 32, 3)


@pytest.mark.slow
def test_export_command_replaces_an_export_atomically(trained_run, tmp_path):
  target = tmp_path / "exports" / "model"
  serving.export(trained_run.outputs.model_dir,
                 str(target),
                 inference_mode="paper")
  result = subprocess.run(
      [sys.executable, "-m", "pix2pix_tf.export",
       f"--model_dir={trained_run.outputs.model_dir}", f"--export_dir={target}",
       "--inference_mode=eval"], capture_output=True, text=True, env=ENV)
  assert result.returncode == 0, result.stderr
  assert serving.read_metadata(str(target))["inference_mode"] == "eval"
  assert sorted(os.listdir(tmp_path / "exports")) == sorted(
      ["model", outputs.MANIFEST])  # No staging left.


@pytest.mark.slow
def test_failed_export_leaves_the_previous_one(trained_run, tmp_path,
                                              monkeypatch):
  target = tmp_path / "model"
  serving.export(trained_run.outputs.model_dir,
                 str(target),
                 inference_mode="eval")
  before = {name: (target / name).stat().st_mtime_ns
            for name in os.listdir(target)}

  def failing_save(obj, path, signatures=None):
    del obj, signatures
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
      f.write(b"half")  # Half-written, then the disk fills up.
    raise OSError("No space left on device")

  monkeypatch.setattr(tf.saved_model, "save", failing_save)
  with pytest.raises(OSError, match="No space left"):
    serving.export(trained_run.outputs.model_dir,
                   str(target),
                   inference_mode="eval")
  assert {name: (target / name).stat().st_mtime_ns
          for name in os.listdir(target)} == before
  # No staging folder left.
  assert sorted(os.listdir(tmp_path)) == sorted(["model", outputs.MANIFEST])
  monkeypatch.undo()
  assert tf.saved_model.load(str(target)).signatures["serving_default"]


@pytest.mark.slow
def test_export_command_names_a_run_without_checkpoints(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "pix2pix_tf.export", f"--model_dir={tmp_path}"],
      capture_output=True, text=True, env=ENV)
  assert result.returncode != 0
  assert f"{tmp_path}/config.json not found" in result.stderr


@pytest.mark.slow
def test_predict_translates_a_folder_and_skips_a_corrupt_file(eval_export,
                                                              tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  Image.fromarray(gradient_image(30, 50)).save(inputs / "wide.png")
  Image.fromarray(gradient_image(64, 64)).save(inputs / "square.jpg")
  (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
  truncated = inputs / "truncated.png"
  Image.fromarray(gradient_image(64, 64)).save(truncated)
  truncate_after_header(truncated)
  result = run_command("predict", f"--saved_model={eval_export}",
                       f"--input={inputs}",
                       f"--output={tmp_path / 'out'}")
  assert result.returncode != 0
  # One sentence per skipped file, no TensorFlow stack.
  for bad in ("broken.png", "truncated.png"):
    assert (f"Skipped: {inputs / bad} is not a readable image"
            in result.stderr), result.stderr
  assert "Traceback" not in result.stderr
  assert "Graph execution error" not in result.stderr
  assert "pix2pix_tf.predict: error: 2 of 4 images failed" in result.stderr
  assert Image.open(tmp_path / "out" / "wide.png").size == (50, 30)
  # Outputs are PNG whatever the input's format, named by its stem.
  with Image.open(tmp_path / "out" / "square.png") as square:
    assert (square.format, square.size) == ("PNG", (64, 64))
  assert not (tmp_path / "out" / "square.jpg").exists()
  assert not (tmp_path / "out" / "broken.png").exists()


@pytest.mark.slow
def test_predict_keeps_outputs_of_inputs_sharing_a_stem(eval_export, tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  Image.fromarray(gradient_image(32, 32)).save(inputs / "twin.png")
  Image.fromarray(gradient_image(32, 32, offset=50)).save(inputs / "twin.jpg")
  result = run_command("predict", f"--saved_model={eval_export}",
                       f"--input={inputs}",
                       f"--output={tmp_path / 'out'}")
  assert result.returncode == 0, result.stderr
  assert sorted(os.listdir(tmp_path / "out")) == [outputs.MANIFEST,
                                                  "twin_jpg.png",
                                                  "twin_png.png"]
  assert "written as twin_jpg.png" in result.stderr


def decoding_cases(folder):
  """Two A|B pair files whose right decoding needs the rule: an RGBA PNG
  (alpha varies) and a JPEG stored turned, with Exif orientation 6."""
  folder.mkdir()
  pair = np.concatenate([gradient_image(32, 32),
                         gradient_image(32, 32, offset=90)], axis=1)
  alpha = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (32, 1))
  Image.fromarray(np.dstack([pair, alpha]), "RGBA").save(folder / "alpha.png")
  exif = Image.Exif()
  exif[0x0112] = 6  # Stored turned; turn 90 degrees clockwise to view.
  Image.fromarray(np.ascontiguousarray(np.rot90(pair))).save(
      folder / "turned.jpg", exif=exif, quality=95)
  return [str(folder / "alpha.png"), str(folder / "turned.jpg")]


@pytest.mark.slow
def test_training_export_and_predict_decode_alike(trained_run, eval_export,
                                                  tmp_path):
  from pix2pix_tf import data as data_lib
  files = decoding_cases(tmp_path / "pairs")
  # The rule, as Pillow applies it: upright, alpha on white.
  expected = [np.asarray(data_lib.read_rgb(f)) for f in files]
  for f, image in zip(files, expected):
    assert image.shape == (32, 64, 3)
    # What a plain tf.io.decode_image gives differs (alpha dropped, turned).
    plain = tf.io.decode_image(open(f, "rb").read(), channels=3).numpy()
    assert plain.shape != image.shape or np.abs(
        plain.astype(int) - image).max() > 50

  def input_half(image):
    a, b = image[:, :32], image[:, 32:]
    return b if trained_run.data.direction == "BtoA" else a

  # 1. The tf.data pipeline (evaluation: resize to crop_size, [-1, 1]).
  dataset = data_lib.make_dataset(files, trained_run, 2, training=False)
  got, _ = next(iter(dataset))
  for row, image in zip(got.numpy(), expected):
    want = data_lib.normalize(data_lib.resize(
        tf.constant(input_half(image), tf.float32), trained_run.data.crop_size))
    np.testing.assert_array_equal(row, want.numpy())

  # 2. The SavedModel's translate_encoded equals translate_uint8 of the
  # rule's pixels.
  loaded = tf.saved_model.load(eval_export)
  for f, image in zip(files, expected):
    encoded = loaded.signatures["translate_encoded"](
        images_bytes=tf.constant([open(f, "rb").read()]))[
            "generated_image_bytes"][0]
    direct = loaded.signatures["translate_uint8"](
        images=tf.constant(image[None]))["generated_image"][0]
    np.testing.assert_array_equal(tf.io.decode_png(encoded).numpy(),
                                  direct.numpy())

  # 3. predict: the input halves it saves are the rule's.
  result = run_command("predict", f"--saved_model={eval_export}", "--paired",
                       f"--input={tmp_path / 'pairs'}",
                       f"--output={tmp_path / 'out'}")
  assert result.returncode == 0, result.stderr
  for name, image in zip(("alpha.png", "turned.png"), expected):
    saved = np.asarray(Image.open(tmp_path / "out" / "inputs" / name))
    np.testing.assert_array_equal(saved, input_half(image))


@pytest.mark.slow
def test_predict_paired_writes_a_results_page(trained_run, tmp_path):
  test_dir = tmp_path / "test"
  test_dir.mkdir()
  names = []
  for i in range(3):
    names.append(f"{i}.jpg" if i == 2 else f"{i}.png")
    write_pair(test_dir / names[-1], gradient_image(32, 32, offset=i),
               gradient_image(32, 32, offset=100 + i))
  result = run_command("predict",
                       f"--model_dir={trained_run.outputs.model_dir}",
                       "--paired", f"--input={test_dir}",
                       f"--output={tmp_path / 'out'}")
  assert result.returncode == 0, result.stderr
  page = (tmp_path / "out" / "index.html").read_text()
  assert page.count("<tr><td>") == 3
  for name in names:
    stem = name[:-4]
    # Every image is a PNG, the JPEG pair's too.
    for src in (f"inputs/{stem}.png", f"{stem}.png", f"targets/{stem}.png"):
      assert f"src='{src}'" in page
      assert (tmp_path / "out" / src).exists()
  # The direction is honoured: input and target halves as the model's.
  a_half = gradient_image(32, 32, offset=0)
  b_half = gradient_image(32, 32, offset=100)
  saved_input = np.asarray(Image.open(tmp_path / "out" / "inputs" /
                                      "0.png"))
  expected_input = b_half if trained_run.data.direction == "BtoA" else a_half
  np.testing.assert_array_equal(saved_input, expected_input)
