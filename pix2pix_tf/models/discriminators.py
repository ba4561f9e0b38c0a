"""Discriminators: PatchGAN, PixelGAN, several at once (multi-scale or by
receptive field), and receptive fields computed from the layers."""

from typing import List, Sequence

import keras
from keras import layers

from pix2pix_tf import architectures
from pix2pix_tf import config as config_lib
from pix2pix_tf.models.layers import (LEAKY_SLOPE, apply_norm,
                                      conv_initializer, flat_layers, uses_bias)


def _discriminator_inputs(input_channels, output_channels, conditional):
  """Inputs of one discriminator, and the tensor its layers start from.

  Conditional: input and candidate image concatenated on channels (the
  paper's cGAN); unconditional: the candidate alone (the paper's "GAN").
  """
  candidate_image = keras.Input(shape=(None, None, output_channels),
                                name="candidate_image")
  if not conditional:
    return [candidate_image], candidate_image
  input_image = keras.Input(shape=(None, None, input_channels),
                            name="input_image")
  pair = layers.Concatenate(name="pair")([input_image, candidate_image])
  return [input_image, candidate_image], pair


def _downsample(x, times, name):
  """pix2pixHD's input pyramid: 3x3 stride-2 average pooling, `times` times."""
  for i in range(times):
    x = layers.AveragePooling2D(3, strides=2, padding="same",
                                name=f"{name}_downsample{i}")(x)
  return x


def patchgan_discriminator(n_layers: int = 3, input_channels: int = 3,
                           output_channels: int = 3, ndf: int = 64,
                           norm: str = "batch", conditional: bool = True,
                           downsample: int = 0,
                           name: str = "discriminator") -> keras.Model:
  """The PatchGAN discriminator.

  Takes `[input_image, candidate_image]` (the target or a generated image;
  only `[candidate_image]` when not conditional) and returns one logit per
  overlapping patch, followed by the intermediate activations (for feature
  matching): `[logits, features_1, ..., features_n]`.

  `n_layers` stride-2 convolutions, then a stride-1 convolution and a stride-1
  convolution to one channel. n_layers=3 is the paper's 70x70 PatchGAN
  (a 256x256 pair gives a 30x30 map); 1, 2, 4, 5 give receptive fields of
  16, 34, 142 and 286. `downsample` average-pools the pair that many times
  first (the coarser scales of a multi-scale discriminator).
  """
  bias = uses_bias(norm)
  inputs, x = _discriminator_inputs(input_channels, output_channels,
                                    conditional)
  x = _downsample(x, downsample, name)
  features = []
  # C64 without norm: (batch, 128, 128, 64) for a 256x256 pair.
  x = layers.Conv2D(ndf, 4, strides=2, padding="same",
                    kernel_initializer=conv_initializer(), name="conv0")(x)
  x = layers.LeakyReLU(LEAKY_SLOPE, name="conv0_lrelu")(x)
  features.append(x)
  for i in range(1, n_layers + 1):
    # Stride 2 up to n_layers - 1, then one stride-1 block: for n_layers=3,
    # C128 (64x64), C256 (32x32), C512 stride 1 (31x31).
    stride = 2 if i < n_layers else 1
    f = ndf * min(2 ** i, 8)
    if stride == 1:
      x = layers.ZeroPadding2D(1, name=f"conv{i}_pad")(x)
    x = layers.Conv2D(f, 4, strides=stride,
                      padding="same" if stride == 2 else "valid",
                      use_bias=bias, kernel_initializer=conv_initializer(),
                      name=f"conv{i}")(x)
    x = apply_norm(x, norm, f"conv{i}_norm")
    x = layers.LeakyReLU(LEAKY_SLOPE, name=f"conv{i}_lrelu")(x)
    features.append(x)

  # One logit per patch: (batch, 30, 30, 1) for n_layers=3 at 256x256.
  x = layers.ZeroPadding2D(1, name="logits_pad")(x)
  x = layers.Conv2D(1, 4, strides=1, padding="valid",
                    kernel_initializer=conv_initializer(), name="logits")(x)
  logits = layers.Activation("linear", dtype="float32", name="patch_logits")(x)
  return keras.Model(inputs, [logits] + features, name=name)


def pixel_discriminator(input_channels: int = 3, output_channels: int = 3,
                        ndf: int = 64, norm: str = "batch",
                        conditional: bool = True, downsample: int = 0,
                        name: str = "discriminator") -> keras.Model:
  """The 1x1 PixelGAN: judges each pixel's colour alone (receptive field 1).

  1x1 convolutions: ndf with bias, LeakyReLU, 2*ndf, norm, LeakyReLU, then one
  channel (biases by the reference's rule). Same outputs as the PatchGAN.
  """
  bias = uses_bias(norm)
  inputs, x = _discriminator_inputs(input_channels, output_channels,
                                    conditional)
  x = _downsample(x, downsample, name)
  # C64 without norm, 1x1: (batch, 256, 256, 64) for a 256x256 pair.
  x = layers.Conv2D(ndf, 1, kernel_initializer=conv_initializer(),
                    name="conv0")(x)
  x = layers.LeakyReLU(LEAKY_SLOPE, name="conv0_lrelu")(x)
  features = [x]
  # C128, 1x1: (batch, 256, 256, 128).
  x = layers.Conv2D(ndf * 2, 1, use_bias=bias,
                    kernel_initializer=conv_initializer(), name="conv1")(x)
  x = apply_norm(x, norm, "conv1_norm")
  x = layers.LeakyReLU(LEAKY_SLOPE, name="conv1_lrelu")(x)
  features.append(x)
  # One logit per pixel: (batch, 256, 256, 1).
  x = layers.Conv2D(1, 1, use_bias=bias, kernel_initializer=conv_initializer(),
                    name="logits")(x)
  logits = layers.Activation("linear", dtype="float32", name="patch_logits")(x)
  return keras.Model(inputs, [logits] + features, name=name)


class Discriminators(keras.Model):
  """One or several discriminators judging the same pair.

  Called with `[input_image, candidate_image]`, returns a list with one
  `[logits, features...]` entry per discriminator; the losses sum over them.
  """

  def __init__(self, discriminators: Sequence[keras.Model],
               conditional: bool = True, name: str = "discriminator"):
    super().__init__(name=name)
    self.discriminators = list(discriminators)
    self.conditional = conditional

  def build(self, input_shape=None):
    """Nothing to build: its discriminators are functional models, built
    when made."""
    self.built = True

  def call(self, inputs, training=None):
    input_image, candidate_image = inputs
    pair = [input_image, candidate_image] if self.conditional else [
        candidate_image]
    return [list(d(pair, training=training)) for d in self.discriminators]


def build_discriminators(config: config_lib.Config) -> Discriminators:
  """The discriminator(s) `config` asks for, built on a crop_size pair,
  under the current dtype policy."""

  def one(kind, n_layers, downsample, index):
    args = dict(input_channels=config.data.input_channels,
                output_channels=config.data.output_channels,
                ndf=config.model.ndf,
                norm=config.model.norm,
                conditional=config.model.conditional_discriminator,
                downsample=downsample,
                name=f"discriminator_{index}")
    if kind == "pixel":
      return pixel_discriminator(**args)
    return patchgan_discriminator(n_layers, **args)

  if config.model.d_receptive_fields:
    layers_of = architectures.RECEPTIVE_FIELDS
    discriminators = [
        one("pixel" if layers_of[field] == 0 else "patchgan",
            layers_of[field], 0, i)
        for i, field in enumerate(config.model.receptive_field_list)]
  else:
    discriminators = [
        one(config.model.discriminator, config.model.d_layers, k, k)
        for k in range(config.model.num_discriminators)
    ]
  model = Discriminators(discriminators, config.model.conditional_discriminator)
  size = config.data.crop_size
  model([keras.ops.zeros((1, size, size, config.data.input_channels)),
         keras.ops.zeros((1, size, size, config.data.output_channels))])
  return model


def receptive_fields(discriminator: Discriminators) -> List[int]:
  """The receptive field of each discriminator, in input pixels."""
  return [receptive_field(d) for d in discriminator.discriminators]


def receptive_field(model: keras.Model) -> int:
  """The receptive field of one output unit, computed from the layers.

  Walks the model's convolution and pooling layers from the output back to
  the input with r = (r - 1) * stride + kernel. Padding and pointwise layers
  do not change it. Valid for chains of layers such as the PatchGAN.
  """
  r = 1
  for layer in reversed(flat_layers(model)):
    kernel = getattr(layer, "kernel_size", None) or getattr(
        layer, "pool_size", None)
    if kernel is None:
      continue
    strides = getattr(layer, "strides", None) or kernel
    r = (r - 1) * _square(strides, layer) + _square(kernel, layer)
  return r


def _square(value, layer) -> int:
  values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
  if len(set(values)) != 1:
    raise ValueError(f"Layer {layer.name} is not square: {values}.")
  return int(values[0])
