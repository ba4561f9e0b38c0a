"""Building blocks of both networks: initialisation, normalisation and the
layers Keras lacks (reflection padding, and the two layers of paper-mode
inference)."""

from typing import List, Optional

import keras
import tensorflow as tf
from keras import layers


LEAKY_SLOPE = 0.2


def conv_initializer() -> keras.initializers.Initializer:
  """The paper's weight initialisation: N(0, 0.02)."""
  return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def norm_layer(norm: str, name: str) -> Optional[layers.Layer]:
  """Returns a fresh normalisation layer, or None for `norm='none'`."""
  if norm in ("batch", "sync_batch"):
    # Momentum 0.9 and epsilon 1e-5 are PyTorch's BatchNorm2d defaults.
    return layers.BatchNormalization(
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


def flat_layers(model: keras.Model) -> List[layers.Layer]:
  """`model`'s layers in order, those of nested models in their place."""
  flat = []
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      flat.extend(flat_layers(layer))
    else:
      flat.append(layer)
  return flat


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
