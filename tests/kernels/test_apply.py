"""kernels.for_training: the one place the kernels reach a run's networks;
the networks `models` builds hold Keras's layers only."""

import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import small_config
from pix2pix_tf import architectures
from pix2pix_tf import config as config_lib
from pix2pix_tf import kernels
from pix2pix_tf import models
from pix2pix_tf import training
from pix2pix_tf.training import optimizers
from pix2pix_tf.training import run as run_lib

OPTIONS = config_lib.KERNEL_OPTIONS
ALL_OFF = {option: False for option in OPTIONS}
KERNEL_CLASSES = tuple(kernel for _, _, kernel in kernels.SWAPS)


def kernel_layers(model):
  return [layer for layer in models.flat_layers(model)
          if isinstance(layer, KERNEL_CLASSES)]


def networks(config):
  return models.build_generator(config), models.build_discriminators(config)


@pytest.mark.parametrize("generator", sorted(architectures.GENERATORS))
def test_the_models_hold_kerass_layers_only(generator, tmp_path):
  """Every generator of the table, and the discriminators, built with every
  kernel option on: no layer of the kernels package in them."""
  depth = architectures.GENERATORS[generator].depth or 5
  size = max(32, 2 ** depth)
  config = small_config(tmp_path, tmp_path / "run", generator=generator,
                        load_size=size, crop_size=size, num_discriminators=2,
                        d_layers=2, **dict.fromkeys(OPTIONS, True))
  for model in networks(config):
    assert models.flat_layers(model)
    assert not kernel_layers(model)


def test_the_kernel_options_are_their_own_group_and_the_packages():
  groups = config_lib.option_groups()
  assert list(groups) == list(config_lib.GROUPS)
  assert OPTIONS == groups["kernels"]
  assert set(OPTIONS) == {option for option, _, _ in kernels.SWAPS} | {
      "fused_updates"}
  assert not set(OPTIONS) & set(groups["model"] + groups["objective"] +
                                groups["optimisation"])


def test_all_options_off_changes_nothing(tmp_path):
  config = small_config(tmp_path, tmp_path / "run", **ALL_OFF)
  generator, discriminator = networks(config)
  assert kernels.for_training(config, generator, discriminator,
                              optimizers.Adam) == (
                                  generator, discriminator, optimizers.Adam)


@pytest.mark.parametrize("option", OPTIONS)
def test_each_option_swaps_its_own_layers_and_keeps_every_value(
    option, tmp_path):
  """One option on: exactly the layers of its Keras classes become their
  kernel classes, with the same config; every layer is a copy holding the
  model's values (weights, statistics, dropout's random state), and the
  copy trains as the model does."""
  config = small_config(tmp_path, tmp_path / "run", norm="batch",
                        num_discriminators=2, d_layers=2, dropout=0.5,
                        **{**ALL_OFF, option: True})
  generator, discriminator = networks(config)
  trained = kernels.for_training(config, generator, discriminator,
                                 optimizers.Adam)
  swaps = {keras_class: kernel
           for name, keras_class, kernel in kernels.SWAPS if name == option}
  for model, copy in zip((generator, discriminator), trained[:2]):
    originals, copies = models.flat_layers(model), models.flat_layers(copy)
    assert len(originals) == len(copies)
    for layer, copied in zip(originals, copies):
      assert layer.name == copied.name
      # With no layer to swap (--fused_updates alone), the model itself.
      assert (copied is not layer) == bool(swaps)
      assert type(copied) is swaps.get(type(layer), type(layer))
      assert copied.get_config() == {**layer.get_config(),
                                     **_setting(copied)}
      assert len(layer.variables) == len(copied.variables)
      for a, b in zip(layer.variables, copied.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert [v.path for v in model.trainable_variables] == [
        v.path for v in copy.trainable_variables]
  if swaps:
    assert any(type(layer) in swaps.values()
               for model in trained[:2]
               for layer in models.flat_layers(model))
    # (Otherwise the same objects, compared above.)
    rng = np.random.default_rng(0)
    image, target = (rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
                     for _ in range(2))
    # Training mode, where the kernels run; dropout draws alike from the
    # copied random states.
    np.testing.assert_allclose(generator(image, training=True).numpy(),
                               trained[0](image, training=True).numpy(),
                               rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(discriminator([image, target], training=True),
                            trained[1]([image, target], training=True)):
      np.testing.assert_allclose(ours[0].numpy(), theirs[0].numpy(),
                                 rtol=1e-5, atol=1e-5)
  adam = trained[2]
  assert issubclass(adam, optimizers.Adam)
  assert issubclass(adam, kernels.FusedUpdates) == (option == "fused_updates")


def _setting(layer):
  """The kernel layer's own config entry (its on/off setting)."""
  return {name: getattr(layer, name) for name in ("fused", "matmul",
                                                  "compiled")
          if hasattr(layer, name)}


def test_the_copy_keeps_nothing_of_the_model_alive(tmp_path):
  """The networks a run trains hold no reference to the ones built before
  the kernels were applied: their weights are freed."""
  config = small_config(tmp_path, tmp_path / "run", norm="batch",
                        **dict.fromkeys(OPTIONS, True))
  generator, discriminator = networks(config)
  originals = [weakref.ref(layer) for model in (generator, discriminator)
               for layer in models.flat_layers(model)]
  trained = kernels.for_training(config, generator, discriminator,
                                 optimizers.Adam)
  del generator, discriminator
  gc.collect()
  assert all(ref() is None for ref in originals)
  assert kernel_layers(trained[0]) and kernel_layers(trained[1])


def test_a_run_trains_on_the_kernels_and_checkpoints_kerass_layers(
    tmp_path):
  """A run's state trains on the kernels; its checkpoint restores, every
  weight of G and D matched, into the plain networks an export builds (D
  as a run resumes it, from its optimizer's list), and G back into a run's
  state."""
  config = small_config(tmp_path, tmp_path / "run", norm="batch",
                        num_discriminators=2, d_layers=2,
                        **dict.fromkeys(OPTIONS, True))
  strategy = training.make_strategy("one_device")
  state = training.build(config, strategy, steps_per_epoch=10).state
  assert kernel_layers(state.generator)
  assert kernel_layers(state.discriminator)
  assert isinstance(state.generator_optimizer, kernels.FusedUpdates)
  for variable in state.generator.weights + state.discriminator.weights:
    variable.assign(variable + 0.5)
  path = state.checkpoint().write(str(tmp_path / "ckpt"))
  plain = networks(config)
  assert not kernel_layers(plain[0]) and not kernel_layers(plain[1])
  tf.train.Checkpoint(generator=plain[0]).read(
      path).expect_partial().assert_existing_objects_matched()
  assert run_lib.restore_discriminator(path, plain[1])
  for model, trained in ((plain[0].weights, state.generator.weights),
                         (plain[1].trainable_variables,
                          state.discriminator.trainable_variables)):
    assert len(model) == len(trained)
    for a, b in zip(model, trained):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
  back = tf.train.Checkpoint(generator=plain[0]).write(
      str(tmp_path / "plain"))
  fresh = training.build(config, strategy, steps_per_epoch=10).state
  tf.train.Checkpoint(generator=fresh.generator).read(back).assert_consumed()
  for a, b in zip(fresh.generator.weights, plain[0].weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("kind", sorted(kernels.machines.KINDS))
def test_the_segmenter_trains_on_the_machines_kernels(kind, monkeypatch):
  """The segmenter's U-Net takes the layer kernels a run takes on each kind
  of machine."""
  from pix2pix_tf.evaluation import segmenter
  monkeypatch.setattr(kernels.machines, "this_machine", lambda: kind)
  model = segmenter.build_segmenter(5, 3, 8)
  found = {type(layer) for layer in kernel_layers(model)}
  assert found == {kernel for option, _, kernel in kernels.SWAPS
                   if option in kernels.machines.KINDS[kind].kernels}
  monkeypatch.setitem(kernels.machines.KINDS, kind, kernels.machines.Kind(
      "test", "none", frozenset({"fused_batch_norm"})))
  found = {type(layer) for layer in kernel_layers(
      segmenter.build_segmenter(5, 3, 8))}
  assert found == {kernels.FusedBatchNormalization}


def test_fused_adam_refuses_an_optimizer_without_the_terms():
  with pytest.raises(TypeError, match="Adam gives no epsilon-hat terms"):
    kernels.fused_adam(keras.optimizers.Adam)
  assert kernels.fused_adam(optimizers.Adam) is kernels.fused_adam(
      optimizers.Adam)


def test_a_nested_model_is_refused_not_copied_without_its_kernels():
  inner = keras.Sequential([keras.Input((8, 8, 3)),
                            keras.layers.Conv2D(4, 4, strides=2)])
  image = keras.Input((8, 8, 3))
  outer = keras.Model(image, keras.layers.ReLU()(inner(image)))
  with pytest.raises(TypeError, match="nested model"):
    kernels.with_kernels(outer, kernels.LAYER_OPTIONS)
