"""The weight layout conversion and the reference's padding, layer by layer:
each Keras layer as the models build it, given a PyTorch layer's tensors
through `keras_weights`, computes what the PyTorch layer computes, by
PyTorch's definitions of Conv2d and ConvTranspose2d written out in numpy
(no PyTorch needed)."""

import keras
import numpy as np
import pytest
from keras import layers

from pix2pix_tf.models import pytorch_weights as pw


def torch_conv2d(x, weight, bias, stride, padding):
  """PyTorch's Conv2d on NCHW `x`, weight (out, in, kh, kw)."""
  n, c, h, w = x.shape
  out, _, kh, kw = weight.shape
  x = np.pad(x, [(0, 0), (0, 0), (padding, padding), (padding, padding)])
  oh = (h + 2 * padding - kh) // stride + 1
  ow = (w + 2 * padding - kw) // stride + 1
  y = np.zeros((n, out, oh, ow))
  for i in range(oh):
    for j in range(ow):
      patch = x[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
      y[:, :, i, j] = np.einsum("nchw,ochw->no", patch, weight)
  return y + bias[None, :, None, None]


def torch_conv_transpose2d(x, weight, bias, stride, padding,
                           output_padding=0):
  """PyTorch's ConvTranspose2d on NCHW `x`, weight (in, out, kh, kw): every
  input pixel adds weight * value at stride spacing; `padding` is cut from
  each side, `output_padding` rows and columns added at the end."""
  n, c, h, w = x.shape
  _, out, kh, kw = weight.shape
  full = np.zeros((n, out, (h - 1) * stride + kh + output_padding,
                   (w - 1) * stride + kw + output_padding))
  for i in range(h):
    for j in range(w):
      full[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw] += (
          np.einsum("nc,cohw->nohw", x[:, :, i, j], weight))
  oh = (h - 1) * stride - 2 * padding + kh + output_padding
  ow = (w - 1) * stride - 2 * padding + kw + output_padding
  y = full[:, :, padding:padding + oh, padding:padding + ow]
  return y + bias[None, :, None, None]


def keras_layer(stack, input_shape, state, kind):
  """`stack` (Keras layers as a model builds them) on NHWC `input_shape`,
  its one layer with weights given the reference module `m`'s tensors."""
  inputs = keras.Input(input_shape[1:])
  x = inputs
  for layer in stack:
    x = layer(x)
  [weighted] = [layer for layer in stack if layer.weights]
  weighted.set_weights(pw.keras_weights(state, "m", kind))
  return keras.Model(inputs, x)


def run(model, x_nchw):
  return np.asarray(model(x_nchw.transpose(0, 2, 3, 1).astype(np.float32))
                    ).transpose(0, 3, 1, 2)


# (name, Keras stack, PyTorch layer arguments): as the models build them.
CONVS = [
    # The U-Net's and the PatchGAN's stride-2 convolutions: k4 s2 p1.
    ("unet_down", lambda: [layers.Conv2D(5, 4, strides=2, padding="same")],
     dict(k=4, stride=2, padding=1, sizes=(8,))),  # It sees even sizes.
    # The PatchGAN's stride-1 convolutions: k4 s1 p1 (one pixel smaller).
    ("patchgan_stride1", lambda: [layers.ZeroPadding2D(1),
                                  layers.Conv2D(5, 4, padding="valid")],
     dict(k=4, stride=1, padding=1, sizes=(8, 7))),
    # The ResNet's downsamplings: k3 s2 p1.
    ("resnet_down", lambda: [layers.ZeroPadding2D(1),
                             layers.Conv2D(5, 3, strides=2,
                                           padding="valid")],
     dict(k=3, stride=2, padding=1, sizes=(8, 7))),
]


@pytest.mark.parametrize("name,stack,args", CONVS, ids=[c[0] for c in CONVS])
def test_conv2d_oihw_becomes_keras_hwio(name, stack, args):
  rng = np.random.default_rng(0)
  k = args["k"]
  state = {"m.weight": rng.normal(size=(5, 3, k, k)).astype(np.float32),
           "m.bias": rng.normal(size=5).astype(np.float32)}
  for size in args["sizes"]:
    x = rng.normal(size=(2, 3, size, size))
    expected = torch_conv2d(x, state["m.weight"], state["m.bias"],
                            args["stride"], args["padding"])
    model = keras_layer(stack(), (2, size, size, 3), state, pw.CONV)
    np.testing.assert_allclose(run(model, x), expected, atol=1e-4)


TRANSPOSED = [
    # The U-Net's upsamplings: k4 s2 p1.
    ("unet_up", lambda: [layers.Conv2DTranspose(5, 4, strides=2,
                                                padding="same")],
     dict(k=4, stride=2, padding=1, output_padding=0)),
    # The ResNet's upsamplings: k3 s2 p1 output_padding 1.
    ("resnet_up", lambda: [layers.Conv2DTranspose(5, 3, strides=2,
                                                  padding="valid"),
                           layers.Cropping2D(((1, 0), (1, 0)))],
     dict(k=3, stride=2, padding=1, output_padding=1)),
]


@pytest.mark.parametrize("name,stack,args", TRANSPOSED,
                         ids=[c[0] for c in TRANSPOSED])
def test_conv_transpose2d_in_out_becomes_keras_hw_out_in(name, stack, args):
  rng = np.random.default_rng(1)
  k = args["k"]
  state = {"m.weight": rng.normal(size=(3, 5, k, k)).astype(np.float32),
           "m.bias": rng.normal(size=5).astype(np.float32)}
  x = rng.normal(size=(2, 3, 4, 6))
  expected = torch_conv_transpose2d(x, state["m.weight"], state["m.bias"],
                                    args["stride"], args["padding"],
                                    args["output_padding"])
  assert expected.shape[2:] == (8, 12)
  model = keras_layer(stack(), (2, 4, 6, 3), state, pw.CONV_TRANSPOSE)
  np.testing.assert_allclose(run(model, x), expected, atol=1e-4)


def test_same_padding_would_be_a_pixel_off_for_the_resnet():
  """Keras's 'same' pads k3 s2 by 0 before and 1 after, PyTorch's padding=1
  by 1 on each side: the plain layer is not the reference's."""
  rng = np.random.default_rng(2)
  state = {"m.weight": rng.normal(size=(5, 3, 3, 3)).astype(np.float32),
           "m.bias": rng.normal(size=5).astype(np.float32)}
  x = rng.normal(size=(1, 3, 8, 8))
  expected = torch_conv2d(x, state["m.weight"], state["m.bias"], 2, 1)
  model = keras_layer([layers.Conv2D(5, 3, strides=2, padding="same")],
                      (1, 8, 8, 3), state, pw.CONV)
  assert np.abs(run(model, x) - expected).max() > 0.1


def test_batch_norm_tensors_keep_their_order():
  state = {f"m.{k}": np.full(4, v, np.float32) for k, v in (
      ("weight", 1.5), ("bias", 0.5), ("running_mean", 0.2),
      ("running_var", 3.0))}
  layer = layers.BatchNormalization(epsilon=1e-5)
  layer.build((1, 2, 2, 4))
  layer.set_weights(pw.keras_weights(state, "m", pw.NORM))
  x = np.ones((1, 2, 2, 4), np.float32)
  expected = (1 - 0.2) / np.sqrt(3.0 + 1e-5) * 1.5 + 0.5
  np.testing.assert_allclose(np.asarray(layer(x, training=False)), expected,
                             rtol=1e-5)
  # Instance norm (affine=False in the reference) has no tensors.
  assert pw.keras_weights({}, "m", pw.NORM) == []
