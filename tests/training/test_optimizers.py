"""--fused_updates: Adam as TensorFlow's fused kernel, Keras's update."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import built_small, l1_losses
from pix2pix_tf import training
from pix2pix_tf.training import optimizers


def updated(optimizer_class, strategy, steps=3):
  """Weights and moments after `steps` updates of two variables."""
  rng = np.random.default_rng(0)
  with strategy.scope():
    layer = keras.layers.Conv2D(8, 3)
    layer.build((None, 8, 8, 4))
    variables = layer.trainable_variables
    for variable in variables:
      variable.assign(rng.normal(size=variable.shape).astype(np.float32))
    optimizer = optimizer_class(
        keras.optimizers.schedules.PolynomialDecay(1e-2, 10, 1e-3),
        beta_1=0.5, beta_2=0.999)
    optimizer.build(variables)

  def replica_update(gradients):
    # A gradient computed in the replica (an input tensor as it is would not
    # be one MirroredStrategy can all-reduce). Float32 as in training: under
    # mixed precision the variables, hence their gradients, stay float32.
    optimizer.apply_gradients(zip([tf.identity(g) for g in gradients],
                                  variables))

  @tf.function
  def apply(gradients):
    strategy.run(replica_update, args=(gradients,))

  for step in range(steps):
    apply([tf.constant(rng.normal(size=v.shape).astype(np.float32) * step)
           for v in variables])
  ops = {op.type for op in apply.get_concrete_function(
      [tf.zeros(v.shape) for v in variables]).graph.get_operations()}
  return ([v.numpy() for v in variables]
          + [v.numpy() for v in optimizer.variables if v.shape.rank]), ops


def test_fused_adam_is_kerass_adam_in_one_kernel():
  """Same weights and moments as Keras's Adam after three updates (with a
  learning-rate schedule, beta_1=0.5 and the first step's zero gradient);
  and the update that runs is the fused kernel. (Under MirroredStrategy,
  where each replica updates its own copies, test_train's two replicas
  against one check it: a MirroredStrategy made here would leave its
  collective keys to the next one in this process.)"""
  strategy = training.make_strategy("one_device")
  fused, fused_ops = updated(optimizers.FusedAdam, strategy)
  keras_adam, keras_ops = updated(keras.optimizers.Adam, strategy)
  assert len(fused) == 6  # Two variables, two moments each.
  for ours, theirs in zip(fused, keras_adam):
    # Rounding differs (one fused pass against separate ops): ~1 ulp.
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
  assert "ResourceApplyAdam" in fused_ops
  assert "ResourceApplyAdam" not in keras_ops
  assert "Sqrt" in keras_ops and "Sqrt" not in fused_ops


@pytest.mark.parametrize("fused", [True, False])
def test_the_flag_chooses_the_optimizer_and_training_lowers_the_loss(
    fused, tmp_path):
  built, strategy = built_small(tmp_path, fused_updates=fused)
  assert isinstance(built.state.generator_optimizer,
                    optimizers.FusedAdam) == fused
  losses = l1_losses(built, strategy)
  assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
