"""Building blocks of both networks: initialisation, normalisation and the
layers Keras lacks (reflection padding, and the two layers of paper-mode
inference)."""

import contextlib
from typing import Iterator, List, Optional

import keras
import tensorflow as tf
from keras import layers

from pix2pix_tf import config as config_lib
from pix2pix_tf.models import activations, convolutions


LEAKY_SLOPE = 0.2


def conv_initializer() -> keras.initializers.Initializer:
  """The paper's weight initialisation: N(0, 0.02)."""
  return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def norm_layer(norm: str, name: str) -> Optional[layers.Layer]:
  """Returns a fresh normalisation layer, or None for `norm='none'`."""
  if norm in ("batch", "sync_batch"):
    # Momentum 0.9 and epsilon 1e-5 are PyTorch's BatchNorm2d defaults.
    return FusedBatchNormalization(
        momentum=0.9, epsilon=1e-5, synchronized=norm == "sync_batch",
        gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02),
        name=name)
  if norm == "instance":
    # Instance norm = group norm with one group per channel. The reference's
    # InstanceNorm2d has no affine parameters.
    return layers.GroupNormalization(groups=-1, epsilon=1e-5, center=False,
                                     scale=False, name=name)
  if norm == "none":
    return None
  raise ValueError(f"Unknown norm {norm!r}.")


def uses_bias(norm: str) -> bool:
  """The reference's rule: no bias in a convolution followed by batch norm."""
  return norm not in ("batch", "sync_batch")


def apply_norm(x: keras.KerasTensor, norm: str,
               name: str) -> keras.KerasTensor:
  """`x` through a fresh `norm_layer` (unchanged for norm="none")."""
  layer = norm_layer(norm, name)
  return x if layer is None else layer(x)


@keras.saving.register_keras_serializable(package="pix2pix_tf")
class FusedBatchNormalization(convolutions.setting("fused"),
                              layers.BatchNormalization):
  """Keras's BatchNormalization, trained with TensorFlow's fused kernel.

  Keras 3 computes a training step's batch norm as separate float32 ops
  (casts, moments, normalisation and each one's gradient): a third of a
  bfloat16 step at batch 16 on an AMX CPU went to them. TensorFlow's
  FusedBatchNormV3 (oneDNN's on the CPU, cuDNN's on a GPU) does the forward
  in one kernel and the backward in another, in the input's dtype with
  float32 statistics. The arithmetic and the variables are Keras's: the
  output normalises by the biased batch variance, the moving averages take
  the biased variance with Keras's momentum rule (the kernel returns the
  unbiased one: rescaled here), and checkpoints are interchangeable. At
  inference, when frozen (`trainable=False`), and for what the kernel does
  not cover (synchronized statistics, renorm, masks, other ranks or axes),
  Keras's own computation runs; also everywhere with `fused=False`
  (`--fused_batch_norm=false`).
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


def flat_layers(model: keras.Model) -> List[layers.Layer]:
  """`model`'s layers in order, those of nested models in their place."""
  flat = []
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      flat.extend(flat_layers(layer))
    else:
      flat.append(layer)
  return flat


def set_training_kernels(model: keras.Model,
                         config: config_lib.Config) -> keras.Model:
  """Sets which kernels train `model`'s batch norms, convolutions and
  activations, from `config`'s `fused_batch_norm`, `matmul_small_convs`
  and `compiled_activations` (see `FusedBatchNormalization`,
  `convolutions` and `activations`: patch products and compiled
  activations on machines without a GPU only, `convolutions.used_here`);
  read when the training step is traced."""
  for layer in flat_layers(model):
    if isinstance(layer, FusedBatchNormalization):
      layer.fused = config.fused_batch_norm
    if isinstance(layer, (convolutions.Conv2D,
                          convolutions.Conv2DTranspose)):
      layer.matmul = config.matmul_small_convs
    if isinstance(layer, (activations.LeakyReLU, activations.ReLU)):
      layer.compiled = config.compiled_activations
  return model


# The layers that differ from Keras's in how they train only, and the Keras
# class each is saved as.
_KERAS_CLASSES = {
    FusedBatchNormalization: layers.BatchNormalization,
    convolutions.Conv2D: layers.Conv2D,
    convolutions.Conv2DTranspose: layers.Conv2DTranspose,
    activations.LeakyReLU: layers.LeakyReLU,
    activations.ReLU: layers.ReLU,
}


@contextlib.contextmanager
def keras_layers(model: keras.Model) -> Iterator[keras.Model]:
  """`model` with its batch norms, convolutions and activations seen as
  Keras's own classes while the block runs: a `.keras` file saved inside
  loads with Keras alone. The kernels that train them are no part of the
  model (each computes what Keras's layer does at inference, with the same
  variables), so the file names Keras's classes; the layers are the same
  objects, whose classes are set back on leaving. For saving only: the
  layers keep their own call signatures (which take `training`), so the
  model is not to be called inside."""
  swapped = [(layer, type(layer)) for layer in _all_layers(model)
             if type(layer) in _KERAS_CLASSES]
  for layer, own in swapped:
    layer.__class__ = _KERAS_CLASSES[own]
  try:
    yield model
  finally:
    for layer, own in swapped:
      layer.__class__ = own


def _all_layers(model: keras.Model) -> List[layers.Layer]:
  """Every layer in `model`, those wrapped by paper mode's included."""
  found = flat_layers(model)
  return found + [layer.batch_norm for layer in found
                  if isinstance(layer, BatchStatisticsNormalization)]


# Registered, with their configs, so that a .keras file holding them loads
# (export --format=keras) once pix2pix_tf.models is imported.
@keras.saving.register_keras_serializable(package="pix2pix_tf")
class ReflectionPadding2D(layers.Layer):
  """Pads height and width by mirroring, as PyTorch's ReflectionPad2d."""

  def __init__(self, padding: int, **kwargs):
    super().__init__(**kwargs)
    self.padding = padding

  def call(self, inputs):
    p = self.padding
    return tf.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")

  def compute_output_shape(self, input_shape):
    b, h, w, c = input_shape
    grow = lambda d: None if d is None else d + 2 * self.padding  # noqa: E731
    return (b, grow(h), grow(w), c)

  def get_config(self):
    return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable(package="pix2pix_tf")
class BatchStatisticsNormalization(layers.Layer):
  """A trained BatchNormalization run as the paper runs it at test time.

  Normalises each image with its own statistics (mean and variance over
  height and width, per channel), never the moving averages, and updates
  nothing. The reference tests one image per batch, so its batch norm sees
  exactly these statistics; computing them per image makes a batch of N give
  the N results of N single-image calls, so predict, evaluate, the val
  metrics and the sample grids all describe the images users get. Shares
  gamma and beta with the wrapped layer.
  """

  def __init__(self, batch_norm: layers.BatchNormalization, **kwargs):
    kwargs.setdefault("name", f"{batch_norm.name}_batch_statistics")
    super().__init__(**kwargs)
    self.batch_norm = batch_norm

  def build(self, input_shape):
    if not self.batch_norm.built:  # Read back from a .keras file.
      self.batch_norm.build(input_shape)

  def get_config(self):
    return {**super().get_config(), "batch_norm":
            keras.saving.serialize_keras_object(self.batch_norm)}

  @classmethod
  def from_config(cls, config: dict) -> "BatchStatisticsNormalization":
    """The layer, with its batch norm, from `get_config`'s dict."""
    config = dict(config)
    batch_norm = keras.saving.deserialize_keras_object(
        config.pop("batch_norm"))
    return cls(batch_norm, **config)

  def call(self, inputs, training=None, mask=None):
    del training, mask  # The same at training and at test time.
    bn = self.batch_norm
    x = keras.ops.cast(inputs, "float32")
    mean, variance = keras.ops.moments(x, axes=[1, 2], keepdims=True)
    x = (x - mean) * keras.ops.rsqrt(variance + bn.epsilon)
    x = x * bn.gamma + bn.beta
    return keras.ops.cast(x, self.compute_dtype)


@keras.saving.register_keras_serializable(package="pix2pix_tf")
class AlwaysDropout(layers.Layer):
  """Dropout that stays on at inference: the paper's only noise source.

  Uses TensorFlow's stateful dropout op, so a SavedModel holding it needs no
  random-state variable.
  """

  def __init__(self, rate: float, **kwargs):
    super().__init__(**kwargs)
    self.rate = rate

  def call(self, inputs, training=None):
    del training  # On at training and at test time: the point of it.
    return tf.nn.dropout(inputs, rate=self.rate)

  def get_config(self):
    return {**super().get_config(), "rate": self.rate}
