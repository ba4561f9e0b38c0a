"""Image metrics on constructed cases with known answers."""

import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf.evaluation import metrics


def test_identical_images():
  image = tf.random.uniform([2, 16, 16, 3], -1, 1, seed=0)
  values = metrics.image_metrics(image, image)
  assert values["l1"].numpy() == pytest.approx([0, 0])
  assert values["mse"].numpy() == pytest.approx([0, 0])
  assert values["ssim"].numpy() == pytest.approx([1, 1], abs=1e-5)
  assert np.all(np.isinf(values["psnr"].numpy()))


def test_known_shift():
  target = tf.zeros([1, 16, 16, 3])
  generated = tf.fill([1, 16, 16, 3], 0.2)  # 0.1 on the [0, 1] scale.
  values = metrics.image_metrics(generated, target)
  assert values["l1"].numpy() == pytest.approx([0.2])
  assert values["mse"].numpy() == pytest.approx([0.04])
  # PSNR = 10 log10(1 / 0.1^2) = 20 dB.
  assert values["psnr"].numpy() == pytest.approx([20.0], abs=1e-3)
  # A constant offset leaves structure intact but lowers luminance terms.
  assert 0.5 < values["ssim"].numpy()[0] < 1.0


def test_more_noise_scores_worse():
  rng = np.random.RandomState(0)
  target = tf.constant(rng.uniform(-1, 1, (1, 32, 32, 3)), tf.float32)
  scores = [metrics.image_metrics(
      tf.clip_by_value(target + s * rng.normal(size=(1, 32, 32, 3)), -1, 1),
      target) for s in (0.05, 0.2, 0.5)]
  for better, worse in zip(scores, scores[1:]):
    assert better["l1"] < worse["l1"]
    assert better["psnr"] > worse["psnr"]
    assert better["ssim"] > worse["ssim"]
