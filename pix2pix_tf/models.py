"""The pix2pix networks: U-Net generator and PatchGAN discriminator (Keras 3).

Built to match the paper's appendix and the reference implementation layer for
layer, so parameter counts equal the reference's exactly:

* Convolutions are 4x4 with stride 2 and "padding 1" (Keras "same" gives the
  same output size for even inputs); the PatchGAN's two stride-1 convolutions
  pad explicitly by 1 and so shrink the map by 1 each, as in the reference.
* Bias rule: a convolution followed by batch norm has no bias; with instance
  norm or no norm it has one. The generator's first convolution follows the
  same rule (the reference builds it with `bias=use_bias` although no norm
  follows), while its final transposed convolution and the discriminator's
  first and last convolutions always have one.
* Weights N(0, 0.02); batch-norm gamma N(1, 0.02), beta 0.
"""

from typing import List, Sequence

import keras
import tensorflow as tf
from keras import layers

from pix2pix_tf import config as config_lib

LEAKY_SLOPE = 0.2


def conv_initializer():
  return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def norm_layer(norm: str, name: str):
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


def _apply_norm(x, norm, name):
  layer = norm_layer(norm, name)
  return x if layer is None else layer(x)


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
  bias = uses_bias(norm)
  filters = [ngf * min(2 ** i, 8) for i in range(depth)]
  input_image = keras.Input(shape=(None, None, input_channels),
                            name="input_image")

  # Encoder. Each block: [LeakyReLU] - conv(stride 2) - [norm]. The first
  # block has no activation before it and no norm after it; the innermost
  # has no norm (the paper's errata: with batch size 1 it zeroes activations).
  skips = []
  x = input_image  # (batch, 256, 256, 3) for unet_256
  for i, f in enumerate(filters):
    if i > 0:
      x = layers.LeakyReLU(LEAKY_SLOPE, name=f"down{i}_lrelu")(x)
    x = layers.Conv2D(f, 4, strides=2, padding="same", use_bias=bias,
                      kernel_initializer=conv_initializer(),
                      name=f"down{i}_conv")(x)
    if 0 < i < depth - 1:
      x = _apply_norm(x, norm, f"down{i}_norm")
    skips.append(x)  # i=0: (batch, 128, 128, 64) ... i=7: (batch, 1, 1, 512)

  # Decoder. Each block: ReLU - transposed conv(stride 2) - norm - [dropout],
  # then concatenation with the encoder output of the same size.
  for j, i in enumerate(reversed(range(1, depth))):
    x = layers.ReLU(name=f"up{i}_relu")(x)
    x = layers.Conv2DTranspose(filters[i - 1], 4, strides=2, padding="same",
                               use_bias=bias,
                               kernel_initializer=conv_initializer(),
                               name=f"up{i}_conv")(x)
    x = _apply_norm(x, norm, f"up{i}_norm")
    with_dropout = (j < 3 if dropout_placement == "paper" else
                    1 <= j <= depth - 5)
    if with_dropout and dropout > 0:
      x = layers.Dropout(dropout, name=f"up{i}_dropout")(x)
    x = layers.Concatenate(name=f"up{i}_skip")([skips[i - 1], x])

  # Outermost block: back to image channels in [-1, 1].
  x = layers.ReLU(name="up0_relu")(x)
  x = layers.Conv2DTranspose(output_channels, 4, strides=2, padding="same",
                             kernel_initializer=conv_initializer(),
                             name="up0_conv")(x)
  generated_image = layers.Activation("tanh", dtype="float32",
                                      name="generated_image")(x)
  return keras.Model(input_image, generated_image, name=name)


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
    x = _apply_norm(x, norm, f"conv{i}_norm")
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
  x = layers.Conv2D(ndf, 1, kernel_initializer=conv_initializer(),
                    name="conv0")(x)
  x = layers.LeakyReLU(LEAKY_SLOPE, name="conv0_lrelu")(x)
  features = [x]
  x = layers.Conv2D(ndf * 2, 1, use_bias=bias,
                    kernel_initializer=conv_initializer(), name="conv1")(x)
  x = _apply_norm(x, norm, "conv1_norm")
  x = layers.LeakyReLU(LEAKY_SLOPE, name="conv1_lrelu")(x)
  features.append(x)
  x = layers.Conv2D(1, 1, use_bias=bias, kernel_initializer=conv_initializer(),
                    name="logits")(x)
  logits = layers.Activation("linear", dtype="float32", name="patch_logits")(x)
  return keras.Model(inputs, [logits] + features, name=name)


# Receptive field -> PatchGAN layers (1 is the PixelGAN), for
# --d_receptive_fields. The fields reported are computed from the layers.
RECEPTIVE_FIELD_LAYERS = {1: 0, 16: 1, 34: 2, 70: 3, 142: 4, 286: 5}


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

  def call(self, inputs, training=None):
    input_image, candidate_image = inputs
    pair = [input_image, candidate_image] if self.conditional else [
        candidate_image]
    return [list(d(pair, training=training)) for d in self.discriminators]


def build_discriminators(config) -> Discriminators:
  """The discriminator set of `config`, built on a crop_size pair."""

  def one(kind, n_layers, downsample, index):
    args = dict(input_channels=config.input_channels,
                output_channels=config.output_channels, ndf=config.ndf,
                norm=config.norm,
                conditional=config.conditional_discriminator,
                downsample=downsample, name=f"discriminator_{index}")
    if kind == "pixel":
      return pixel_discriminator(**args)
    return patchgan_discriminator(n_layers, **args)

  if config.d_receptive_fields:
    discriminators = [
        one("pixel" if RECEPTIVE_FIELD_LAYERS[field] == 0 else "patchgan",
            RECEPTIVE_FIELD_LAYERS[field], 0, i)
        for i, field in enumerate(config.receptive_field_list)]
  else:
    discriminators = [one(config.discriminator, config.d_layers, k, k)
                      for k in range(config.num_discriminators)]
  model = Discriminators(discriminators, config.conditional_discriminator)
  size = config.crop_size
  model([keras.ops.zeros((1, size, size, config.input_channels)),
         keras.ops.zeros((1, size, size, config.output_channels))])
  return model


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
      f, k, strides=s, padding="valid" if s == 1 else "same", use_bias=bias,
      kernel_initializer=conv_initializer(), name=n)
  input_image = keras.Input(shape=(None, None, input_channels),
                            name="input_image")
  x = ReflectionPadding2D(3, name="in_pad")(input_image)
  x = conv(ngf, 7, 1, "in_conv")(x)  # (batch, 256, 256, 64)
  x = _apply_norm(x, norm, "in_norm")
  x = layers.ReLU(name="in_relu")(x)
  for i in range(2):  # (batch, 128, 128, 128), then (batch, 64, 64, 256)
    x = conv(ngf * 2 ** (i + 1), 3, 2, f"down{i}_conv")(x)
    x = _apply_norm(x, norm, f"down{i}_norm")
    x = layers.ReLU(name=f"down{i}_relu")(x)
  for b in range(n_blocks):
    y = ReflectionPadding2D(1, name=f"block{b}_pad0")(x)
    y = conv(ngf * 4, 3, 1, f"block{b}_conv0")(y)
    y = _apply_norm(y, norm, f"block{b}_norm0")
    y = layers.ReLU(name=f"block{b}_relu")(y)
    if dropout > 0:
      y = layers.Dropout(dropout, name=f"block{b}_dropout")(y)
    y = ReflectionPadding2D(1, name=f"block{b}_pad1")(y)
    y = conv(ngf * 4, 3, 1, f"block{b}_conv1")(y)
    y = _apply_norm(y, norm, f"block{b}_norm1")
    x = layers.Add(name=f"block{b}_add")([x, y])
  for i in range(2):  # (batch, 128, 128, 128), then (batch, 256, 256, 64)
    x = layers.Conv2DTranspose(ngf * 2 ** (1 - i), 3, strides=2,
                               padding="same", use_bias=bias,
                               kernel_initializer=conv_initializer(),
                               name=f"up{i}_conv")(x)
    x = _apply_norm(x, norm, f"up{i}_norm")
    x = layers.ReLU(name=f"up{i}_relu")(x)
  x = ReflectionPadding2D(3, name="out_pad")(x)
  x = layers.Conv2D(output_channels, 7, kernel_initializer=conv_initializer(),
                    name="out_conv")(x)
  generated_image = layers.Activation("tanh", dtype="float32",
                                      name="generated_image")(x)
  return keras.Model(input_image, generated_image, name=name)


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
    super().__init__(name=f"{batch_norm.name}_batch_statistics", **kwargs)
    self.batch_norm = batch_norm

  def call(self, inputs, training=None, mask=None):
    del training, mask  # The same at training and at test time.
    bn = self.batch_norm
    x = keras.ops.cast(inputs, "float32")
    mean, variance = keras.ops.moments(x, axes=[1, 2], keepdims=True)
    x = (x - mean) * keras.ops.rsqrt(variance + bn.epsilon)
    x = x * bn.gamma + bn.beta
    return keras.ops.cast(x, self.compute_dtype)


class AlwaysDropout(layers.Layer):
  """Dropout that stays on at inference: the paper's only noise source.

  Uses TensorFlow's stateful dropout op, so a SavedModel holding it needs no
  random-state variable.
  """

  def __init__(self, rate: float, **kwargs):
    super().__init__(**kwargs)
    self.rate = rate

  def call(self, inputs):
    return tf.nn.dropout(inputs, rate=self.rate)


def paper_mode(generator: keras.Model) -> keras.Model:
  """The generator as the paper and the reference run it at test time.

  Dropout stays on and batch norm uses each image's own statistics, as the
  reference's test (batch size 1) does: instance normalisation with batch
  norm's gamma and beta. Returns a model that
  shares every weight with `generator`; calling it changes nothing.
  """

  def swap(layer):
    if isinstance(layer, layers.BatchNormalization):
      return BatchStatisticsNormalization(layer)
    if isinstance(layer, layers.Dropout):
      return AlwaysDropout(layer.rate, name=f"{layer.name}_always")
    return layer  # Reused: shares its weights.

  return keras.models.clone_model(generator, clone_function=swap)


# Flag value -> builder. Each takes the Config.
GENERATORS = {
    "unet_256": lambda c: unet_generator(8, c.input_channels,
                                         c.output_channels, c.ngf, c.norm,
                                         c.dropout,
                                         dropout_placement=c.dropout_placement),
    "unet_128": lambda c: unet_generator(7, c.input_channels,
                                         c.output_channels, c.ngf, c.norm,
                                         c.dropout,
                                         dropout_placement=c.dropout_placement),
    "unet": lambda c: unet_generator(c.unet_depth, c.input_channels,
                                     c.output_channels, c.ngf, c.norm,
                                     c.dropout,
                                     dropout_placement=c.dropout_placement),
    "resnet_9blocks": lambda c: resnet_generator(9, c.input_channels,
                                                 c.output_channels, c.ngf,
                                                 c.norm, c.dropout),
    "resnet_6blocks": lambda c: resnet_generator(6, c.input_channels,
                                                 c.output_channels, c.ngf,
                                                 c.norm, c.dropout),
}


def build_generator(config: config_lib.Config) -> keras.Model:
  return GENERATORS[config.generator](config)


def build_discriminator(config: config_lib.Config) -> Discriminators:
  return build_discriminators(config)


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
  for layer in reversed(_flat_layers(model)):
    kernel = getattr(layer, "kernel_size", None) or getattr(
        layer, "pool_size", None)
    if kernel is None:
      continue
    strides = getattr(layer, "strides", None) or kernel
    r = (r - 1) * _square(strides, layer) + _square(kernel, layer)
  return r


def _flat_layers(model) -> Sequence[keras.layers.Layer]:
  flat = []
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      flat.extend(_flat_layers(layer))
    else:
      flat.append(layer)
  return flat


def _square(value, layer) -> int:
  values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
  if len(set(values)) != 1:
    raise ValueError(f"Layer {layer.name} is not square: {values}.")
  return int(values[0])
