"""Adam as the reference's PyTorch Adam, in Keras's ops and as TensorFlow's
fused kernel (--fused_updates), and the reference's linear schedule."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import built_small, l1_losses
from pix2pix_tf import kernels
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


# What PyTorch computed (tests/training/make_torch_fixtures.py).
with open(os.path.join(os.path.dirname(__file__), "data",
                       "torch_optimizer.json")) as f:
  TORCH = json.load(f)


def torch_steps(optimizer_class):
  """The weights after each of the fixture's three Adam steps."""
  fixture = TORCH["adam"]
  variable = tf.Variable(fixture["weights"], dtype=tf.float32)
  optimizer = optimizer_class(2e-4, beta_1=0.5, beta_2=0.999)
  after = []
  for gradient in fixture["gradients"]:
    optimizer.apply_gradients([(tf.constant(gradient, tf.float32),
                                variable)])
    after.append(variable.numpy())
  return after


@pytest.mark.parametrize("optimizer_class",
                         [optimizers.Adam, kernels.fused_adam(optimizers.Adam)])
def test_adam_steps_as_the_references_pytorch_adam(optimizer_class):
  for ours, theirs in zip(torch_steps(optimizer_class),
                          TORCH["adam"]["after"]):
    # float32 rounding (weights near 1, steps of 2e-4): a few ulp.
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=3e-7)


def test_the_linear_schedule_is_the_references_at_every_epoch():
  schedule = TORCH["linear_schedule"]
  steps_per_epoch = 3
  decay = training.LinearDecay(2e-4, steps_per_epoch, schedule["n_epochs"],
                               schedule["n_epochs_decay"])
  for epoch, rate in enumerate(schedule["rates"]):
    for step in range(epoch * steps_per_epoch,
                      (epoch + 1) * steps_per_epoch):
      assert float(decay(step)) == pytest.approx(rate, rel=1e-6), (epoch,
                                                                   step)
  assert float(decay(200 * steps_per_epoch)) == 0.0  # Past its end.


def test_a_run_sized_by_max_steps_alone_keeps_its_learning_rate():
  # --epochs=0 --epochs_decay=0 --max_steps=N: no epochs to decay over.
  decay = training.LinearDecay(2e-4, 10, 0, 0)
  assert [float(decay(step)) for step in (0, 5, 15, 1000)] == pytest.approx(
      [2e-4] * 4)


def test_fused_adam_is_adam_in_one_kernel():
  """Same weights and moments as `Adam` after three updates (with a
  learning-rate schedule, beta_1=0.5 and the first step's zero gradient);
  and the update that runs is the fused kernel. (Under MirroredStrategy,
  where each replica updates its own copies, test_train's two replicas
  against one check it: a MirroredStrategy made here would leave its
  collective keys to the next one in this process.)"""
  strategy = training.make_strategy("one_device")
  fused, fused_ops = updated(kernels.fused_adam(optimizers.Adam), strategy)
  keras_adam, keras_ops = updated(optimizers.Adam, strategy)
  assert len(fused) == 6  # Two variables, two moments each.
  for ours, theirs in zip(fused, keras_adam):
    # Rounding differs (one fused pass against separate ops): ~1 ulp.
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
  assert "ResourceApplyAdam" in fused_ops
  assert "ResourceApplyAdam" not in keras_ops
  # The kernel updates the variables: no separate assignments of them.
  assert "AssignSubVariableOp" in keras_ops
  assert "AssignSubVariableOp" not in fused_ops


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.slow
def test_the_flag_chooses_the_optimizer_and_training_lowers_the_loss(
    fused, tmp_path):
  built, strategy = built_small(tmp_path, fused_updates=fused)
  assert type(built.state.generator_optimizer) is (
      kernels.fused_adam(optimizers.Adam) if fused else optimizers.Adam)
  losses = l1_losses(built, strategy)
  assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
