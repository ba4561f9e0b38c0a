"""The FID Inception network computes what pytorch-fid's own does: the same
weights (random ones, from fid_fixtures; make_fid_fixtures.py ran
pytorch-fid's model and pipeline on them and on the same images), read
from a .pth without PyTorch, give the same features and the same FID."""

import hashlib
import os

import numpy as np
import pytest

import fid_fixtures
import pth_writer
from pix2pix_tf import errors
from pix2pix_tf.data import transforms
from pix2pix_tf.evaluation import fid_inception
from pix2pix_tf.evaluation import metrics

EXPECTED = os.path.join(os.path.dirname(__file__), "data",
                        "fid_expected.npz")


@pytest.fixture(scope="module")
def network(tmp_path_factory):
  """The network as `evaluate --inception_weights=FILE.pth` loads it, from
  a state dict laid out as pytorch-fid's file: its 1008-class head too,
  in torch.save's format before PyTorch 1.6."""
  state = fid_fixtures.random_state(
      fid_inception.state_dict_shapes(fid_inception.build()))
  rng = np.random.RandomState(0)
  state["fc.weight"] = rng.normal(0, 0.01, (1008, 2048))
  state["fc.bias"] = np.zeros(1008)
  path = str(tmp_path_factory.mktemp("fid") / "pt_inception-random.pth")
  pth_writer.write_state_dict(path, state, legacy=True)
  return metrics.inception_model(path)


def features(model, name):
  images = fid_fixtures.images(name).astype(np.float32) / 127.5 - 1.0
  return metrics.inception_features(model, images)


@pytest.mark.slow
def test_features_and_fid_are_pytorch_fids(network):
  expected = np.load(EXPECTED)
  ours = {name: features(network, name) for name in fid_fixtures.SETS}
  for name in fid_fixtures.SETS:
    theirs = expected[f"features_{name}"]
    assert ours[name].shape == theirs.shape == (fid_fixtures.SETS[name][0],
                                                2048)
    assert np.abs(theirs).max() > 10  # Features that say something.
    np.testing.assert_allclose(ours[name], theirs, rtol=0, atol=1e-4)
  assert metrics.frechet_distance(ours["a"], ours["b"]) == pytest.approx(
      float(expected["fid"]), abs=0.01)


def test_outputs_are_scored_as_the_8_bit_images_predict_writes(network):
  rng = np.random.RandomState(1)
  generated = rng.uniform(-1, 1, (2, 40, 48, 3)).astype(np.float32)
  written = transforms.to_uint8(generated).numpy() / 127.5 - 1.0
  assert np.abs(written - generated).max() > 1e-3  # Not already 8-bit.
  np.testing.assert_array_equal(
      metrics.inception_features(network, generated),
      metrics.inception_features(network, written))


@pytest.mark.parametrize("state,why", [
    ({"fc.bias": np.zeros(1008)},
     r"Conv2d_1a_3x3\.conv\.weight is missing"),
    ({"Conv2d_1a_3x3.conv.weight": np.zeros((32, 1, 3, 3))},
     r"Conv2d_1a_3x3\.conv\.weight has shape \(32, 1, 3, 3\), where the FID "
     r"Inception network has \(32, 3, 3, 3\)"),
])
def test_another_state_dict_is_refused_by_file_and_tensor(tmp_path, state,
                                                          why):
  path = pth_writer.write_state_dict(str(tmp_path / "other.pth"), state)
  with pytest.raises(errors.CommandError,
                     match=rf"other\.pth: tensor {why}.*pt_inception"):
    metrics.inception_model(path)


def test_a_tensor_the_network_has_no_place_for_is_refused(tmp_path):
  """A full state dict with a bias on a convolution (which the FID
  Inception network's convolutions lack) is named, not loaded without it
  or failed on inside Keras."""
  state = fid_fixtures.random_state(
      fid_inception.state_dict_shapes(fid_inception.build()))
  state["Mixed_5b.branch1x1.conv.bias"] = np.zeros(64)
  path = pth_writer.write_state_dict(str(tmp_path / "biased.pth"), state)
  with pytest.raises(errors.CommandError,
                     match=r"biased\.pth: tensor Mixed_5b\.branch1x1\.conv\."
                     r"bias has no place.*pt_inception"):
    metrics.inception_model(path)


def test_grayscale_images_are_scored_as_their_rgb(network):
  rng = np.random.RandomState(2)
  gray = rng.uniform(-1, 1, (2, 40, 48, 1)).astype(np.float32)
  np.testing.assert_array_equal(
      metrics.inception_features(network, gray),
      metrics.inception_features(network, np.repeat(gray, 3, axis=-1)))


def test_only_pytorch_fids_own_file_is_called_comparable(tmp_path,
                                                         monkeypatch):
  """A state dict of the right shapes but other weights (torchvision's
  ImageNet Inception has them) is not called pytorch-fid's; the SHA-256
  decides. The Keras network is never comparable."""
  path = pth_writer.write_state_dict(str(tmp_path / "other.pth"),
                                     {"w": np.zeros(3)})
  assert not metrics.what_fid_compares_with(path)[1]
  assert "weights other than pytorch-fid's" in (
      metrics.what_fid_compares_with(path)[0])
  with open(path, "rb") as file:
    digest = hashlib.sha256(file.read()).hexdigest()
  monkeypatch.setattr(fid_inception, "WEIGHTS_SHA256_PREFIX", digest[:8])
  assert metrics.what_fid_compares_with(path) == (
      "FID as pytorch-fid computes it (the FID Inception network, "
      "pytorch-fid's weights) and KID on the same features", True)
  assert "only between runs" in metrics.what_fid_compares_with("w.h5")[0]


def test_a_weights_file_of_another_kind_is_named_with_what_to_give():
  with pytest.raises(errors.CommandError, match=r"--inception_weights="
                     r"inception\.onnx: give pytorch-fid's pt_inception.*"
                     r"\.pth or an \.h5"):
    metrics.inception_model("inception.onnx")
