"""kernels.for_training: the one place the kernels reach a run's networks;
the networks `models` builds hold Keras's layers only."""

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
                        d_layers=2)
  assert all(getattr(config, option) for option in OPTIONS)
  for model in networks(config):
    assert models.flat_layers(model)
    assert not kernel_layers(model)


def test_the_kernel_options_are_their_own_group_and_the_packages():
  groups = config_lib.option_groups()
  assert list(groups) == [name for name, _ in config_lib.GROUPS]
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
def test_each_option_swaps_its_own_layers_and_keeps_the_weights(
    option, tmp_path):
  """One option on: exactly the layers of its Keras classes become their
  kernel classes, with the same config and weights, and the copy computes
  what the model computes; the other layers are the model's own objects
  (but for the inputs, which a copy makes anew)."""
  config = small_config(tmp_path, tmp_path / "run", norm="batch",
                        num_discriminators=2, d_layers=2,
                        **{**ALL_OFF, option: True})
  generator, discriminator = networks(config)
  trained = kernels.for_training(config, generator, discriminator,
                                 optimizers.Adam)
  swaps = {keras_class: kernel
           for name, keras_class, kernel in kernels.SWAPS if name == option}
  for model, copy in zip((generator, discriminator), trained[:2]):
    pairs = list(zip(models.flat_layers(model), models.flat_layers(copy)))
    assert len(pairs) == len(models.flat_layers(copy))
    for layer, copied in pairs:
      assert layer.name == copied.name
      if type(layer) in swaps:
        assert type(copied) is swaps[type(layer)]
        assert copied.get_config() == {**layer.get_config(),
                                       **_setting(copied)}
        for a, b in zip(layer.weights, copied.weights):
          np.testing.assert_array_equal(a.numpy(), b.numpy())
      elif not isinstance(layer, keras.layers.InputLayer):
        assert copied is layer
  if swaps:
    assert any(type(layer) in swaps.values()
               for model in trained[:2]
               for layer in models.flat_layers(model))
  image = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3))
  np.testing.assert_array_equal(generator(image).numpy(),
                                trained[0](image).numpy())
  adam = trained[2]
  assert issubclass(adam, optimizers.Adam)
  assert issubclass(adam, kernels.FusedUpdates) == (option == "fused_updates")


def _setting(layer):
  """The kernel layer's own config entry (its on/off setting)."""
  return {name: getattr(layer, name) for name in ("fused", "matmul",
                                                  "compiled")
          if hasattr(layer, name)}


def test_a_run_trains_on_the_kernels_and_checkpoints_kerass_layers(
    tmp_path):
  """A run's state trains on the kernels; its checkpoint restores, every
  variable matched, into the plain networks an export builds, and back."""
  config = small_config(tmp_path, tmp_path / "run", norm="batch")
  strategy = training.make_strategy("one_device")
  state = training.build(config, strategy, steps_per_epoch=10).state
  assert kernel_layers(state.generator)
  assert kernel_layers(state.discriminator)
  assert isinstance(state.generator_optimizer, kernels.FusedUpdates)
  for variable in state.generator.weights:
    variable.assign(variable + 0.5)
  path = state.checkpoint().write(str(tmp_path / "ckpt"))
  plain = models.build_generator(config)
  assert not kernel_layers(plain)
  tf.train.Checkpoint(generator=plain).read(path).expect_partial() \
      .assert_existing_objects_matched()
  for a, b in zip(plain.weights, state.generator.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  back = tf.train.Checkpoint(generator=plain).write(str(tmp_path / "plain"))
  fresh = training.build(config, strategy, steps_per_epoch=10).state
  tf.train.Checkpoint(generator=fresh.generator).read(back) \
      .assert_consumed()
  for a, b in zip(fresh.generator.weights, plain.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_fused_adam_refuses_an_optimizer_without_the_terms():
  with pytest.raises(TypeError, match="Adam gives no epsilon-hat terms"):
    kernels.fused_adam(keras.optimizers.Adam)
  assert kernels.fused_adam(optimizers.Adam) is kernels.fused_adam(
      optimizers.Adam)
