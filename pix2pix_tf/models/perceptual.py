"""VGG19, frozen, for pix2pixHD's perceptual loss (`--lambda_vgg`).

The network is Keras's ImageNet VGG19 without its classifier, read from the
weights file the user gives (`--vgg_weights`, Keras's
vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 at VGG19_WEIGHTS_URL);
nothing is downloaded. Its outputs are the five activations pix2pixHD
compares (relu1_1, relu2_1, relu3_1, relu4_1, relu5_1: Keras's blockN_conv1,
whose ReLU is part of the layer), weighted as pix2pixHD weights them.

Keras's weights were trained on Caffe's input (BGR, 0..255 less the ImageNet
mean), and `vgg_features` gives them that; pix2pixHD feeds torchvision's
weights [-1, 1] images as they are.
"""

import os
from typing import List

import keras
import tensorflow as tf

from pix2pix_tf import errors

VGG19_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
    "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")
VGG_LAYERS = tuple(f"block{i}_conv1" for i in range(1, 6))
# pix2pixHD's VGGLoss weights, shallow to deep.
VGG_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def build_vgg(weights_path: str) -> keras.Model:
  """VGG19's five compared activations, with the weights of
  `weights_path`, frozen.

  Raises:
    errors.CommandError: the file is missing or does not hold VGG19's
      convolution weights (named, with where to get them).
  """
  advice = (f"Give Keras's VGG19 weights without the top, "
            f"{os.path.basename(VGG19_WEIGHTS_URL)} from {VGG19_WEIGHTS_URL}.")
  if not os.path.isfile(weights_path):
    raise errors.CommandError(
        f"--vgg_weights={weights_path} is not a file. {advice}")
  vgg = keras.applications.VGG19(include_top=False, weights=None,
                                 input_shape=(None, None, 3))
  try:
    vgg.load_weights(weights_path)
  except (ValueError, OSError, KeyError) as error:
    reason = str(error).strip().splitlines()[0]
    raise errors.CommandError(
        f"--vgg_weights={weights_path} does not load into VGG19 ({reason}). "
        f"{advice}") from error
  network = keras.Model(vgg.input,
                        [vgg.get_layer(name).output for name in VGG_LAYERS],
                        name="vgg19_features")
  network.trainable = False
  return network


def vgg_features(network: keras.Model, images: tf.Tensor) -> List[tf.Tensor]:
  """The compared activations of [-1, 1] images (one channel is repeated to
  three), given as Caffe's input."""
  images = tf.cast(images, tf.float32)
  if images.shape[-1] == 1:
    images = tf.image.grayscale_to_rgb(images)
  caffe = keras.applications.vgg19.preprocess_input((images + 1.0) * 127.5)
  return network(caffe, training=False)
