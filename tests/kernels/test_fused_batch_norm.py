"""--fused_batch_norm: batch norm trained by TensorFlow's fused kernels with
Keras's arithmetic, variables and moving averages."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import (built_small, l1_losses, networks_layers,
                      share_random_weights, step_ops, trained_once)
from pix2pix_tf.kernels import batch_norm as layers_lib


def normalized_once(layer, x):
  """Output, input/gamma/beta gradients and moving statistics after one
  training call of `layer` on `x` (float32 results), and the op types it
  ran."""
  # Weighted, so that the gradients are not the trivial zeros of a sum.
  results, ops = trained_once(
      layer, x, ("gamma", "beta"),
      loss=lambda x, y: tf.reduce_sum(tf.cast(y, tf.float32) ** 3))
  moving = [layer.moving_mean.numpy(), layer.moving_variance.numpy()]
  return ([np.asarray(r, np.float32) for r in results] + moving,
          {op.type for op in ops})


def layer_pair(dtype, channels):
  """A FusedBatchNormalization and a Keras BatchNormalization with the same
  (random) gamma, beta and moving statistics."""
  pair = [kind(momentum=0.9, epsilon=1e-5, dtype=dtype)
          for kind in (layers_lib.FusedBatchNormalization,
                       keras.layers.BatchNormalization)]
  for layer in pair:
    layer.build((None, None, None, channels))
  return share_random_weights(
      pair, lambda rng, shape: rng.uniform(0.5, 1.5, shape))


@pytest.mark.parametrize("dtype,shape,tolerance", [
    ("float32", (3, 5, 4, 6), 1e-4),
    ("mixed_bfloat16", (2, 8, 8, 6), 5e-2),
    # One value per channel: Keras's variance is 0 (the kernel's unbiased
    # one divides by 0), and the output is beta up to the mean's rounding
    # times 1 / sqrt(epsilon).
    ("float32", (1, 1, 1, 6), 1e-3)])
def test_the_fused_layer_trains_as_kerass_batch_norm(dtype, shape, tolerance):
  fused, plain = layer_pair(dtype, shape[-1])
  x = tf.constant(np.random.default_rng(1).normal(2.0, 3.0, shape),
                  layers_lib.FusedBatchNormalization(dtype=dtype)
                  .compute_dtype)
  ours, fused_ops = normalized_once(fused, x)
  theirs, keras_ops = normalized_once(plain, x)
  assert "FusedBatchNormV3" in fused_ops and "Mean" not in fused_ops
  assert "FusedBatchNormV3" not in keras_ops
  names = ["output", "input gradient", "gamma gradient", "beta gradient",
           "moving mean", "moving variance"]
  for name, a, b in zip(names, ours, theirs):
    assert np.all(np.isfinite(a)), name
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * scale,
                               err_msg=name)


def test_the_fused_layer_falls_back_to_keras_where_the_kernel_does_not_fit():
  x = tf.random.normal((2, 4, 4, 3))
  for layer in (layers_lib.FusedBatchNormalization(fused=False),
                layers_lib.FusedBatchNormalization(synchronized=True)):
    ops = {op.type for op in tf.function(
        lambda x, layer=layer: layer(x, training=True))
        .get_concrete_function(x).graph.get_operations()}
    assert "FusedBatchNormV3" not in ops
  inference = layers_lib.FusedBatchNormalization()
  frozen = layers_lib.FusedBatchNormalization()
  frozen.trainable = False
  for function in (lambda x: inference(x, training=False),
                   lambda x: frozen(x, training=True)):
    assert "FusedBatchNormV3" not in {
        op.type for op in tf.function(function).get_concrete_function(x)
        .graph.get_operations()}


def test_checkpoints_of_either_layer_restore_into_the_other(tmp_path):
  fused, plain = layer_pair("float32", 6)
  for variable in fused.weights:
    variable.assign(variable + 1.0)
  path = tf.train.Checkpoint(layer=fused).write(str(tmp_path / "fused"))
  tf.train.Checkpoint(layer=plain).read(path).assert_consumed()
  for a, b in zip(fused.weights, plain.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_the_fused_layer_is_saved_and_loaded_with_its_setting(tmp_path):
  inputs = keras.Input((8, 8, 3))
  outputs = layers_lib.FusedBatchNormalization(fused=False, name="bn")(
      inputs)
  path = str(tmp_path / "model.keras")
  keras.Model(inputs, outputs).save(path)
  loaded = keras.models.load_model(path).get_layer("bn")
  assert isinstance(loaded, layers_lib.FusedBatchNormalization)
  assert loaded.fused is False


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.slow
def test_the_flag_chooses_the_kernel_and_training_lowers_the_loss(
    fused, tmp_path):
  built, strategy = built_small(tmp_path, fused_batch_norm=fused)
  norms = networks_layers(built, keras.layers.BatchNormalization)
  assert norms and all(
      isinstance(layer, layers_lib.FusedBatchNormalization) == fused
      for layer in norms)
  losses = l1_losses(built, strategy)
  assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
  ops = {op.type for op in step_ops(built, strategy)}
  assert ("FusedBatchNormV3" in ops) == fused
  assert ("FusedBatchNormGradV3" in ops) == fused
