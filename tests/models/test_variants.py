"""Every variant the studies compare builds, trains, and is checked."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import small_config
from pix2pix_tf import config as config_lib
from pix2pix_tf.training import losses
from pix2pix_tf import training

VARIANTS = {
    "paper": {},
    "pixel_discriminator": dict(discriminator="pixel"),
    "patchgan_1_layer": dict(d_layers=1),
    "patchgan_2_layers": dict(d_layers=2),
    "multiscale_2": dict(num_discriminators=2, d_layers=2),
    "receptive_field_pair": dict(d_receptive_fields="16,34"),
    "unconditional_gan": dict(conditional_discriminator=False),
    "lsgan": dict(gan_mode="lsgan"),
    "hinge": dict(gan_mode="hinge"),
    "wgangp": dict(gan_mode="wgangp", norm="instance"),
    "l1_only": dict(gan_mode="none"),
    "l2_only": dict(gan_mode="none", lambda_l1=0.0, lambda_l2=100.0),
    "cgan_only": dict(lambda_l1=0.0),
    "cgan_l1_l2": dict(lambda_l2=100.0),
    "feature_matching": dict(lambda_feature_matching=10.0,
                             num_discriminators=2, d_layers=2),
    "instance_norm": dict(norm="instance"),
    "no_norm": dict(norm="none"),
    "sync_batch_norm": dict(norm="sync_batch"),
    "resnet_6blocks": dict(generator="resnet_6blocks", ngf=4),
    "unet_depth_3": dict(unet_depth=3),
    "step_lr": dict(lr_policy="step", lr_decay_epochs=1),
    "cosine_lr": dict(lr_policy="cosine"),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.slow
def test_variant_builds_and_trains(tmp_path, name):
  config = small_config(tmp_path, tmp_path, batch_size=2,
                        **VARIANTS[name])
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  keras.utils.set_random_seed(0)
  built = training.build(config, strategy, 4, total_steps=8)
  state, step = built.state, built.distributed_step
  rng = np.random.RandomState(0)
  batch = tuple(rng.uniform(-1, 1, (2, 2, 32, 32, 3)).astype(np.float32))
  iterator = iter(strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(batch).repeat()))
  before = [w.numpy().copy() for w in state.generator.trainable_weights]
  disc_before = [w.numpy().copy()
                 for w in state.discriminator.trainable_weights]
  metrics = {k: float(v) for k, v in step(iterator).items()}
  assert set(metrics) == set(built.train_step.metric_names)
  assert all(np.isfinite(v) for v in metrics.values()), metrics
  changed = lambda old, new: any(  # noqa: E731
      not np.array_equal(a, b.numpy()) for a, b in zip(old, new))
  assert changed(before, state.generator.trainable_weights)
  # D trains exactly when there is a GAN loss.
  assert changed(disc_before, state.discriminator.trainable_weights) == (
      config.objective.gan_mode != "none")


def test_unconditional_and_pixel_terms_are_reported():
  config = small_config(".", ".", gan_mode="wgangp", lambda_l2=1.0,
                        lambda_feature_matching=1.0)
  assert losses.build_objective(config).metric_names == (
      "gen_total_loss", "gen_gan_loss", "gen_l1_loss", "gen_l2_loss",
      "gen_feature_matching_loss", "disc_loss", "disc_real_loss",
      "disc_generated_loss", "disc_gradient_penalty")
  assert losses.build_objective(
      small_config(".", ".", gan_mode="none")).metric_names == (
      "gen_total_loss", "gen_l1_loss")


@pytest.mark.parametrize("overrides, message", [
    (dict(gan_mode="none", lambda_l1=0.0), "nothing to optimise"),
    (dict(gan_mode="none", lambda_feature_matching=1.0),
     "needs a discriminator"),
    (dict(d_layers=4), "--d_layers=4 is too deep for --crop_size=32"),
    (dict(num_discriminators=3), "at scale 1/2 of --num_discriminators=3"),
    (dict(d_receptive_fields="16,286"),
     "--d_receptive_fields=286 is too deep"),
    (dict(d_receptive_fields="16,50"), "receptive fields available are"),
    (dict(d_receptive_fields="16,big"), "not a comma-separated list"),
    (dict(d_receptive_fields="16", num_discriminators=2),
     "give one of them"),
    (dict(unet_depth=6), "not a multiple of 64"),
    (dict(generator="unet_256"), "not a multiple of 256"),
    (dict(lambda_l2=-1.0), "--lambda_l2=-1.0 must not be negative"),
])
def test_invalid_combinations_are_rejected_before_building(overrides,
                                                           message):
  with pytest.raises(config_lib.ConfigError, match=message):
    small_config(".", ".", **overrides)


def test_learning_rate_policies():
  config = small_config(".", ".", epochs=2, epochs_decay=2, lr_decay_epochs=1)
  values = {}
  for policy in config_lib.LR_POLICIES:
    schedule = training.learning_rate_schedule(
        small_config(".", ".", epochs=2, epochs_decay=2, lr_decay_epochs=1,
                     lr_policy=policy), steps_per_epoch=10, total_steps=40)
    values[policy] = [float(schedule(s)) for s in (0, 10, 20, 30, 40)]
  lr = config.optimisation.learning_rate
  assert values["constant"] == pytest.approx([lr] * 5)
  # The reference's: lower after each decay epoch, by 1/3 for 2 of them;
  # past the schedule's end, 0.
  assert values["linear"] == pytest.approx(
      [lr, lr, lr * 2 / 3, lr / 3, 0.0])
  assert values["step"] == pytest.approx([lr, lr / 10, lr / 100, lr / 1000,
                                          lr / 10000])
  assert values["cosine"] == pytest.approx(
      [lr * 0.5 * (1 + np.cos(np.pi * s / 40)) for s in (0, 10, 20, 30, 40)],
      abs=1e-9)


def outputs(*logits):
  return [[tf.constant(l, tf.float32)] for l in logits]


def test_gan_losses_on_known_logits():
  real = tf.constant([[[[2.0]]], [[[-1.0]]]])  # A batch of two 1x1 maps.
  assert losses.gan_loss(real, True, "lsgan").numpy() == pytest.approx(
      [1.0, 4.0])
  assert losses.gan_loss(real, False, "lsgan").numpy() == pytest.approx(
      [4.0, 1.0])
  assert losses.gan_loss(real, True, "hinge").numpy() == pytest.approx(
      [0.0, 2.0])
  assert losses.gan_loss(real, False, "hinge").numpy() == pytest.approx(
      [3.0, 0.0])
  assert losses.gan_loss(real, True, "hinge",
                         for_discriminator=False).numpy() == pytest.approx(
                             [-2.0, 1.0])
  assert losses.gan_loss(real, True, "wgangp").numpy() == pytest.approx(
      [-2.0, 1.0])
  assert losses.gan_loss(real, True, "vanilla").numpy() == pytest.approx(
      np.log1p(np.exp(-np.array([2.0, -1.0]))))


def views(generated, target, real, fake):
  """Views whose D outputs are the given ones."""
  given = {"real": real, "fake": fake}
  target = tf.zeros([1]) if target is None else target
  generated = tf.ones([1]) if generated is None else generated
  return losses.Views(None, target, generated,
                      discriminate=lambda _, candidate: given[
                          "real" if candidate is target else "fake"])


def test_losses_sum_over_discriminators_and_halve_d():
  d_real = outputs([[[[1.0]]]], [[[[3.0]]]])
  d_fake = outputs([[[[0.0]]]], [[[[0.5]]]])
  config = small_config(".", ".", gan_mode="lsgan")
  parts = losses.weighted_sum(
      losses.build_objective(config).discriminator,
      views(None, None, d_real, d_fake), "disc_loss")
  assert parts["disc_real_loss"].numpy() == pytest.approx([0.0 + 4.0])
  assert parts["disc_generated_loss"].numpy() == pytest.approx([0.0 + 0.25])
  assert parts["disc_loss"].numpy() == pytest.approx([0.5 * 4.25])


def test_l1_l2_and_feature_matching_terms():
  target = tf.zeros([1, 2, 2, 1])
  generated = tf.constant([[[[1.0], [-1.0]], [[0.5], [0.0]]]])
  real = [[tf.zeros([1, 1, 1, 1]), tf.ones([1, 2, 2, 1])]]
  fake = [[tf.zeros([1, 1, 1, 1]), tf.fill([1, 2, 2, 1], 3.0)]]
  config = small_config(".", ".", gan_mode="lsgan", lambda_l1=10.0,
                        lambda_l2=100.0, lambda_feature_matching=2.0)
  parts = losses.weighted_sum(losses.build_objective(config).generator,
                              views(generated, target, real, fake),
                              "gen_total_loss")
  assert parts["gen_l1_loss"].numpy() == pytest.approx([2.5 / 4])
  assert parts["gen_l2_loss"].numpy() == pytest.approx([2.25 / 4])
  assert parts["gen_feature_matching_loss"].numpy() == pytest.approx([2.0])
  assert parts["gen_gan_loss"].numpy() == pytest.approx([1.0])
  assert parts["gen_total_loss"].numpy() == pytest.approx(
      [1.0 + 10 * 2.5 / 4 + 100 * 2.25 / 4 + 2 * 2.0])


def test_gradient_penalty_is_zero_at_unit_norm():
  unit = tf.reshape(tf.constant([0.6, 0.8]), [1, 1, 2, 1])
  assert losses.gradient_penalty(unit).numpy() == pytest.approx([0.0],
                                                                abs=1e-6)
  double = 2 * unit
  assert losses.gradient_penalty(double).numpy() == pytest.approx([1.0])
