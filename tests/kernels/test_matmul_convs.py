"""--matmul_small_convs: strided convolutions over small maps trained as
matrix multiplies over image patches, computing what TensorFlow's
convolution kernels compute."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import (built_small, l1_losses,
                      networks_layers, share_random_weights, step_ops,
                      trained_once)
from pix2pix_tf.kernels import convolutions


USED_HERE = convolutions.used_here


@pytest.fixture(autouse=True)
def without_a_gpu(monkeypatch):
  """The patch products as on a machine without a GPU, wherever the tests
  run (on a GPU machine Keras's kernels would run instead)."""
  monkeypatch.setattr(convolutions, "used_here", lambda: True)


def op_types(layer, x, training=True):
  """The op types of `layer`'s call on `x` and of its gradients."""

  def call(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(layer(x, training=training))
    gradients = tape.gradient(loss, [x, layer.kernel.value])
    assert all(g is not None for g in gradients)
    return gradients

  return [op.type for op in tf.function(call).get_concrete_function(x)
          .graph.get_operations()]


def convolved_once(layer, x):
  """Output and input/kernel/bias gradients of one training call of
  `layer` on `x` (float32), and the op types the call and its gradient
  ran."""
  results, ops = trained_once(layer, x, ("kernel", "bias"))
  return ([np.asarray(r, np.float32) for r in results],
          [op.type for op in ops])


def layer_pair(ours, theirs, shape, dtype="float32", **kwargs):
  """Our layer and Keras's, built for `shape` with the same random
  weights."""
  pair = [ours(dtype=dtype, **kwargs), theirs(dtype=dtype, **kwargs)]
  for layer in pair:
    layer.build(shape)
  return share_random_weights(
      pair, lambda rng, shape: rng.normal(0, 0.3, shape))


CASES = [
    # (transposed, input shape, kernel, stride, padding)
    (False, (2, 8, 8, 5), 4, 2, "same"),  # The U-Net's and PatchGAN's.
    (False, (2, 9, 7, 5), 4, 2, "same"),  # Odd sizes: uneven padding.
    (False, (1, 9, 9, 4), 4, 2, "valid"),
    (False, (2, 8, 8, 3), 3, 2, "same"),
    (True, (2, 4, 4, 6), 4, 2, "same"),  # The U-Net's decoder.
    (True, (1, 3, 5, 6), 4, 2, "valid"),
    (True, (2, 4, 4, 6), 3, 2, "valid"),  # The ResNet generator's.
    (True, (2, 4, 3, 6), 1, 2, "valid"),  # A kernel smaller than the stride.
    (False, (2, 7, 8, 3), 1, 2, "valid"),
]


@pytest.fixture(params=["fold", "conv2d_transpose"])
def transpose_kernel(request, monkeypatch):
  """Transposed convolutions (a Conv2DTranspose's output, a Conv2D's
  input gradient) as a product and a fold, as on the U-Net's smallest
  maps, or with TensorFlow's conv2d_transpose, as on larger ones (every
  map here is small, so the limit is set to choose)."""
  if request.param == "conv2d_transpose":
    monkeypatch.setattr(convolutions, "FOLD_MAX_ROWS", 0)
  return request.param


@pytest.mark.parametrize("transposed,shape,kernel,stride,padding", CASES)
@pytest.mark.parametrize("dtype,tolerance", [
    ("float32", 1e-5), ("mixed_bfloat16", 3e-2)])
def test_patch_products_train_as_tensorflows_kernels(
    transposed, shape, kernel, stride, padding, dtype, tolerance,
    transpose_kernel):
  pair = ((convolutions.Conv2DTranspose, keras.layers.Conv2DTranspose)
          if transposed else (convolutions.Conv2D, keras.layers.Conv2D))
  ours, theirs = layer_pair(*pair, shape, dtype, filters=7,
                            kernel_size=kernel, strides=stride,
                            padding=padding)
  x = tf.constant(np.random.default_rng(1).normal(0, 1, shape),
                  ours.compute_dtype)
  mine, my_ops = convolved_once(ours, x)
  keras_results, keras_ops = convolved_once(theirs, x)
  # The weight gradient is a MatMul over patches; TensorFlow's is a
  # Conv2DBackpropFilter, which never runs here.
  assert "ExtractImagePatches" in my_ops and "MatMul" in my_ops
  assert "Conv2DBackpropFilter" not in my_ops
  assert "Conv2DBackpropFilter" in keras_ops
  # The transposed convolution: folded, or TensorFlow's kernel (its op is
  # Conv2DBackpropInput, in the forward of a Conv2DTranspose, in the
  # gradient of a Conv2D).
  folded = transpose_kernel == "fold"
  assert ("UnsortedSegmentSum" in my_ops) == folded
  assert ("Conv2DBackpropInput" in my_ops) == (not folded)
  names = ["output", "input gradient", "kernel gradient", "bias gradient"]
  for name, a, b in zip(names, mine, keras_results):
    assert a.shape == b.shape, name
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * scale,
                               err_msg=name)


@pytest.mark.parametrize("transposed", [False, True])
def test_second_derivatives_match_kerass(transposed, transpose_kernel):
  """The gradient penalty (--gan_mode=wgangp) differentiates the input
  gradient by the weights, inside the compiled step: through the patch
  products' gradient too."""
  pair = ((convolutions.Conv2DTranspose, keras.layers.Conv2DTranspose)
          if transposed else (convolutions.Conv2D, keras.layers.Conv2D))
  layers = layer_pair(*pair, (2, 4, 4, 3), filters=4, kernel_size=4,
                      strides=2, padding="same")
  x = tf.constant(np.random.default_rng(2).normal(0, 1, (2, 4, 4, 3)),
                  tf.float32)

  def penalty_gradient(layer):
    @tf.function
    def compute(x):
      with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
          inner.watch(x)
          y = layer(x, training=True)
          score = tf.reduce_sum(y * tf.sin(y))
        penalty = tf.reduce_sum(inner.gradient(score, x) ** 2)
      return outer.gradient(penalty, layer.kernel.value)
    ops = [op.type for op in compute.get_concrete_function(x).graph
           .get_operations()]
    return compute(x).numpy(), ops

  (mine, my_ops), (theirs, _) = map(penalty_gradient, layers)
  assert "ExtractImagePatches" in my_ops
  assert ("Conv2DBackpropInput" in my_ops) == (transpose_kernel != "fold")
  assert np.abs(theirs).max() > 1e-3
  np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5)


def test_kerass_kernels_run_elsewhere():
  """At inference, with matmul=False, on maps over MATMUL_MAX_ROWS
  positions, of an unknown batch, unstrided, with an output padding:
  TensorFlow's convolution as Keras calls it."""
  small = tf.zeros((1, 8, 8, 3))
  side = int(np.sqrt(convolutions.MATMUL_MAX_ROWS)) * 2 + 2
  large = tf.zeros((1, side, side, 3))
  cases = [
      (convolutions.Conv2D(4, 4, strides=2, padding="same"), small, False),
      (convolutions.Conv2D(4, 4, strides=2, padding="same", matmul=False),
       small, True),
      (convolutions.Conv2D(4, 4, strides=2, padding="same"), large, True),
      (convolutions.Conv2D(4, 4, strides=1, padding="same"), small, True),
      (convolutions.Conv2DTranspose(4, 4, strides=2, padding="same"),
       small, False),
      (convolutions.Conv2DTranspose(4, 4, strides=2, padding="same",
                                    matmul=False), small, True),
      # A transposed layer counts its input's positions: 33x33 > 1024.
      (convolutions.Conv2DTranspose(4, 4, strides=2, padding="same"),
       tf.zeros((1, 33, 33, 3)), True),
      (convolutions.Conv2DTranspose(4, 3, strides=2, padding="same",
                                    output_padding=1), small, True)]
  for layer, x, training in cases:
    ops = op_types(layer, x, training)
    assert "ExtractImagePatches" not in ops, layer.get_config()
  patched = convolutions.Conv2D(4, 4, strides=2, padding="same")
  assert "ExtractImagePatches" in op_types(patched, small)
  transposed = convolutions.Conv2DTranspose(4, 4, strides=2, padding="same")
  assert "ExtractImagePatches" in op_types(transposed,
                                          tf.zeros((1, 32, 32, 3)))
  unknown = tf.TensorSpec((None, 8, 8, 3))
  assert "ExtractImagePatches" not in op_types(patched, unknown)
  # Right at the limit, the patch products; one row more, the kernels.
  edge = convolutions.Conv2D(4, 2, strides=2, padding="valid")
  rows = convolutions.MATMUL_MAX_ROWS
  assert "ExtractImagePatches" in op_types(edge, tf.zeros((rows, 2, 2, 1)))
  assert "ExtractImagePatches" not in op_types(
      edge, tf.zeros((rows + 1, 2, 2, 1)))


def test_the_layers_are_saved_and_loaded_with_their_setting(tmp_path):
  inputs = keras.Input((8, 8, 3))
  x = convolutions.Conv2D(4, 4, strides=2, padding="same", matmul=False,
                          name="down")(inputs)
  outputs = convolutions.Conv2DTranspose(3, 4, strides=2, padding="same",
                                         name="up")(x)
  keras.Model(inputs, outputs).save(str(tmp_path / "model.keras"))
  loaded = keras.models.load_model(str(tmp_path / "model.keras"))
  assert type(loaded.get_layer("down")) is convolutions.Conv2D
  assert type(loaded.get_layer("up")) is convolutions.Conv2DTranspose
  assert not loaded.get_layer("down").matmul
  assert loaded.get_layer("up").matmul


@pytest.mark.parametrize("matmul", [True, False])
@pytest.mark.slow
def test_the_flag_chooses_the_ops_and_training_lowers_the_loss(
    matmul, tmp_path):
  built, strategy = built_small(tmp_path, matmul_small_convs=matmul)
  convs = networks_layers(built, (keras.layers.Conv2D,
                                  keras.layers.Conv2DTranspose))
  assert convs and all(
      isinstance(layer, (convolutions.Conv2D,
                         convolutions.Conv2DTranspose)) == matmul
      for layer in convs)
  losses = l1_losses(built, strategy)
  assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
  graph = step_ops(built, strategy)
  assert any(op.type == "ExtractImagePatches" for op in graph) == matmul
  # The 32x32 test networks' strided layers all have small maps: with the
  # patch products the only Conv2DBackpropFilter ops are the weight
  # gradients of the PatchGAN's unstrided layers.
  by_filter = {layer.name for layer in convs for op in graph
               if op.type == "Conv2DBackpropFilter" and
               re.search(rf"/{layer.name}(_\d+)?/", op.name)}
  unstrided = {layer.name for layer in convs if min(layer.strides) == 1}
  assert unstrided and by_filter == (
      unstrided if matmul else {layer.name for layer in convs})


def test_machines_with_a_gpu_keep_the_convolution_kernels(monkeypatch):
  monkeypatch.setattr(convolutions, "used_here", USED_HERE)
  real = tf.config.list_physical_devices
  monkeypatch.setattr(
      tf.config, "list_physical_devices",
      lambda device_type=None: (["GPU:0"] if device_type == "GPU" else
                                real(device_type)))
  assert not convolutions.used_here()
  x = tf.zeros((1, 8, 8, 3))
  for layer in (convolutions.Conv2D(4, 4, strides=2, padding="same"),
                convolutions.Conv2DTranspose(4, 4, strides=2,
                                             padding="same")):
    assert layer.matmul
    assert "ExtractImagePatches" not in op_types(layer, x)
