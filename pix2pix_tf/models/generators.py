"""Generators: the paper's U-Net and the reference's ResNet, and paper-mode
inference."""

from typing import Callable

import keras
import tensorflow as tf
from keras import layers

from pix2pix_tf import architectures
from pix2pix_tf import config as config_lib
from pix2pix_tf.models.layers import (LEAKY_SLOPE, AlwaysDropout,
                                      BatchStatisticsNormalization,
                                      ReflectionPadding2D, apply_norm,
                                      conv_initializer, uses_bias)


def _unet_encoder(input_image, filters, norm: str):
  """The U-Net's encoder outputs, outermost first. Each block: [LeakyReLU] -
  conv(stride 2) - [norm]. The first block has no activation before it and
  no norm after it; the innermost has no norm (the paper's errata: with
  batch size 1 it zeroes activations)."""
  skips = []
  x = input_image  # (batch, 256, 256, 3) for unet_256
  for i, f in enumerate(filters):
    if i > 0:
      x = layers.LeakyReLU(LEAKY_SLOPE, name=f"down{i}_lrelu")(x)
    x = layers.Conv2D(f, 4, strides=2, padding="same",
                      use_bias=uses_bias(norm),
                      kernel_initializer=conv_initializer(),
                      name=f"down{i}_conv")(x)
    if 0 < i < len(filters) - 1:
      x = apply_norm(x, norm, f"down{i}_norm")
    skips.append(x)  # i=0: (batch, 128, 128, 64) ... i=7: (batch, 1, 1, 512)
  return skips


def unet_generator(depth: int = 8, input_channels: int = 3,
                   output_channels: int = 3, ngf: int = 64,
                   norm: str = "batch", dropout: float = 0.5,
                   name: str = "generator",
                   dropout_placement: str = "paper") -> keras.Model:
  """The U-Net generator of the paper with `depth` downsamplings.

  depth 8 is `unet_256` (1x1 bottleneck at 256x256), depth 7 `unet_128`.
  Encoder filters are ngf * (1, 2, 4, 8, 8, ...); the decoder mirrors them,
  each decoder block taking its encoder twin's output as a skip connection.

  Dropout: with `dropout_placement="paper"` the first three decoder blocks
  apply it, as the paper's CD512-CD512-CD512 and its original Torch code.
  With "reference", the blocks the PyTorch reference gives it: its
  `depth - 5` middle ngf*8 blocks, one block further out than the paper's
  (the innermost decoder block has none; unet_256 has three, unet_128 two).
  The parameter count is the same either way.

  The model is fully convolutional: it takes any height and width that are
  multiples of 2**depth.
  """
  filters = [ngf * min(2 ** i, 8) for i in range(depth)]
  input_image = keras.Input(shape=(None, None, input_channels),
                            name="input_image")
  skips = _unet_encoder(input_image, filters, norm)
  x = skips[-1]  # (batch, 1, 1, 512) for unet_256
  # Decoder. Each block: ReLU - transposed conv(stride 2) - norm - [dropout],
  # then concatenation with the encoder output of the same size.
  for j, i in enumerate(reversed(range(1, depth))):
    x = layers.ReLU(name=f"up{i}_relu")(x)
    x = layers.Conv2DTranspose(filters[i - 1], 4, strides=2, padding="same",
                               use_bias=uses_bias(norm),
                               kernel_initializer=conv_initializer(),
                               name=f"up{i}_conv")(x)
    x = apply_norm(x, norm, f"up{i}_norm")
    with_dropout = (j < 3 if dropout_placement == "paper" else
                    1 <= j <= depth - 5)
    if with_dropout and dropout > 0:
      x = layers.Dropout(dropout, name=f"up{i}_dropout")(x)
    # j=0: (batch, 2, 2, 512 + 512) ... j=6: (batch, 128, 128, 64 + 64)
    x = layers.Concatenate(name=f"up{i}_skip")([skips[i - 1], x])

  # Outermost block: back to image channels in [-1, 1].
  x = layers.ReLU(name="up0_relu")(x)
  x = layers.Conv2DTranspose(output_channels, 4, strides=2, padding="same",
                             kernel_initializer=conv_initializer(),
                             name="up0_conv")(x)
  # (batch, 256, 256, 3) for unet_256
  generated_image = layers.Activation("tanh", dtype="float32",
                                      name="generated_image")(x)
  return keras.Model(input_image, generated_image, name=name)


def resnet_generator(n_blocks: int = 9, input_channels: int = 3,
                     output_channels: int = 3, ngf: int = 64,
                     norm: str = "batch", dropout: float = 0.5,
                     name: str = "generator") -> keras.Model:
  """The reference's ResNet generator (Johnson et al. style).

  Reflection-padded 7x7 conv, two stride-2 3x3 downsamplings, `n_blocks`
  residual blocks of two reflection-padded 3x3 convs (dropout between them,
  as the reference's pix2pix default), two stride-2 transposed convs, and a
  reflection-padded 7x7 conv to the output channels with tanh.
  """
  bias = uses_bias(norm)
  conv = lambda f, k, s, n: layers.Conv2D(  # noqa: E731
      f, k, strides=s, padding="valid", use_bias=bias,
      kernel_initializer=conv_initializer(), name=n)
  input_image = keras.Input(shape=(None, None, input_channels),
                            name="input_image")
  x = ReflectionPadding2D(3, name="in_pad")(input_image)
  x = conv(ngf, 7, 1, "in_conv")(x)  # (batch, 256, 256, 64)
  x = apply_norm(x, norm, "in_norm")
  x = layers.ReLU(name="in_relu")(x)
  for i in range(2):  # (batch, 128, 128, 128), then (batch, 64, 64, 256)
    # One zero on each side, as the reference's padding=1 ('same' would
    # pad only after, and sample the image one pixel off).
    x = layers.ZeroPadding2D(1, name=f"down{i}_pad")(x)
    x = conv(ngf * 2 ** (i + 1), 3, 2, f"down{i}_conv")(x)
    x = apply_norm(x, norm, f"down{i}_norm")
    x = layers.ReLU(name=f"down{i}_relu")(x)
  for b in range(n_blocks):  # (batch, 64, 64, 256) in and out
    y = ReflectionPadding2D(1, name=f"block{b}_pad0")(x)
    y = conv(ngf * 4, 3, 1, f"block{b}_conv0")(y)
    y = apply_norm(y, norm, f"block{b}_norm0")
    y = layers.ReLU(name=f"block{b}_relu")(y)
    if dropout > 0:
      y = layers.Dropout(dropout, name=f"block{b}_dropout")(y)
    y = ReflectionPadding2D(1, name=f"block{b}_pad1")(y)
    y = conv(ngf * 4, 3, 1, f"block{b}_conv1")(y)
    y = apply_norm(y, norm, f"block{b}_norm1")
    x = layers.Add(name=f"block{b}_add")([x, y])
  for i in range(2):  # (batch, 128, 128, 128), then (batch, 256, 256, 64)
    # The reference's ConvTranspose2d(padding=1, output_padding=1): the
    # full 2n+1 output less its first row and column ('same' would keep
    # the first and drop the last: one pixel off).
    x = layers.Conv2DTranspose(ngf * 2 ** (1 - i), 3, strides=2,
                               padding="valid", use_bias=bias,
                               kernel_initializer=conv_initializer(),
                               name=f"up{i}_conv")(x)
    x = layers.Cropping2D(((1, 0), (1, 0)), name=f"up{i}_crop")(x)
    x = apply_norm(x, norm, f"up{i}_norm")
    x = layers.ReLU(name=f"up{i}_relu")(x)
  x = ReflectionPadding2D(3, name="out_pad")(x)
  x = layers.Conv2D(output_channels, 7, kernel_initializer=conv_initializer(),
                    name="out_conv")(x)  # (batch, 256, 256, 3)
  generated_image = layers.Activation("tanh", dtype="float32",
                                      name="generated_image")(x)
  return keras.Model(input_image, generated_image, name=name)


def paper_mode(generator: keras.Model, dropout: bool = True) -> keras.Model:
  """The generator as the paper and the reference run it at test time.

  Dropout stays on and batch norm uses each image's own statistics, as the
  reference's test (batch size 1) does: instance normalisation with batch
  norm's gamma and beta. Returns a model that
  shares every weight with `generator`; calling it changes nothing.
  `dropout=False`: dropout off (deterministic, for comparisons).
  """

  def swap(layer):
    if isinstance(layer, layers.BatchNormalization):
      return BatchStatisticsNormalization(layer)
    if isinstance(layer, layers.Dropout) and dropout:
      return AlwaysDropout(layer.rate, name=f"{layer.name}_always")
    return layer  # Reused: shares its weights.

  return keras.models.clone_model(generator, clone_function=swap)


def _unet(config: config_lib.Config) -> keras.Model:
  model, data = config.model, config.data
  return unet_generator(model.generator_depth, data.input_channels,
                        data.output_channels, model.ngf, model.norm,
                        model.dropout,
                        dropout_placement=model.dropout_placement)


def _resnet(config: config_lib.Config) -> keras.Model:
  model, data = config.model, config.data
  return resnet_generator(architectures.GENERATORS[model.generator].blocks,
                          data.input_channels, data.output_channels,
                          model.ngf, model.norm, model.dropout)


# A generator family -> its builder, which takes the Config. The --generator
# values, and each one's family, are architectures.GENERATORS.
BUILDERS = {"unet": _unet, "resnet": _resnet}


def build_generator(config: config_lib.Config) -> keras.Model:
  """The generator `config` asks for, under the current dtype policy."""
  family = architectures.GENERATORS[config.model.generator].family
  return BUILDERS[family](config)


def make_generate(generator: keras.Model, inference_mode: str) -> Callable:
  """A tf.function that runs the generator for samples and evaluation.

  paper: as the paper and the reference test: dropout on and batch norm with
  each image's own statistics (`paper_mode`, which shares the
  generator's weights and updates nothing), so a batch gives what one call
  per image gives. eval: the usual inference mode,
  moving statistics and no dropout.
  """
  model = paper_mode(generator) if inference_mode == "paper" else (
      generator)

  @tf.function
  def generate(input_image):
    return model(input_image, training=False)

  return generate
