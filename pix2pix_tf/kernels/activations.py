"""LeakyReLU and ReLU trained as XLA-compiled programs in bfloat16
(--compiled_activations).

TensorFlow's CPU kernels for these activations and their gradients
(Eigen's) are slow on bfloat16 maps, slower than on float32 maps of twice
the bytes; compiled by XLA the same computations are faster. In float32
XLA's are not, so these two activations only, in bfloat16 only. TensorFlow
has no such kernels of its own to select, hence these two subclasses (their
gain: docs/performance.md).

While training, in bfloat16, on machines without a GPU
(`convolutions.used_here`: on GPUs they were not measured), LeakyReLU
and ReLU (without a cap, a threshold or a negative slope) compute their
output as one XLA program and their input's gradient as another, from the
output: with a slope >= 0 (Keras refuses others), y > 0 exactly where
x > 0, where TensorFlow's gradients test x. The values are TensorFlow's
own, bit for bit, signed zeros and NaN included (tests compare outputs,
gradients and second derivatives with Keras's layers); only from a NaN
input does TensorFlow's second derivative differ, carrying NaN into the
weights through a zero, where these carry none (its loss is NaN either
way).
Everywhere else (inference, float32, `compiled=False`) Keras's layers
run unchanged.
"""

import keras
import tensorflow as tf
from keras import layers

from pix2pix_tf.kernels import convolutions


@tf.function(jit_compile=True, autograph=False)
def _leaky_relu(x: tf.Tensor, slope: float) -> tf.Tensor:
  return tf.nn.leaky_relu(x, slope)


@tf.function(jit_compile=True, autograph=False)
def _leaky_relu_gradient(dy: tf.Tensor, y: tf.Tensor,
                         slope: float) -> tf.Tensor:
  # TensorFlow's LeakyReluGrad: dy where x > 0, else dy times the slope
  # rounded to dy's dtype. As a product (dy times 1 or the slope), not a
  # select of dy: the gradient of a select adds a zero to the unselected
  # side, which turns a -0 in the second derivative into +0.
  return dy * tf.where(y > 0, tf.constant(1, dy.dtype),
                       tf.constant(slope, dy.dtype))


@tf.function(jit_compile=True, autograph=False)
def _relu(x: tf.Tensor) -> tf.Tensor:
  return tf.nn.relu(x)


@tf.function(jit_compile=True, autograph=False)
def _relu_gradient(dy: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
  # TensorFlow's ReluGrad: dy times (x > 0), which keeps NaN and -0.
  return dy * tf.cast(y > 0, dy.dtype)


def compiled_leaky_relu(x: tf.Tensor, slope: float) -> tf.Tensor:
  """`tf.nn.leaky_relu(x, slope)` (slope >= 0) and its gradient, each as
  one XLA program; the gradient is taken from the output."""

  @tf.custom_gradient
  def activation(x):
    y = _leaky_relu(x, slope)
    return y, lambda dy: _leaky_relu_gradient(dy, y, slope)

  return activation(x)


@tf.custom_gradient
def compiled_relu(x: tf.Tensor) -> tf.Tensor:
  """`tf.nn.relu(x)` and its gradient, each as one XLA program."""
  y = _relu(x)
  return y, lambda dy: _relu_gradient(dy, y)


def _applies(layer: layers.Layer, inputs: tf.Tensor, training) -> bool:
  """Whether `layer` runs as compiled programs on `inputs`."""
  return bool(layer.compiled and training and
              inputs.dtype == tf.bfloat16 and convolutions.used_here())


@keras.saving.register_keras_serializable(package="pix2pix_tf")
class LeakyReLU(convolutions.setting("compiled"), layers.LeakyReLU):
  """Keras's LeakyReLU, trained as compiled programs in bfloat16."""

  def call(self, inputs, training=None):
    if not _applies(self, inputs, training):
      return super().call(inputs)
    return compiled_leaky_relu(inputs, float(self.negative_slope))


@keras.saving.register_keras_serializable(package="pix2pix_tf")
class ReLU(convolutions.setting("compiled"), layers.ReLU):
  """Keras's ReLU, trained as compiled programs in bfloat16."""

  def call(self, inputs, training=None):
    if not (_applies(self, inputs, training) and self.max_value is None
            and self.negative_slope == 0 and self.threshold == 0):
      return super().call(inputs)
    return compiled_relu(inputs)
