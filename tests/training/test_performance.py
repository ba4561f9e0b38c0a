"""Mixed precision and multi-step execution change what runs, and still learn."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_same_update, small_config
from pix2pix_tf.data import demo
from pix2pix_tf import data as data_lib
from pix2pix_tf import training


def demo_batches(batch_size=2, size=32):
  rng = np.random.RandomState(0)
  pairs = [demo.draw_example(rng, size) for _ in range(batch_size)]
  input_image = data_lib.normalize(
      tf.constant(np.stack([p[1] for p in pairs]), tf.float32))
  target = data_lib.normalize(
      tf.constant(np.stack([p[0] for p in pairs]), tf.float32))
  return tf.data.Dataset.from_tensors((input_image, target)).repeat()


def build(config, batch_size=2):
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  keras.utils.set_random_seed(0)
  built = training.build(config.replace(batch_size=batch_size),
                         strategy, 100)
  state, step = built.state, built.distributed_step
  iterator = iter(strategy.experimental_distribute_dataset(
      demo_batches(batch_size)))
  return state, step, iterator


@pytest.mark.slow
def test_bf16_computes_in_bfloat16_with_float32_variables_and_outputs(
    tmp_path):
  state, step, iterator = build(small_config(tmp_path, tmp_path,
                                             mixed_precision="bf16"))
  conv = state.generator.get_layer("down1_conv")
  assert conv.compute_dtype == "bfloat16"
  assert conv.kernel.dtype == "float32"
  assert all(v.dtype == "float32" for v in state.generator.trainable_weights)
  x = tf.zeros([1, 32, 32, 3])
  inner = keras.Model(state.generator.input, conv.output)
  assert inner(x).dtype == tf.bfloat16
  # The tanh output and the logits are float32.
  assert state.generator(x).dtype == tf.float32
  assert state.discriminator([x, x])[0][0].dtype == tf.float32
  metrics = step(iterator)
  assert all(v.dtype == tf.float32 for v in metrics.values())
  # The policy applied to these models only.
  assert keras.mixed_precision.dtype_policy().name == "float32"


@pytest.mark.slow
def test_fp16_scales_the_loss(tmp_path):
  state, step, iterator = build(small_config(tmp_path, tmp_path,
                                             mixed_precision="fp16"))
  assert isinstance(state.generator_optimizer,
                    keras.optimizers.LossScaleOptimizer)
  assert state.generator.get_layer("down1_conv").compute_dtype == "float16"
  before = float(state.generator_optimizer.dynamic_scale)
  for _ in range(3):
    metrics = step(iterator)
  assert np.isfinite(float(metrics["gen_total_loss"]))
  assert float(state.generator_optimizer.dynamic_scale) <= before


@pytest.mark.slow
def test_steps_per_execution_runs_several_steps_per_call(tmp_path):
  state, step, iterator = build(small_config(tmp_path, tmp_path))
  step(iterator, tf.constant(4))
  assert int(state.step.numpy()) == 4
  assert int(state.generator_optimizer.iterations.numpy()) == 4
  # One traced function serves every block size.
  step(iterator, tf.constant(3))
  assert int(state.step.numpy()) == 7
  assert step.several.experimental_get_tracing_count() == 1


@pytest.mark.slow
def test_a_last_one_step_block_reuses_the_loop_when_blocks_are_longer(
    tmp_path):
  """At --steps_per_execution above 1, a run's last block can be one step:
  it runs through the traced loop, not a second function traced for it."""
  state, step, iterator = build(small_config(tmp_path, tmp_path,
                                             steps_per_execution=4))
  step(iterator, 4)
  step(iterator, 1)
  assert int(state.step.numpy()) == 5
  assert step.several.experimental_get_tracing_count() == 1
  assert step.single.experimental_get_tracing_count() == 0


def loop_ops(function, *args):
  graph = function.get_concrete_function(*args).graph
  return {op.type for op in graph.get_operations()}


@pytest.mark.slow
def test_one_step_per_call_runs_without_a_loop(tmp_path):
  """At --steps_per_execution=1 the call is the step itself, no While op;
  it updates the weights as the loop's one iteration does."""
  config = small_config(tmp_path, tmp_path, dropout=0.0)
  state, step, iterator = build(config)
  looped, looped_step, looped_iterator = build(config)
  looped.generator.set_weights(state.generator.get_weights())
  looped.discriminator.set_weights(state.discriminator.get_weights())
  metrics = step(iterator, 1)
  # At --steps_per_execution=1 a call takes the one-step function.
  assert step.single.experimental_get_tracing_count() == 1
  assert step.several.experimental_get_tracing_count() == 0
  looped_metrics = looped_step.several(looped_iterator, tf.constant(1))
  assert "While" not in loop_ops(step.single, iterator)
  assert "While" in loop_ops(looped_step.several, looped_iterator,
                             tf.constant(1))
  assert int(state.step.numpy()) == int(looped.step.numpy()) == 1
  for name, value in metrics.items():
    assert float(value) == pytest.approx(float(looped_metrics[name]),
                                         rel=1e-5)
  for a, b in zip(state.generator.get_weights(),
                  looped.generator.get_weights()):
    assert_same_update(a, b, config.optimisation.learning_rate)


@pytest.mark.slow
def test_steps_per_execution_end_to_end_keeps_periodic_actions(tiny_dataset,
                                                              tmp_path):
  config = small_config(tiny_dataset, tmp_path / "run", max_steps=7,
                        steps_per_execution=3, checkpoint_every_steps=2,
                        log_every_steps=2)
  results = training.train_and_evaluate(
      config, tf.distribute.OneDeviceStrategy("/cpu:0"))
  assert results["step"] == 7
  checkpoints = tf.train.get_checkpoint_state(
      str(tmp_path / "run" / "checkpoints")).all_model_checkpoint_paths
  assert [int(p.rsplit("-", 1)[1]) for p in checkpoints] == [4, 6, 7]


@pytest.mark.slow  # Emulated bf16/fp16 on CPUs without AVX-512: long.
@pytest.mark.parametrize("precision, jit", list(itertools.product(
    ["none", "bf16", "fp16"], [False, True])))
def test_every_combination_lowers_the_loss(tmp_path, precision, jit):
  """32 steps from the same start, one step per call (no loop) and four
  (the loop), each lower the loss. The start is restored from a checkpoint
  of every variable (weights, optimizer slots and loss scale, step, random
  states) instead of built again, so that the two share the traced and
  XLA-compiled step."""
  config = small_config(tmp_path, tmp_path, mixed_precision=precision,
                        jit_compile=jit, learning_rate=2e-3)
  state, step, iterator = build(config)
  checkpoint = state.checkpoint()
  start = checkpoint.write(str(tmp_path / "start"))
  for steps in (1, 4):
    checkpoint.read(start).assert_consumed()
    losses = [float(step(iterator, tf.constant(steps))["gen_l1_loss"])
              for _ in range(32 // steps)]
    assert int(state.step.numpy()) == 32
    assert np.mean(losses[-2:]) < 0.75 * losses[0], (steps, losses)
  # Each number of steps per call ran its own function.
  assert step.single.experimental_get_tracing_count() == 1
  assert step.several.experimental_get_tracing_count() == 1
