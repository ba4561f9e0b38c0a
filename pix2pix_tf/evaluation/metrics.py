"""Image-quality metrics for images in [-1, 1].

Per example: L1 and MSE on the [-1, 1] scale of the model's outputs (L1 equals
the training loss `gen_l1_loss`); PSNR and SSIM on images mapped to [0, 1]
(`tf.image.psnr` and `tf.image.ssim` with max_val 1 and SSIM's 11x11 Gaussian
window, so images must be at least 11 pixels high and wide); pixel accuracy.
Per set: colour-distribution distances, FID and KID from Inception
features: those of the network published FID figures use
(`fid_inception`, with pytorch-fid's weights), or of Keras's ImageNet
InceptionV3 (comparable only between runs).
"""

import os
from typing import Dict, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from pix2pix_tf import errors
from pix2pix_tf.evaluation import fid_inception


def _to_unit(image):
  return (tf.clip_by_value(tf.cast(image, tf.float32), -1.0, 1.0) + 1.0) / 2.0


def image_metrics(generated_image: tf.Tensor,
                  target_image: tf.Tensor) -> Dict[str, tf.Tensor]:
  """Per-example metrics of a batch: dict of (batch,) float32 tensors."""
  generated_image = tf.cast(generated_image, tf.float32)
  target_image = tf.cast(target_image, tf.float32)
  difference = generated_image - target_image
  generated_unit, target_unit = _to_unit(generated_image), _to_unit(
      target_image)
  return {
      "l1": tf.reduce_mean(tf.abs(difference), axis=[1, 2, 3]),
      "mse": tf.reduce_mean(tf.square(difference), axis=[1, 2, 3]),
      "psnr": tf.image.psnr(generated_unit, target_unit, max_val=1.0),
      "ssim": tf.image.ssim(generated_unit, target_unit, max_val=1.0),
  }


def high_frequency_energy(image: np.ndarray) -> float:
  """Mean squared Laplacian (4-neighbour, inside the border) of an H x W x C
  image's channel mean, in 0..255 units squared: the detail that resizing
  up from a smaller image cannot restore (tools/compare_resolutions.py)."""
  gray = np.asarray(image, np.float64).mean(axis=-1)
  laplacian = (gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] +
               gray[1:-1, 2:] - 4 * gray[1:-1, 1:-1])
  return float(np.mean(laplacian ** 2))


def pixel_accuracy(generated_image: tf.Tensor, target_image: tf.Tensor,
                   tolerance: float = 25.0) -> tf.Tensor:
  """Per example: the share of pixels whose largest channel error is at most
  `tolerance` intensity levels (of 255)."""
  error = tf.abs(tf.cast(generated_image, tf.float32) -
                 tf.cast(target_image, tf.float32)) * 127.5
  within = tf.reduce_max(error, axis=-1) <= tolerance + 1e-3
  return tf.reduce_mean(tf.cast(within, tf.float32), axis=[1, 2])


def color_histograms(images: tf.Tensor, bins: int = 64) -> np.ndarray:
  """Per-channel histograms (channels, bins) of a set of [-1, 1] images,
  summed over the set (unnormalised counts)."""
  values = tf.cast(tf.round((tf.cast(images, tf.float32) + 1.0) * 127.5),
                   tf.int32)
  values = tf.clip_by_value(values * bins // 256, 0, bins - 1)
  channels = values.shape[-1]
  flat = tf.reshape(values, [-1, channels])
  return np.stack([np.bincount(flat[:, c].numpy(), minlength=bins)
                   for c in range(channels)]).astype(np.float64)


def color_distribution_distance(generated_histograms: np.ndarray,
                                target_histograms: np.ndarray
                                ) -> Dict[str, float]:
  """How far the generated set's colours are from the target set's.

  Returns, averaged over channels: `color_histogram_intersection` (1 for the
  same distribution, 0 for disjoint ones) and `color_emd`, the earth mover's
  distance between the two distributions of intensity (0..255 levels).
  """
  generated = generated_histograms / generated_histograms.sum(
      axis=1, keepdims=True)
  target = target_histograms / target_histograms.sum(axis=1, keepdims=True)
  bins = generated.shape[1]
  intersection = np.minimum(generated, target).sum(axis=1)
  # In one dimension the EMD is the L1 distance between the CDFs.
  emd = np.abs(np.cumsum(generated, 1) - np.cumsum(target, 1)).sum(1) * (
      256.0 / bins)
  return {"color_histogram_intersection": float(intersection.mean()),
          "color_emd": float(emd.mean())}


INCEPTION_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/"
    "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5")


def is_fid_inception(weights_path: str) -> bool:
  """Whether `weights_path` is read into the FID Inception network (a
  PyTorch `.pth` or `.pt`) rather than into Keras's ImageNet InceptionV3
  (an `.h5`)."""
  return weights_path.lower().endswith((".pth", ".pt"))


def inception_model(weights_path: Optional[str] = None) -> keras.Model:
  """The network whose 2048-d pool features FID and KID compare.

  `weights_path` ending in `.pth` (or `.pt`): a state dict of the FID
  Inception network; with pytorch-fid's
  `pt_inception-2015-12-05-6726825d.pth` (fid_inception.WEIGHTS_URL) its
  FID is pytorch-fid's (`what_fid_compares_with`). Ending in `.h5`: Keras's
  ImageNet InceptionV3 notop file (INCEPTION_WEIGHTS_URL), whose FID is on
  another scale and comparable only between runs of this project. None:
  Keras's network with random weights (for tests only).

  Raises:
    errors.CommandError: a file of another kind, or one that does not
      load into its network (named).
  """
  if weights_path and is_fid_inception(weights_path):
    return fid_inception.load(weights_path)
  if weights_path and not weights_path.lower().endswith(".h5"):
    raise errors.CommandError(
        f"--inception_weights={weights_path}: give pytorch-fid's "
        f"{os.path.basename(fid_inception.WEIGHTS_URL)} or Keras's "
        f"{os.path.basename(INCEPTION_WEIGHTS_URL)} (a .pth or an .h5).")
  model = keras.applications.InceptionV3(include_top=False, weights=None,
                                         pooling="avg",
                                         input_shape=(299, 299, 3))
  if weights_path:
    model.load_weights(weights_path)
  return model


def what_fid_compares_with(weights_path: str) -> Tuple[str, bool]:
  """A phrase saying what FID and KID from `weights_path` compare with,
  and whether that is published FID figures."""
  if is_fid_inception(weights_path):
    if fid_inception.are_pytorch_fids(weights_path):
      return ("FID as pytorch-fid computes it (the FID Inception network, "
              "pytorch-fid's weights) and KID on the same features", True)
    return ("FID and KID on the FID Inception network with weights other "
            "than pytorch-fid's (their SHA-256 does not begin "
            f"{fid_inception.WEIGHTS_SHA256_PREFIX}): comparable only between "
            "runs of pix2pix_tf", False)
  return ("FID and KID on Keras's ImageNet InceptionV3, not the network of "
          "published FID figures: comparable only between runs of "
          "pix2pix_tf", False)


def inception_features(model: keras.Model, images: tf.Tensor) -> np.ndarray:
  """(batch, 2048) pool features of [-1, 1] images, resized to 299x299 as
  `model` expects (grayscale images are repeated to RGB): for the FID
  Inception network, as pytorch-fid reads 8-bit PNGs
  (`fid_inception.preprocess`); for Keras's, bilinearly, in Inception's
  own [-1, 1] range."""
  images = tf.cast(images, tf.float32)
  if images.shape[-1] == 1:
    images = tf.image.grayscale_to_rgb(images)
  if model.name == fid_inception.NAME:
    images = fid_inception.preprocess(images)
  else:
    images = tf.image.resize(images, [299, 299], method="bilinear")
  return model(images, training=False).numpy().astype(np.float64)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """FID: ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
  mu_a, mu_b = features_a.mean(0), features_b.mean(0)
  cov_a = np.cov(features_a, rowvar=False)
  cov_b = np.cov(features_b, rowvar=False)
  # Tr((S_a S_b)^(1/2)) = sum of the square roots of the eigenvalues of the
  # symmetric S_a^(1/2) S_b S_a^(1/2).
  values, vectors = np.linalg.eigh(cov_a)
  sqrt_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
  middle = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
  trace_sqrt = np.sqrt(np.clip(middle, 0, None)).sum()
  distance = (np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
              - 2 * trace_sqrt)
  return float(max(distance, 0.0))


def kernel_inception_distance(features_a: np.ndarray, features_b: np.ndarray,
                              num_subsets: int = 10, subset_size: int = 1000,
                              seed: int = 0) -> float:
  """KID: unbiased MMD^2 with the kernel (x.y / d + 1)^3, averaged over
  random subsets (Binkowski et al.)."""
  rng = np.random.RandomState(seed)
  size = min(subset_size, len(features_a), len(features_b))
  dims = features_a.shape[1]
  estimates = []
  for _ in range(num_subsets):
    a = features_a[rng.choice(len(features_a), size, replace=False)]
    b = features_b[rng.choice(len(features_b), size, replace=False)]
    k_aa = (a @ a.T / dims + 1) ** 3
    k_bb = (b @ b.T / dims + 1) ** 3
    k_ab = (a @ b.T / dims + 1) ** 3
    off_diagonal = size * (size - 1)
    estimates.append((k_aa.sum() - np.trace(k_aa)) / off_diagonal +
                     (k_bb.sum() - np.trace(k_bb)) / off_diagonal -
                     2 * k_ab.mean())
  return float(np.mean(estimates))
