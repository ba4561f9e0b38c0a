"""Batch norm trained with TensorFlow's fused kernels (--fused_batch_norm)."""

import keras
import tensorflow as tf
from keras import layers

from pix2pix_tf.kernels.convolutions import setting


@keras.saving.register_keras_serializable(package="pix2pix_tf")
class FusedBatchNormalization(setting("fused"),
                              layers.BatchNormalization):
  """Keras's BatchNormalization, trained with TensorFlow's fused kernel.

  Keras 3 computes a training step's batch norm as separate float32 ops
  (casts, moments, normalisation and each one's gradient). TensorFlow's
  FusedBatchNormV3 (oneDNN's on the CPU, cuDNN's on a GPU) does the forward
  in one kernel and the backward in another, in the input's dtype with
  float32 statistics. The arithmetic and the variables are Keras's: the
  output normalises by the biased batch variance, the moving averages take
  the biased variance with Keras's momentum rule (the kernel returns the
  unbiased one: rescaled here), and checkpoints are interchangeable. At
  inference, when frozen (`trainable=False`), and for what the kernel does
  not cover (synchronized statistics, renorm, masks, other ranks or axes),
  Keras's own computation runs; also everywhere with `fused=False` (for
  tests that compare the two on one class).
  """

  def call(self, inputs, training=None, mask=None):
    if not (self.fused and training and self.trainable and
            self._fusable(inputs, mask)):
      return super().call(inputs, training=training, mask=mask)
    channels = inputs.shape[-1]
    gamma = (tf.cast(self.gamma.value, tf.float32) if self.scale else
             tf.ones([channels], tf.float32))
    beta = (tf.cast(self.beta.value, tf.float32) if self.center else
            tf.zeros([channels], tf.float32))
    empty = tf.zeros([0], tf.float32)
    outputs, mean, unbiased, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=inputs, scale=gamma, offset=beta, mean=empty, variance=empty,
        epsilon=self.epsilon, exponential_avg_factor=1.0,
        data_format="NHWC", is_training=True)
    count = tf.cast(tf.size(inputs, out_type=tf.int64) // channels,
                    tf.float32)
    # (count - 1) / count undoes Bessel's correction; 0 for one value
    # (Keras's variance then), even where a kernel returns inf or NaN.
    variance = tf.math.multiply_no_nan(unbiased, (count - 1.0) / count)
    momentum = self.momentum
    mean = tf.cast(mean, self.moving_mean.dtype)
    variance = tf.cast(variance, self.moving_variance.dtype)
    self.moving_mean.assign(self.moving_mean * momentum +
                            mean * (1.0 - momentum))
    self.moving_variance.assign(self.moving_variance * momentum +
                                variance * (1.0 - momentum))
    return outputs

  def _fusable(self, inputs, mask) -> bool:
    return (mask is None and not self.synchronized and not self.renorm and
            len(inputs.shape) == 4 and self.axis in (-1, 3) and
            inputs.shape[-1] is not None and
            inputs.dtype in (tf.float32, tf.bfloat16, tf.float16))
