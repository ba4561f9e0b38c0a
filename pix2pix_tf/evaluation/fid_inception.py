"""The Inception network of published FID figures, in Keras.

FID numbers in papers come from the TensorFlow Inception graph of
2015-12-05 (the original TTUR code), which pytorch-fid carries as
`pt_inception-2015-12-05-6726825d.pth`. That network is not Keras's
ImageNet InceptionV3: its weights differ, and its last block pools by
maximum where Keras's averages. Features from another network give FID
values on another scale, so only this port, with those weights, gives the
figures pytorch-fid gives (and clean-fid in its `legacy_pytorch` mode;
clean-fid's default resizes otherwise).

The input is what pytorch-fid gives its network for a PNG file: the 8-bit
image as [0, 1] floats, resized bilinearly (half-pixel centres, no
antialiasing) to 299x299 and scaled to [-1, 1]. The output is the 2048-d
average pool of the last block.

Every convolution is a `BasicConv2d`: convolution without bias, batch norm
(epsilon 1e-3, inference statistics), ReLU. Keras layers are named after
the PyTorch modules (`Mixed_5b.branch1x1`), so the state dict's names
select their weights.
"""

import hashlib
import os
from typing import Dict, Tuple

import keras
import numpy as np
import tensorflow as tf

from pix2pix_tf import errors
from pix2pix_tf.models import pytorch_weights

WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/"
               "fid_weights/pt_inception-2015-12-05-6726825d.pth")
# torch.hub's naming: the file name ends in its SHA-256's first digits.
WEIGHTS_SHA256_PREFIX = "6726825d"
SIZE = 299
NAME = "fid_inception"  # The model's name, by which metrics knows it.


def _basic_conv(x, name: str, filters: int, kernel, strides: int = 1,
                padding: str = "same"):
  """conv (no bias) -> batch norm -> ReLU. Every stride-1 convolution of
  the network pads (k - 1) / 2 on each side, which is Keras's "same"; the
  stride-2 ones do not pad."""
  x = keras.layers.Conv2D(filters, kernel, strides, padding, use_bias=False,
                          name=f"{name}.conv")(x)
  x = keras.layers.BatchNormalization(epsilon=1e-3, name=f"{name}.bn")(x)
  return keras.layers.ReLU()(x)


def _average_pool(x):
  # 3x3, stride 1, padding 1 with count_include_pad=False: Keras's "same"
  # average pool divides by the pixels inside the image too.
  return keras.layers.AveragePooling2D(3, 1, "same")(x)


def _block_a(x, name: str, pool_features: int):
  """35x35: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg pool-1x1."""
  branch1x1 = _basic_conv(x, f"{name}.branch1x1", 64, 1)
  branch5x5 = _basic_conv(x, f"{name}.branch5x5_1", 48, 1)
  branch5x5 = _basic_conv(branch5x5, f"{name}.branch5x5_2", 64, 5)
  double = _basic_conv(x, f"{name}.branch3x3dbl_1", 64, 1)
  double = _basic_conv(double, f"{name}.branch3x3dbl_2", 96, 3)
  double = _basic_conv(double, f"{name}.branch3x3dbl_3", 96, 3)
  pool = _basic_conv(_average_pool(x), f"{name}.branch_pool", pool_features,
                     1)
  return keras.layers.Concatenate()([branch1x1, branch5x5, double, pool])


def _block_b(x, name: str):
  """35x35 -> 17x17: 3x3/2 | 1x1-3x3-3x3/2 | max pool/2."""
  branch3x3 = _basic_conv(x, f"{name}.branch3x3", 384, 3, 2, "valid")
  double = _basic_conv(x, f"{name}.branch3x3dbl_1", 64, 1)
  double = _basic_conv(double, f"{name}.branch3x3dbl_2", 96, 3)
  double = _basic_conv(double, f"{name}.branch3x3dbl_3", 96, 3, 2, "valid")
  pool = keras.layers.MaxPooling2D(3, 2)(x)
  return keras.layers.Concatenate()([branch3x3, double, pool])


def _block_c(x, name: str, channels_7x7: int):
  """17x17, factorised 7x7: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 |
  avg pool-1x1."""
  c7 = channels_7x7
  branch1x1 = _basic_conv(x, f"{name}.branch1x1", 192, 1)
  branch7x7 = _basic_conv(x, f"{name}.branch7x7_1", c7, 1)
  branch7x7 = _basic_conv(branch7x7, f"{name}.branch7x7_2", c7, (1, 7))
  branch7x7 = _basic_conv(branch7x7, f"{name}.branch7x7_3", 192, (7, 1))
  double = _basic_conv(x, f"{name}.branch7x7dbl_1", c7, 1)
  for i, (filters, kernel) in enumerate(
      [(c7, (7, 1)), (c7, (1, 7)), (c7, (7, 1)), (192, (1, 7))], start=2):
    double = _basic_conv(double, f"{name}.branch7x7dbl_{i}", filters, kernel)
  pool = _basic_conv(_average_pool(x), f"{name}.branch_pool", 192, 1)
  return keras.layers.Concatenate()([branch1x1, branch7x7, double, pool])


def _block_d(x, name: str):
  """17x17 -> 8x8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max pool/2."""
  branch3x3 = _basic_conv(x, f"{name}.branch3x3_1", 192, 1)
  branch3x3 = _basic_conv(branch3x3, f"{name}.branch3x3_2", 320, 3, 2,
                          "valid")
  branch7x7 = _basic_conv(x, f"{name}.branch7x7x3_1", 192, 1)
  branch7x7 = _basic_conv(branch7x7, f"{name}.branch7x7x3_2", 192, (1, 7))
  branch7x7 = _basic_conv(branch7x7, f"{name}.branch7x7x3_3", 192, (7, 1))
  branch7x7 = _basic_conv(branch7x7, f"{name}.branch7x7x3_4", 192, 3, 2,
                          "valid")
  pool = keras.layers.MaxPooling2D(3, 2)(x)
  return keras.layers.Concatenate()([branch3x3, branch7x7, pool])


def _block_e(x, name: str, max_pool: bool):
  """8x8, split 3x3s: 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) |
  pool-1x1; the pool is an average in Mixed_7b, a maximum in Mixed_7c."""
  branch1x1 = _basic_conv(x, f"{name}.branch1x1", 320, 1)
  split = _basic_conv(x, f"{name}.branch3x3_1", 384, 1)
  split = keras.layers.Concatenate()([
      _basic_conv(split, f"{name}.branch3x3_2a", 384, (1, 3)),
      _basic_conv(split, f"{name}.branch3x3_2b", 384, (3, 1))])
  double = _basic_conv(x, f"{name}.branch3x3dbl_1", 448, 1)
  double = _basic_conv(double, f"{name}.branch3x3dbl_2", 384, 3)
  double = keras.layers.Concatenate()([
      _basic_conv(double, f"{name}.branch3x3dbl_3a", 384, (1, 3)),
      _basic_conv(double, f"{name}.branch3x3dbl_3b", 384, (3, 1))])
  pooled = (keras.layers.MaxPooling2D(3, 1, "same")(x) if max_pool
            else _average_pool(x))
  pool = _basic_conv(pooled, f"{name}.branch_pool", 192, 1)
  return keras.layers.Concatenate()([branch1x1, split, double, pool])


def build() -> keras.Model:
  """The network, randomly initialised: (batch, 299, 299, 3) in [-1, 1] ->
  (batch, 2048)."""
  images = keras.Input((SIZE, SIZE, 3))
  x = _basic_conv(images, "Conv2d_1a_3x3", 32, 3, 2, "valid")  # 149x149x32
  x = _basic_conv(x, "Conv2d_2a_3x3", 32, 3, padding="valid")  # 147x147x32
  x = _basic_conv(x, "Conv2d_2b_3x3", 64, 3)  # 147x147x64
  x = keras.layers.MaxPooling2D(3, 2)(x)  # 73x73x64
  x = _basic_conv(x, "Conv2d_3b_1x1", 80, 1)  # 73x73x80
  x = _basic_conv(x, "Conv2d_4a_3x3", 192, 3, padding="valid")  # 71x71x192
  x = keras.layers.MaxPooling2D(3, 2)(x)  # 35x35x192
  x = _block_a(x, "Mixed_5b", 32)  # 35x35x256
  x = _block_a(x, "Mixed_5c", 64)  # 35x35x288
  x = _block_a(x, "Mixed_5d", 64)  # 35x35x288
  x = _block_b(x, "Mixed_6a")  # 17x17x768
  for name, channels_7x7 in [("Mixed_6b", 128), ("Mixed_6c", 160),
                             ("Mixed_6d", 160), ("Mixed_6e", 192)]:
    x = _block_c(x, name, channels_7x7)  # 17x17x768
  x = _block_d(x, "Mixed_7a")  # 8x8x1280
  x = _block_e(x, "Mixed_7b", max_pool=False)  # 8x8x2048
  x = _block_e(x, "Mixed_7c", max_pool=True)  # 8x8x2048
  features = keras.layers.GlobalAveragePooling2D()(x)  # 2048
  return keras.Model(images, features, name=NAME)


def state_dict_shapes(model: keras.Model) -> Dict[str, Tuple[int, ...]]:
  """The PyTorch tensor names and shapes `load` reads into `model`."""
  shapes = {}
  for layer in model.layers:
    if isinstance(layer, keras.layers.Conv2D):
      height, width, inputs, outputs = layer.kernel.shape
      shapes[f"{layer.name}.weight"] = (outputs, inputs, height, width)
    elif isinstance(layer, keras.layers.BatchNormalization):
      for suffix in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{layer.name}.{suffix}"] = tuple(layer.gamma.shape)
  return shapes


def load(path: str) -> keras.Model:
  """The network with the weights of a `.pth` state dict, read without
  PyTorch (`pytorch_weights.read_state_dict`); tensors it does not use
  (the 1008-class `fc` head) are ignored.

  Raises:
    errors.CommandError: a file that is not such a state dict, or lacks a
      tensor or has one of another shape (both named).
  """
  state = pytorch_weights.read_state_dict(path)
  model = build()
  shapes = state_dict_shapes(model)
  advice = (f"Give pytorch-fid's weights, {os.path.basename(WEIGHTS_URL)} "
            f"from {WEIGHTS_URL}.")
  for name, shape in shapes.items():
    if name not in state or state[name].shape != shape:
      found = (f"has shape {state[name].shape}" if name in state
               else "is missing")
      raise errors.CommandError(
          f"{path}: tensor {name} {found}, where the FID Inception network "
          f"has {shape}. {advice}")
  layers = {layer.name: layer for layer in model.layers}
  for name in state:
    if name.rsplit(".", 1)[0] in layers and name not in shapes:
      raise errors.CommandError(
          f"{path}: tensor {name} has no place in the FID Inception network "
          f"(its convolutions have no bias). {advice}")
  for layer in model.layers:
    if isinstance(layer, keras.layers.Conv2D):
      kind = pytorch_weights.CONV
    elif isinstance(layer, keras.layers.BatchNormalization):
      kind = pytorch_weights.NORM
    else:
      continue
    layer.set_weights([w.astype(np.float32) for w in
                       pytorch_weights.keras_weights(state, layer.name, kind)])
  return model


def are_pytorch_fids(path: str) -> bool:
  """Whether the file at `path` is pytorch-fid's weights file, by its
  SHA-256 (a state dict of the same shapes, torchvision's ImageNet
  Inception say, loads too, but gives other features)."""
  digest = hashlib.sha256()
  with open(path, "rb") as file:
    for block in iter(lambda: file.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest().startswith(WEIGHTS_SHA256_PREFIX)


def preprocess(images: tf.Tensor) -> tf.Tensor:
  """[-1, 1] float32 RGB images as pytorch-fid sees them saved as 8-bit PNGs: rounded
  to the 256 levels `predict` writes, resized bilinearly to 299x299
  (half-pixel centres, no antialiasing: PyTorch's `interpolate` with
  `align_corners=False`) and mapped to [-1, 1]."""
  levels = tf.round(tf.clip_by_value((images + 1.0) * 127.5, 0.0, 255.0))
  resized = tf.image.resize(levels / 255.0, [SIZE, SIZE], method="bilinear",
                            antialias=False)
  return 2.0 * resized - 1.0
