"""Image-quality metrics, per example, for images in [-1, 1].

L1 and MSE are on the [-1, 1] scale of the model's outputs (L1 equals the
training loss `gen_l1_loss`); PSNR and SSIM are computed on images mapped to
[0, 1] (`tf.image.psnr` and `tf.image.ssim` with max_val 1, SSIM's 11x11
Gaussian window, so images must be at least 11 pixels high and wide).
"""

from typing import Dict

import tensorflow as tf


def _to_unit(image):
  return (tf.clip_by_value(tf.cast(image, tf.float32), -1.0, 1.0) + 1.0) / 2.0


def image_metrics(generated_image, target_image) -> Dict[str, tf.Tensor]:
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
