"""The one place the kernels meet a run: the networks and the optimizer a
config builds, with the kernels its kernel options turn on."""

from typing import Tuple

import keras
from keras import layers

from pix2pix_tf import config as config_lib
from pix2pix_tf import models
from pix2pix_tf.kernels import activations, batch_norm, convolutions
from pix2pix_tf.kernels.adam import fused_adam

# (kernel option, Keras's layer class, the class that trains it on that
# kernel). Each kernel class subclasses Keras's with the same config and
# variables, and computes Keras's values; only the training kernels differ.
SWAPS = (
    ("fused_batch_norm", layers.BatchNormalization,
     batch_norm.FusedBatchNormalization),
    ("matmul_small_convs", layers.Conv2D, convolutions.Conv2D),
    ("matmul_small_convs", layers.Conv2DTranspose,
     convolutions.Conv2DTranspose),
    ("compiled_activations", layers.LeakyReLU, activations.LeakyReLU),
    ("compiled_activations", layers.ReLU, activations.ReLU),
)


def with_kernels(model: keras.Model,
                 config: config_lib.Config) -> keras.Model:
  """A copy of `model` (a functional model, or `models.Discriminators` of
  them) in which each layer of a Keras class in `SWAPS` whose option
  `config` turns on is its kernel class, with the same config and weights.
  The other layers are `model`'s own, shared."""
  if isinstance(model, models.Discriminators):
    copy = models.Discriminators(
        [with_kernels(one, config) for one in model.discriminators],
        model.conditional, name=model.name)
    size = config.crop_size  # Built as models.build_discriminators builds.
    copy([keras.ops.zeros((1, size, size, config.input_channels)),
          keras.ops.zeros((1, size, size, config.output_channels))])
    return copy
  swapped = []

  def swap(layer):
    for option, keras_class, kernel_class in SWAPS:
      if type(layer) is keras_class and getattr(config, option):
        kernel = kernel_class.from_config(layer.get_config())
        swapped.append((layer, kernel))
        return kernel
    return layer

  copy = keras.models.clone_model(model, clone_function=swap)
  for layer, kernel in swapped:
    kernel.set_weights(layer.get_weights())
  return copy


def for_training(config: config_lib.Config, generator: keras.Model,
                 discriminator: keras.Model,
                 adam: type) -> Tuple[keras.Model, keras.Model, type]:
  """(generator, discriminator, Adam class) of a run of `config`: the
  networks `with_kernels`, and `adam` as one fused kernel per variable
  with `config.fused_updates`. All kernel options false: the arguments,
  unchanged."""
  if any(getattr(config, option) for option, _, _ in SWAPS):
    generator = with_kernels(generator, config)
    discriminator = with_kernels(discriminator, config)
  return (generator, discriminator,
          fused_adam(adam) if config.fused_updates else adam)
