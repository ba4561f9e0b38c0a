"""pix2pix_tf.load: an export, or a run, as a function on paths, PIL images
and arrays, translating each as predict does."""

import os

import numpy as np
import pytest
from PIL import Image

import pix2pix_tf
from conftest import gradient_image
from pix2pix_tf import outputs
from pix2pix_tf import serving


@pytest.fixture(scope="module")
def run(trained_run):
  return trained_run.outputs.model_dir


@pytest.fixture(scope="module")
def translate(run, tmp_path_factory):
  """An eval-mode export of the run: the paper's inference mode keeps
  dropout on, and every call would draw other noise."""
  export_dir = str(tmp_path_factory.mktemp("eval") / "export")
  serving.export(run, export_dir, inference_mode="eval")
  return pix2pix_tf.load(export_dir)


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("input") / "labels.png"
  Image.fromarray(gradient_image(32, 32)).save(path)
  return str(path)


def test_a_path_gives_what_predict_writes(translate, image_file, tmp_path):
  folder = outputs.Folder(str(tmp_path / "predicted"), "output")
  assert serving.translate_files(translate.export_dir,
                                 [image_file], folder) == []
  predicted = np.asarray(Image.open(tmp_path / "predicted" / "labels.png"))
  result = translate(image_file)
  assert isinstance(result, Image.Image) and result.size == (32, 32)
  np.testing.assert_array_equal(np.asarray(result), predicted)


def test_pil_images_and_arrays_give_the_same(translate, image_file):
  from_path = np.asarray(translate(image_file))
  with Image.open(image_file) as image:
    from_pil = translate(image)
  assert isinstance(from_pil, Image.Image)
  np.testing.assert_array_equal(np.asarray(from_pil), from_path)
  from_array = translate(gradient_image(32, 32))
  assert from_array.dtype == np.uint8 and from_array.shape == (32, 32, 3)
  np.testing.assert_array_equal(from_array, from_path)


def test_transparency_is_on_white_as_in_a_file(translate):
  rgb = gradient_image(32, 32)
  alpha = np.full((32, 32, 1), 255, np.uint8)
  alpha[:16] = 0  # The top half transparent: white, by the decoding rule.
  rgba = np.concatenate([rgb, alpha], axis=-1)
  on_white = np.where(alpha == 0, 255, rgb).astype(np.uint8)
  expected = translate(on_white)
  np.testing.assert_array_equal(translate(rgba), expected)
  np.testing.assert_array_equal(
      np.asarray(translate(Image.fromarray(rgba, "RGBA"))), expected)


def test_a_run_loads_its_export(run):
  export_dir = os.path.join(run, "export")
  from_run, from_export = pix2pix_tf.load(run), pix2pix_tf.load(export_dir)
  assert from_run.export_dir == from_export.export_dir == export_dir
  assert from_run.metadata == from_export.metadata
  assert from_run.metadata["inference_mode"] == "paper"


def test_bad_inputs_are_refused_with_what_to_do(translate, tmp_path):
  with pytest.raises(ValueError, match="uint8.*127.5"):
    translate(np.zeros((32, 32, 3), np.float32))
  with pytest.raises(ValueError, match="uint8; got uint16 with 4"):
    translate(np.zeros((32, 32, 4), np.uint16))
  with pytest.raises(ValueError, match="mode F .* convert it to RGB"):
    translate(Image.fromarray(np.zeros((32, 32), np.float32)))
  with pytest.raises(ValueError, match="mode I .* convert it to RGB"):
    translate(Image.new("I", (32, 32)))
  small = pix2pix_tf.serving.ExportTranslator(translate.export_dir,
                                              max_pixels=1000)
  for image in (Image.new("RGB", (64, 64)), np.zeros((64, 64, 3), np.uint8)):
    with pytest.raises(ValueError,
                       match="64x64 pixels, more than max_pixels"):
      small(image)
  with pytest.raises(serving.ExportError,
                     match=f"{tmp_path} is neither an export nor a run.*"
                     "pix2pix_tf.export"):
    pix2pix_tf.load(str(tmp_path))
