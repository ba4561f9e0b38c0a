"""The plain Keras step the benchmark compares with, and the step profile."""

import types

import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_same_update, load_tool, small_config
from pix2pix_tf import config as config_lib
from pix2pix_tf import kernels
from pix2pix_tf import training
from pix2pix_tf.kernels import convolutions

profile = load_tool("step_profile")


def batch(size=32, count=2, seed=0):
  rng = np.random.default_rng(seed)
  return tuple(tf.constant(rng.uniform(-1, 1, (count, size, size, 3)),
                           tf.float32) for _ in range(2))


@pytest.mark.parametrize("order,fused", [("alternating", False),
                                         ("simultaneous", False),
                                         ("alternating", True)])
@pytest.mark.slow
def test_the_plain_step_does_the_packages_update(order, fused, tmp_path):
  """Same weights, same batch (dropout off): one plain step and one step of
  the package leave both networks with the same weights, so the benchmark
  compares two implementations of the same arithmetic (with Keras's Adam
  or the package's fused one: the same formula)."""
  config = small_config(tmp_path, tmp_path / "run", dropout=0.0,
                        update_order=order)
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  built = training.build(config, strategy, steps_per_epoch=10)
  plain = profile.PlainStep(config, fused_updates=fused)
  assert isinstance(plain.generator_optimizer, kernels.FusedUpdates) == fused
  plain.generator.set_weights(built.state.generator.get_weights())
  plain.discriminator.set_weights(built.state.discriminator.get_weights())
  before = built.state.generator.get_weights()
  images = batch()
  for _ in range(2):
    strategy.run(built.train_step, args=(images,))
    plain.step(*images)
  for ours, theirs in ((built.state.generator, plain.generator),
                       (built.state.discriminator, plain.discriminator)):
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
      assert_same_update(a, b, config.optimisation.learning_rate)
  moved = max(np.abs(a - b).max() for a, b in
              zip(before, built.state.generator.get_weights()))
  assert moved > 1e-4  # Two Adam steps of 2e-4 each.
  ops = {op.type for op in
         plain.step.get_concrete_function(*images).graph.get_operations()}
  assert ("ResourceApplyAdam" in ops) == fused  # The fused kernel runs.


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.slow
def test_the_plain_step_takes_the_configurations_activations(
    compiled, tmp_path, monkeypatch):
  """In bfloat16 the plain step with the same kernels runs the compiled
  activations too (its weights are checked against the package's step in
  float32, above, where they do not apply)."""
  monkeypatch.setattr(convolutions, "used_here", lambda: True)
  config = small_config(tmp_path, tmp_path / "run", mixed_precision="bf16",
                        compiled_activations=compiled)
  plain = profile.PlainStep(config)
  ops = plain.step.get_concrete_function(*batch()).graph.get_operations()
  compiled_calls = [op for op in ops if op.type.endswith("PartitionedCall")
                    and op.node_def.attr["_XlaMustCompile"].b]
  assert bool(compiled_calls) == compiled
  assert ("LeakyRelu" in {op.type for op in ops}) == (not compiled)


def test_the_plain_step_refuses_what_the_tutorial_does_not_do(tmp_path):
  for overrides in (dict(gan_mode="lsgan"), dict(lambda_l2=1.0),
                    dict(lambda_feature_matching=1.0), dict(lambda_vgg=1.0),
                    dict(num_discriminators=2, crop_size=64, load_size=72),
                    dict(mixed_precision="fp16")):
    with pytest.raises(ValueError, match="fp16" if "mixed_precision" in
                       overrides else "the paper's objective"):
      profile.PlainStep(small_config(tmp_path, tmp_path / "run",
                                     **overrides))


@pytest.mark.slow
def test_the_profiles_last_cut_is_the_whole_update(tmp_path):
  """The prefixes the profile times are the real update: the last one,
  from the same weights, leaves the weights the step leaves."""
  config = small_config(tmp_path, tmp_path / "run", dropout=0.0)
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  ours = training.build(config, strategy, steps_per_epoch=10)
  cut = training.build(config, strategy, steps_per_epoch=10)
  for a, b in ((ours.state.generator, cut.state.generator),
               (ours.state.discriminator, cut.state.discriminator)):
    b.set_weights(a.get_weights())
  images = batch()
  strategy.run(ours.train_step, args=(images,))
  prefixes = profile.step_prefixes(cut.train_step, *images)
  assert tuple(prefixes) == profile.PREFIXES
  prefixes["generator_update"]()
  for a, b in ((ours.state.generator, cut.state.generator),
               (ours.state.discriminator, cut.state.discriminator)):
    for x, y in zip(a.get_weights(), b.get_weights()):
      assert_same_update(x, y, config.optimisation.learning_rate)


@pytest.mark.slow
def test_the_profile_names_each_part_of_the_step(tmp_path):
  config = small_config(tmp_path, tmp_path / "run")
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  built = training.build(config, strategy, steps_per_epoch=10)
  images = batch()
  iterator = iter(strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(images).repeat()))
  result = profile.profile_step(
      built.train_step,
      lambda: lambda: built.distributed_step(iterator)[
          "gen_total_loss"].numpy(),
      images, repeats=2)
  assert set(result.parts()) == {
      "generator_forward", "discriminator_forwards", "backward",
      "optimizer_updates", "everything_else"}
  assert result.step > 0 and result.generator_forward > 0
  assert sum(result.parts().values()) == pytest.approx(result.step)
  with pytest.raises(ValueError, match="a round at least"):
    profile.profile_step(built.train_step, lambda: None, images, 0)
  with pytest.raises(ValueError, match="alternating"):
    profile.profile_step(
        training.build(small_config(tmp_path, tmp_path / "run",
                                    update_order="simultaneous"),
                       strategy, 10).train_step, lambda: None, images, 1)


@pytest.mark.slow
def test_the_parts_are_timed_in_turn_before_the_whole_step_starts(
    tmp_path, monkeypatch):
  """The prefixes are timed one call each per round (a drift in the
  machine's speed reaches them all alike), and all before the whole step
  is made: what it starts (the input pipeline's threads filling their
  buffers) once ran while the first prefix was timed and made it slower
  than the next, longer one (a negative part)."""
  config = small_config(tmp_path, tmp_path / "run")
  built = training.build(config, tf.distribute.OneDeviceStrategy("/cpu:0"),
                         steps_per_epoch=10)
  calls = []
  cut = profile.step_prefixes

  def logged_prefixes(*args):
    return {name: (lambda name=name, f=f: calls.append(name) or f())
            for name, f in cut(*args).items()}

  monkeypatch.setattr(profile, "step_prefixes", logged_prefixes)

  def make_whole():
    calls.append("made")
    return lambda: calls.append("whole")

  profile.profile_step(built.train_step, make_whole, batch(), repeats=3)
  made = calls.index("made")
  timed = calls[made - 3 * len(profile.PREFIXES):made]
  assert timed == list(profile.PREFIXES) * 3
  assert set(calls[:made]) == set(profile.PREFIXES)
  assert set(calls[made + 1:]) == {"whole"}


def test_each_part_is_the_median_of_its_differences_within_a_round(
    monkeypatch):
  """On a scripted clock: three rounds of the seven prefixes' times, each
  round at its own speed; a part is the median over the rounds of its
  differences within a round (the differences of the prefixes' medians
  would give 1.0, 2.9 and 0.3 for the last three parts), and everything
  else is the whole step less the parts."""
  times = dict(zip(profile.PREFIXES, zip(
      (1.0, 2.5, 3.0, 3.5, 4.0, 5.0, 5.5),
      (3.0, 4.0, 5.0, 5.5, 6.0, 7.5, 8.0),
      (2.0, 2.2, 4.0, 4.1, 4.6, 6.0, 6.2))))
  # Each prefix's times go by its own count of calls, so this holds for
  # any order of the calls; the order is the test above's.
  clock = [0.0]
  calls = {name: 0 for name in times}

  def timed(name):
    calls[name] += 1
    if calls[name] > 2:  # Two warm-up calls first.
      clock[0] += times[name][calls[name] - 3]
    return tf.constant(0.0)

  def whole():
    clock[0] += 10.0

  monkeypatch.setattr(profile, "time",
                      types.SimpleNamespace(perf_counter=lambda: clock[0]))
  monkeypatch.setattr(profile, "step_prefixes", lambda *_: {
      name: (lambda name=name: timed(name)) for name in times})
  train_step = types.SimpleNamespace(
      config=config_lib.Config().replace(update_order="alternating"))
  found = profile.profile_step(train_step, lambda: whole, batch(), 3)
  assert found.parts() == pytest.approx(dict(
      generator_forward=2.0, discriminator_forwards=1.5, backward=2.5,
      optimizer_updates=1.0, everything_else=3.0))
  assert found.step == 10.0


@pytest.mark.parametrize("fused,compiled,precision", [
    (True, True, "bf16"), (True, False, "bf16"), (False, False, "none")])
@pytest.mark.slow
def test_op_times_sum_the_traced_ops_by_kind(fused, compiled, precision,
                                             tmp_path, monkeypatch):
  """A trace of whole steps, summed by kind of op: convolutions in each
  direction, activations (the output's tanh at least) and the optimizer
  always; batch norm exactly when it runs as the fused kernel (Keras's own
  is elementwise ops: "other"); XLA's programs exactly when the bfloat16
  activations run compiled."""
  # The compiled activations as on a machine without a GPU.
  monkeypatch.setattr(convolutions, "used_here", lambda: True)
  config = small_config(tmp_path, tmp_path / "run", fused_batch_norm=fused,
                        fused_updates=fused, compiled_activations=compiled,
                        mixed_precision=precision)
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  built = training.build(config, strategy, steps_per_epoch=10)
  iterator = iter(strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(batch()).repeat()))
  ops = profile.op_times(
      lambda: built.distributed_step(iterator)["gen_total_loss"].numpy(),
      2, str(tmp_path / "trace"))
  assert tuple(ops) == profile.OP_KINDS
  for kind in ("convolution_forward", "convolution_backward_data",
               "convolution_backward_weights", "activation", "optimizer",
               "other"):
    assert ops[kind] > 0, kind
  assert (ops["batch_norm"] > 0) == fused
  assert (ops["compiled"] > 0) == compiled


def test_ops_are_told_apart_by_type_and_direction():
  kinds = {
      ("generator/down1_conv/convolution", "_MklNativeConv2D"):
          "convolution_forward",
      ("generator/up2_conv/conv_transpose", "_MklNativeConv2DBackpropInput"):
          "convolution_forward",
      ("gradient_tape/generator/up2_conv/conv_transpose/Conv2D",
       "_MklNativeConv2D"): "convolution_backward_data",
      ("gradient_tape/generator/down1_conv/convolution/Conv2DBackpropInput",
       "Conv2DBackpropInput"): "convolution_backward_data",
      ("gradient_tape/discriminator/conv1/Conv2DBackpropFilter",
       "_MklNativeConv2DBackpropFilterWithBias"):
          "convolution_backward_weights",
      ("generator/down2_norm/FusedBatchNormV3", "_MklFusedBatchNormV3"):
          "batch_norm",
      ("gradient_tape/generator/down2_norm/FusedBatchNormGradV3",
       "FusedBatchNormGradV3"): "batch_norm",
      ("generator/down2_conv/Cast", "Cast"): "cast",
      ("fused_adam/update_3/ResourceApplyAdam", "ResourceApplyAdam"):
          "optimizer",
      ("adam/Mul_4", "Mul"): "optimizer",
      # kernels.convolutions' patch products, by their op names.
      ("generator/down5_conv/patches", "ExtractImagePatches"):
          "convolution_forward",
      ("generator/down5_conv/patch_forward", "_MklMatMul"):
          "convolution_forward",
      ("patch_weight_gradient_3", "_MklMatMul"):
          "convolution_backward_weights",
      ("gradient_patches_2", "ExtractImagePatches"):
          "convolution_backward_weights",
      ("patch_input_gradient_1", "_MklMatMul"): "convolution_backward_data",
      ("input_gradient_4", "_MklNativeConv2DBackpropInput"):
          "convolution_backward_data",
      ("input_gradient_4/UnsortedSegmentSum", "UnsortedSegmentSum"):
          "convolution_backward_data",
      ("input_gradient_2/Cast_1", "Cast"): "convolution_backward_data",
      ("generator/up3_conv/transpose_forward/products", "_MklMatMul"):
          "convolution_forward",
      ("generator/up3_conv/transpose_forward/Cast", "Cast"):
          "convolution_forward",
      ("generator/down2_lrelu/LeakyRelu", "LeakyRelu"): "activation",
      ("gradient_tape/generator/up1_relu/ReluGrad", "ReluGrad"):
          "activation",
      ("generator/generated_image/Tanh", "_MklTanh"): "activation",
      ("generator/up2_conv/MatMul", "MatMul"): "other",
      ("generator/up2_skip/concat", "ConcatV2"): "other"}
  assert {key: profile.op_kind(*key) for key in kinds} == kinds


def test_timed_calls_leave_the_warmup_untimed():
  """The one timing loop of the profile and the benchmark: `warmup` calls
  first, untimed, then one time per repeat."""
  calls = []

  def call():
    calls.append(len(calls))

  times = profile.call_seconds(call, repeats=3, warmup=2)
  assert len(calls) == 5 and len(times) == 3
  assert all(t >= 0 for t in times)
  assert profile.median_seconds(call, repeats=1, warmup=0) >= 0
  assert len(calls) == 6
