"""The one place the kernels meet a run: the networks and the optimizer a
config builds, with the kernels its kernel options turn on."""

from typing import Collection, Tuple

import keras
from keras import layers

from pix2pix_tf import config as config_lib
from pix2pix_tf import models
from pix2pix_tf.kernels import activations, batch_norm, convolutions, machines
from pix2pix_tf.kernels.adam import fused_adam

# (kernel option, Keras's layer class, the class that trains it on that
# kernel). Each kernel class subclasses Keras's with the same config and
# variables, and computes Keras's values; only the training kernels differ.
# A kernel class trains on its kernel where it applies (`used_here`, the
# dtype, the map size) and runs Keras's own computation elsewhere.
SWAPS = (
    ("fused_batch_norm", layers.BatchNormalization,
     batch_norm.FusedBatchNormalization),
    ("matmul_small_convs", layers.Conv2D, convolutions.Conv2D),
    ("matmul_small_convs", layers.Conv2DTranspose,
     convolutions.Conv2DTranspose),
    ("compiled_activations", layers.LeakyReLU, activations.LeakyReLU),
    ("compiled_activations", layers.ReLU, activations.ReLU),
)

# The options that swap layers (fused_updates swaps the optimizer).
LAYER_OPTIONS = tuple(dict.fromkeys(option for option, _, _ in SWAPS))


def with_kernels(model: keras.Model,
                 options: Collection[str]) -> keras.Model:
  """A copy of `model` (a functional model, or `models.Discriminators` of
  them) in which each layer of a Keras class in `SWAPS` whose option is in
  `options` is its kernel class, with the same config; every variable of
  the copy (weights, batch-norm statistics, dropout's random state) holds
  `model`'s value.

  Every layer is copied, none shared: a layer shared with `model` would
  keep `model`'s whole graph, and so its weights, alive through the nodes
  that record its first use."""
  if isinstance(model, models.Discriminators):
    copy = models.Discriminators(
        [with_kernels(one, options) for one in model.discriminators],
        model.conditional, name=model.name)
    copy.build()
    return copy
  pairs = []

  def clone(layer):
    if isinstance(layer, keras.Model):  # clone_model copies it whole.
      raise TypeError(f"{layer.name}: a nested model would be copied "
                      "without its kernels; apply them to it first.")
    kind = type(layer)
    for option, keras_class, kernel_class in SWAPS:
      if kind is keras_class and option in options:
        kind = kernel_class
    copied = kind.from_config(layer.get_config())
    pairs.append((layer, copied))
    return copied

  copy = keras.models.clone_model(model, clone_function=clone)
  for layer, copied in pairs:
    if [_signature(v) for v in layer.variables] != [
        _signature(v) for v in copied.variables]:
      raise ValueError(f"{layer.name}: its copy has other variables.")
    for variable, copied_variable in zip(layer.variables, copied.variables):
      copied_variable.assign(variable)
  return copy


def _signature(variable) -> Tuple[str, tuple, str]:
  """What pairs a variable with its copy's: its name (not its path, which
  numbers seed generators globally), shape and dtype."""
  return variable.name, tuple(variable.shape), str(variable.dtype)


def for_training(config: config_lib.Config, generator: keras.Model,
                 discriminator: keras.Model,
                 adam: type) -> Tuple[keras.Model, keras.Model, type]:
  """(generator, discriminator, Adam class) of a run of `config`: the
  networks `with_kernels`, and `adam` as one fused kernel per variable
  with fused updates: the kernels `config` turns on, or where it leaves
  them unset, this machine's (`machines.kernels_used`). All kernel options
  false: the arguments, unchanged."""
  used = machines.kernels_used(config.kernels)
  options = {option for option in LAYER_OPTIONS if used[option]}
  if options:
    generator = with_kernels(generator, options)
    discriminator = with_kernels(discriminator, options)
  return (generator, discriminator,
          fused_adam(adam) if used["fused_updates"] else adam)
