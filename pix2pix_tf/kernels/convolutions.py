"""Convolutions over small feature maps trained as matrix multiplies
(--matmul_small_convs).

At batch 1 the U-Net's inner layers hold almost all of its 54 million
weights on maps of 1x1 to 16x16: each convolution there is a weight-bound
product of a few hundred image patches with a weight matrix of up to
8,192 x 1,024, on which oneDNN's convolution kernels (its
`Conv2DBackpropFilter` above all) spend far longer than the arithmetic
needs. TensorFlow has no patch-matrix convolution of its own to select,
hence these two subclasses (their gain: docs/performance.md).

While training, in strided layers whose smaller map has at most
`MATMUL_MAX_ROWS` positions over the batch, they compute:

* `Conv2D`: the output as patches(x) @ W, the weight gradient as
  patches(x)^T @ dy (the same patches), the input gradient as a
  transposed convolution of dy (below);
* `Conv2DTranspose`: the output as a transposed convolution of x, the
  input gradient as patches(dy) @ W and the weight gradient as
  patches(dy)^T @ x.

A transposed convolution over at most `FOLD_MAX_ROWS` positions is one
product of its input's rows with W^T, each row's products then summed
into the positions they fall on (a fold, col2im: the transpose of the
patches); over more, TensorFlow's `conv2d_transpose`.

Each is the convolution's own sum over the same products (tests compare
outputs, gradients and second derivatives with Keras's layers). Everywhere
else (inference, unstrided layers, larger maps, unknown shapes), with
`matmul=False` (for tests that compare the two on one class) and on
machines with a GPU (where cuDNN's kernels were not measured against them),
Keras's layers run unchanged. Output shapes are Keras's
(`compute_output_shape`).
Variables and configs are Keras's.
"""

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import layers


# The most rows (positions of the smaller map over the batch) a strided
# layer trains as patch products: up to the U-Net's 32x32 maps at batch 1.
# Chosen by timing whole training steps (docs/performance.md, "Kernel
# thresholds"); stride-1 layers made the step slower.
MATMUL_MAX_ROWS = 1024

# The most rows a transposed convolution computes as a product and a fold
# rather than TensorFlow's conv2d_transpose: faster on the small maps, slower
# from 32x32 on (docs/performance.md, "Kernel thresholds").
FOLD_MAX_ROWS = 256


def used_here() -> bool:
  """Whether this machine trains small convolutions as patch products when
  asked: without a GPU. On GPUs cuDNN's kernels run, which the patch
  products were never measured against."""
  return not tf.config.list_physical_devices("GPU")


def _patches(x: tf.Tensor, kernel_size: Sequence[int],
             strides: Sequence[int], padding: str,
             name: str = "patches") -> tf.Tensor:
  """`x`'s patches as rows: (batch * out_h * out_w, kh * kw * channels),
  in the (kh, kw, channels) order of a Keras kernel's first three axes."""
  kh, kw = kernel_size
  patches = tf.image.extract_patches(
      x, sizes=[1, kh, kw, 1], strides=[1, strides[0], strides[1], 1],
      rates=[1, 1, 1, 1], padding=padding, name=name)
  return tf.reshape(patches, [-1, kh * kw * x.shape[-1]])


def _fold_ids(big: Sequence[int], small: Sequence[int],
              kernel_size: Sequence[int], strides: Sequence[int],
              padding: str) -> np.ndarray:
  """For each entry (row, ky, kx) of `_patches` of a `big` (height, width)
  map whose patches sit on a `small` grid: the flat index of the big map's
  position it reads, or big height * width where it reads the padding."""
  position = []
  for size, out, k, stride in zip(big, small, kernel_size, strides):
    pad = max((out - 1) * stride + k - size, 0) // 2 if padding == "SAME" \
        else 0
    position.append((np.arange(out) * stride - pad)[:, None] + np.arange(k))
  ys = position[0][:, None, :, None]  # (out_h, 1, kh, 1)
  xs = position[1][None, :, None, :]  # (1, out_w, 1, kw)
  inside = (ys >= 0) & (ys < big[0]) & (xs >= 0) & (xs < big[1])
  return np.where(inside, ys * big[1] + xs, big[0] * big[1]).reshape(-1)


def _fold(columns: tf.Tensor, big_shape: Sequence[int],
          small: Sequence[int], kernel_size: Sequence[int],
          strides: Sequence[int], padding: str) -> tf.Tensor:
  """The transpose of `_patches` (col2im): `columns` (batch * small
  positions, kh * kw * channels) summed into a (batch, height, width,
  channels) map. The sums (of at most (kh / stride) * (kw / stride) terms
  each) are taken in float32 and cast to `columns`' dtype: in bfloat16
  the products were rounded once before them, where a convolution kernel
  rounds only its result."""
  batch, height, width, channels = big_shape
  ids = _fold_ids((height, width), small, kernel_size, strides, padding)
  entries = tf.reshape(columns, [batch, ids.size, channels])
  if batch > 1:
    entries = tf.transpose(entries, [1, 0, 2])
  summed = tf.math.unsorted_segment_sum(
      tf.cast(tf.reshape(entries, [ids.size, batch * channels]), tf.float32),
      ids, height * width + 1)[:height * width]
  summed = tf.reshape(summed, [height, width, batch, channels])
  if batch > 1:
    summed = tf.transpose(summed, [2, 0, 1, 3])
  return tf.cast(tf.reshape(summed, big_shape), columns.dtype)


def transpose_conv(x: tf.Tensor, kernel: tf.Tensor,
                   output_shape: Sequence[int], strides: Sequence[int],
                   padding: str, name: str) -> tf.Tensor:
  """`tf.nn.conv2d_transpose(x, kernel, output_shape, strides, padding)`;
  on at most `FOLD_MAX_ROWS` positions of `x`, as x @ kernel^T (one row
  of products per position) folded into the output (`_fold`)."""
  rows = x.shape[0] * x.shape[1] * x.shape[2]
  if rows > FOLD_MAX_ROWS:
    return tf.nn.conv2d_transpose(x, kernel, output_shape,
                                  [1, *strides, 1], padding, name=name)
  with tf.name_scope(name):  # The profile's op kinds go by this name.
    columns = tf.matmul(tf.reshape(x, [rows, kernel.shape[-1]]),
                        tf.reshape(kernel, [-1, kernel.shape[-1]]),
                        transpose_b=True, name="products")
    return _fold(columns, output_shape, x.shape[1:3], kernel.shape[:2],
                 strides, padding)


def patch_conv2d(x: tf.Tensor, kernel: tf.Tensor, output_shape: Sequence[int],
                 strides: Sequence[int], padding: str) -> tf.Tensor:
  """`tf.nn.conv2d(x, kernel, strides, padding)` (NHWC, no dilation, `x` of
  static shape, the output's shape given) as patches(x) @ kernel, its
  weight gradient as patches(x)^T @ dy."""
  kernel_shape = kernel.shape

  @tf.custom_gradient
  def conv(x, kernel):
    rows = _patches(x, kernel_shape[:2], strides, padding)
    flat = tf.reshape(kernel, [-1, kernel_shape[-1]])
    y = tf.reshape(tf.matmul(rows, flat, name="patch_forward"),
                   output_shape)

    def grad(dy):
      dy_rows = tf.reshape(dy, [-1, kernel_shape[-1]])
      dw = tf.reshape(tf.matmul(rows, dy_rows, transpose_a=True,
                                name="patch_weight_gradient"), kernel_shape)
      # Static shape for the fold's row count, as the output's.
      dx = transpose_conv(tf.reshape(dy, output_shape), kernel, x.shape,
                          strides, padding, name="input_gradient")
      return dx, dw
    return y, grad
  return conv(x, kernel)


def patch_conv2d_transpose(x: tf.Tensor, kernel: tf.Tensor,
                           output_shape: Sequence[int],
                           strides: Sequence[int], padding: str) -> tf.Tensor:
  """`tf.nn.conv2d_transpose` (NHWC, no dilation, `x` of static shape)
  whose input gradient is patches(dy) @ kernel and weight gradient
  patches(dy)^T @ x."""
  kernel_shape = kernel.shape  # (kh, kw, out_channels, in_channels)

  @tf.custom_gradient
  def conv_transpose(x, kernel):
    y = transpose_conv(x, kernel, output_shape, strides, padding,
                       name="transpose_forward")

    def grad(dy):
      rows = _patches(dy, kernel_shape[:2], strides, padding,
                      name="gradient_patches")
      flat = tf.reshape(kernel, [-1, kernel_shape[-1]])
      dx = tf.reshape(tf.matmul(rows, flat, name="patch_input_gradient"),
                      x.shape)
      x_rows = tf.reshape(x, [-1, kernel_shape[-1]])
      dw = tf.reshape(tf.matmul(rows, x_rows, transpose_a=True,
                                name="patch_weight_gradient"), kernel_shape)
      return dx, dw
    return y, grad
  return conv_transpose(x, kernel)


def _rows(layer: layers.Layer, shape: tf.TensorShape) -> int:
  """The patch matrix's rows for `layer` on inputs of `shape`: positions
  over the batch of the output map of a convolution, of the input map of a
  transposed one (the smaller map either way); 0 when unknown."""
  if shape.rank != 4 or None in shape[:3]:
    return 0
  if not isinstance(layer, layers.Conv2DTranspose):
    shape = layer.compute_output_shape(shape)
  return shape[0] * shape[1] * shape[2]


def _applies(layer: layers.Layer, shape: tf.TensorShape) -> bool:
  """Whether `layer` trains as patch products on inputs of `shape`."""
  # Keras refuses strides over 1 with dilation, so strided layers have
  # none.
  return (layer.matmul and used_here() and
          layer.data_format == "channels_last" and
          getattr(layer, "groups", 1) == 1 and
          layer.padding in ("same", "valid") and
          min(layer.strides) > 1 and
          0 < _rows(layer, shape) <= MATMUL_MAX_ROWS)


def setting(name: str) -> type:
  """A mixin for a Keras layer that trains on other kernels: the
  boolean `name` (default true; false lets a test compare the kernel with
  Keras's computation on one class), a constructor argument kept in the
  layer's config (`matmul` here, `compiled` in `activations`, `fused` in
  `batch_norm.FusedBatchNormalization`)."""

  class Setting:

    def __init__(self, *args, **kwargs):
      value = kwargs.pop(name, True)
      super().__init__(*args, **kwargs)
      setattr(self, name, value)

    def get_config(self):
      return {**super().get_config(), name: getattr(self, name)}

  return Setting


@keras.saving.register_keras_serializable(package="pix2pix_tf")
class Conv2D(setting("matmul"), layers.Conv2D):
  """Keras's Conv2D, trained as patch products on small maps (above)."""

  def call(self, inputs, training=None):
    if not (training and _applies(self, inputs.shape)):
      return super().call(inputs)
    outputs = patch_conv2d(
        inputs, tf.convert_to_tensor(self.kernel),
        self.compute_output_shape(inputs.shape), list(self.strides),
        self.padding.upper())
    return _bias_and_activation(self, outputs)


@keras.saving.register_keras_serializable(package="pix2pix_tf")
class Conv2DTranspose(setting("matmul"), layers.Conv2DTranspose):
  """Keras's Conv2DTranspose, trained as patch products on small maps."""

  def call(self, inputs, training=None):
    if not (training and self.output_padding is None and
            _applies(self, inputs.shape)):
      return super().call(inputs)
    outputs = patch_conv2d_transpose(
        inputs, tf.convert_to_tensor(self.kernel),
        self.compute_output_shape(inputs.shape), list(self.strides),
        self.padding.upper())
    return _bias_and_activation(self, outputs)


def _bias_and_activation(layer: layers.Layer,
                         outputs: tf.Tensor) -> tf.Tensor:
  """Keras's bias and activation after `layer`'s convolution."""
  if layer.use_bias:
    outputs = keras.ops.add(
        outputs, keras.ops.reshape(layer.bias, (1, 1, 1, layer.filters)))
  if layer.activation is not None:
    outputs = layer.activation(outputs)
  return outputs
