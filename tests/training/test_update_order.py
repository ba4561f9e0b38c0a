"""The update order: one D step, then one G step against the updated D, as
the paper and the reference; and the reference's dropout placement."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import small_config
from pix2pix_tf import kernels
from pix2pix_tf import models
from pix2pix_tf import outputs
from pix2pix_tf import training
from pix2pix_tf.training import optimizers


@pytest.fixture(scope="module")
def two_replicas():
  return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def random_batch():
  """An (input, target) batch of two 32x32 images, values in [-1, 1]."""
  rng = np.random.RandomState(0)
  return tuple(tf.constant(rng.uniform(-1, 1, (2, 32, 32, 3)), tf.float32)
               for _ in range(2))


def one_step(strategy, config, batch, num_steps=1):
  """`num_steps` training steps in one call, with plain SGD at learning rate
  1, so that each network's weight change is exactly minus its gradient.
  Returns the initial and the final weights of G and D."""
  keras.utils.set_random_seed(0)
  with strategy.scope():
    state = training.create_state(config, 100, strategy)
    state.generator_optimizer = keras.optimizers.SGD(1.0)
    state.discriminator_optimizer = keras.optimizers.SGD(1.0)
    state.generator_optimizer.build(state.generator.trainable_variables)
    state.discriminator_optimizer.build(
        state.discriminator.trainable_variables)
  before = ([v.numpy().copy() for v in state.generator.trainable_variables],
            [v.numpy().copy() for v in
             state.discriminator.trainable_variables])
  step = training.make_distributed_step(
      strategy, training.make_train_step(state, config, 2), state.step)
  dataset = tf.data.Dataset.from_tensors(batch).repeat()
  step(iter(strategy.experimental_distribute_dataset(dataset)),
       tf.constant(num_steps))
  after = ([v.numpy() for v in state.generator.trainable_variables],
           [v.numpy() for v in state.discriminator.trainable_variables])
  return before, after


def bce(logits, label):
  """Binary cross-entropy of sigmoid(logits) against `label`, averaged over
  the batch and the map."""
  logits = tf.cast(logits, tf.float32)
  return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
      labels=tf.fill(tf.shape(logits), label), logits=logits))


def gradients_by_hand(config, weights, batch):
  """G's and D's gradients of the paper's update, computed step by step on
  fresh copies of the networks: D's gradient on the real and the generated
  pair, D updated by it (SGD, rate 1), and G's gradient against the updated
  D and against the old one."""
  input_image, target_image = batch
  with training.dtype_policy(config.run.mixed_precision):
    # On the kernels the step trains on: the same arithmetic, so that
    # bfloat16 rounds alike on both sides.
    generator, discriminator, _ = kernels.for_training(
        config, models.build_generator(config),
        models.build_discriminators(config), optimizers.Adam)
  generator.set_weights(weights[0])
  discriminator.set_weights(weights[1])
  generated_image = generator(input_image, training=True)
  with tf.GradientTape() as tape:
    # The paper's D loss, halved: -log D(x, y) - log(1 - D(x, G(x))).
    real = discriminator([input_image, target_image], training=True)[0][0]
    fake = discriminator([input_image, generated_image], training=True)[0][0]
    disc_loss = 0.5 * (bce(real, 1.0) + bce(fake, 0.0))
  disc_gradients = tape.gradient(disc_loss, discriminator.trainable_variables)

  def generator_gradients(disc_weights):
    discriminator.set_weights(disc_weights)
    with tf.GradientTape() as tape:
      generated_image = generator(input_image, training=True)
      fake = discriminator([input_image, generated_image],
                           training=True)[0][0]
      # -log D(x, G(x)) + lambda * |y - G(x)|.
      loss = bce(fake, 1.0) + config.objective.lambda_l1 * tf.reduce_mean(
          tf.abs(target_image - tf.cast(generated_image, tf.float32)))
    return [g.numpy() for g in
            tape.gradient(loss, generator.trainable_variables)]

  updated = [w - g.numpy() for w, g in zip(weights[1], disc_gradients)]
  return ([g.numpy() for g in disc_gradients],
          generator_gradients(updated), generator_gradients(weights[1]))


def scale(gradients):
  return max(np.abs(g).max() for g in gradients)


def assert_close(got, expected):
  # Relative to the largest gradient: the biases that instance norm cancels
  # have gradients of rounding noise.
  for a, b in zip(got, expected):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * scale(expected))


def differ(got, expected):
  """By far more than the tolerance of `assert_close`."""
  return any(np.abs(a - b).max() > 1e-2 * scale(expected)
             for a, b in zip(got, expected))


# Instance norm and no dropout: the result does not depend on how the batch
# is split across replicas, and the step is deterministic.
@pytest.mark.parametrize("replicas", [1, 2])
def test_the_generator_steps_against_the_updated_discriminator(
    tmp_path, replicas, two_replicas):
  # A small L1 weight, so that the adversarial term shows in G's gradient.
  config = small_config(tmp_path, tmp_path, norm="instance", dropout=0.0,
                        lambda_l1=1.0)
  assert config.objective.update_order == "alternating"  # The default.
  strategy = (two_replicas if replicas == 2 else
              tf.distribute.OneDeviceStrategy("/cpu:0"))
  batch = random_batch()
  before, after = one_step(strategy, config, batch)
  gen_step = [b - a for b, a in zip(before[0], after[0])]
  disc_step = [b - a for b, a in zip(before[1], after[1])]
  disc_by_hand, gen_updated_d, gen_old_d = gradients_by_hand(
      config, before, batch)
  assert_close(disc_step, disc_by_hand)
  assert_close(gen_step, gen_updated_d)
  # The two orders really differ here, so the check above can fail.
  assert differ(gen_updated_d, gen_old_d)


def relative_error(got, expected):
  return (np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(got, expected))) /
          np.sqrt(sum(np.sum(b ** 2) for b in expected)))


@pytest.mark.parametrize("setting", [
    dict(jit_compile=True), dict(mixed_precision="bf16")])
@pytest.mark.slow
def test_the_order_holds_under_xla_and_bfloat16(tmp_path, setting):
  config = small_config(tmp_path, tmp_path, norm="instance", dropout=0.0,
                        lambda_l1=1.0, **setting)
  batch = random_batch()
  before, after = one_step(tf.distribute.OneDeviceStrategy("/cpu:0"),
                           config, batch)
  gen_step = [b - a for b, a in zip(before[0], after[0])]
  _, gen_updated_d, gen_old_d = gradients_by_hand(config, before, batch)
  # bfloat16 rounds each product to 8 bits of mantissa: rather than to a
  # tolerance, G's step is held to be far nearer the updated-D gradient
  # than the old-D one.
  gap = relative_error(gen_updated_d, gen_old_d)
  assert gap > 0.05
  assert relative_error(gen_step, gen_updated_d) < gap / 5
  if "jit_compile" in setting:
    assert_close(gen_step, gen_updated_d)


@pytest.mark.slow
def test_several_steps_per_call_are_each_the_papers_update(tmp_path):
  """--steps_per_execution=2: each step inside the one call is a D step
  and then a G step against the updated D, as two steps by hand."""
  config = small_config(tmp_path, tmp_path, norm="instance", dropout=0.0,
                        lambda_l1=1.0)
  batch = random_batch()
  before, after = one_step(tf.distribute.OneDeviceStrategy("/cpu:0"),
                           config, batch, num_steps=2)
  weights = before
  for _ in range(2):
    disc_gradients, gen_gradients, _ = gradients_by_hand(config, weights,
                                                         batch)
    weights = ([w - g for w, g in zip(weights[0], gen_gradients)],
               [w - g for w, g in zip(weights[1], disc_gradients)])
  for got, expected, start in zip(after, weights, before):
    assert_close([a - s for a, s in zip(got, start)],
                 [e - s for e, s in zip(expected, start)])


def test_the_simultaneous_order_steps_against_the_old_discriminator(
    tmp_path):
  config = small_config(tmp_path, tmp_path, norm="instance", dropout=0.0,
                        lambda_l1=1.0, update_order="simultaneous")
  batch = random_batch()
  before, after = one_step(tf.distribute.OneDeviceStrategy("/cpu:0"),
                           config, batch)
  gen_step = [b - a for b, a in zip(before[0], after[0])]
  _, _, gen_old_d = gradients_by_hand(config, before, batch)
  assert_close(gen_step, gen_old_d)


def dropout_blocks(config):
  generator = models.build_generator(config)
  return sorted(layer.name for layer in generator.layers
                if isinstance(layer, keras.layers.Dropout))


def test_dropout_sits_where_the_paper_or_the_reference_puts_it(tmp_path):
  at_256 = dict(generator="unet_256", crop_size=256, load_size=286, ngf=4)
  paper = small_config(tmp_path, tmp_path, **at_256)
  reference = small_config(tmp_path, tmp_path, **at_256,
                           dropout_placement="reference")
  # unet_256's decoder blocks from the innermost out: up7, up6, ..., up1.
  assert dropout_blocks(paper) == ["up5_dropout", "up6_dropout",
                                   "up7_dropout"]
  assert dropout_blocks(reference) == ["up4_dropout", "up5_dropout",
                                       "up6_dropout"]
  # unet_128: the reference has two (its depth - 5 middle blocks).
  assert dropout_blocks(small_config(
      tmp_path, tmp_path, generator="unet_128", crop_size=128, load_size=143,
      ngf=4, dropout_placement="reference")) == ["up4_dropout", "up5_dropout"]
  # The same weights either way.
  assert (models.build_generator(paper).count_params() ==
          models.build_generator(reference).count_params())


@pytest.mark.slow
def test_resuming_with_other_model_flags_is_refused_before_writing(tmp_path):
  from pix2pix_tf import config as config_lib
  from pix2pix_tf.data import demo
  data_dir = demo.write_dataset(str(tmp_path / "data"), 4, 0, 32)
  config = small_config(data_dir, tmp_path / "run", max_steps=2)
  training.train_and_evaluate(config)
  run_files = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*")
               if p.is_file()}
  changed = small_config(data_dir, tmp_path / "run", max_steps=4, ndf=16,
                         dropout_placement="reference")
  with pytest.raises(config_lib.ConfigError) as error:
    training.train_and_evaluate(changed)
  message = str(error.value)
  assert "--ndf: 8 -> 16" in message
  assert "--dropout_placement: paper -> reference" in message
  assert "--force_config" in message
  # Nothing was written: config.json and flags.txt still describe the run.
  assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*")
          if p.is_file()} == run_files
  # --force_config goes on with flags whose checkpoint still fits.
  forced = small_config(data_dir, tmp_path / "run", max_steps=4,
                        dropout=0.3, force_config=True)
  assert training.train_and_evaluate(forced)["step"] == 4
  recorded = config_lib.Config.from_json(
      (tmp_path / "run" / "config.json").read_text())
  assert recorded.model.dropout == 0.3
  assert not recorded.outputs.force_config
  run_files = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*")
               if p.is_file()}
  # A checkpoint that does not fit stops with a sentence, not a traceback,
  # and again writes nothing.
  misfit = small_config(data_dir, tmp_path / "run", max_steps=6, ndf=16,
                        dropout=0.3, force_config=True)
  with pytest.raises(config_lib.ConfigError, match="does not fit"):
    training.train_and_evaluate(misfit)
  assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*")
          if p.is_file()} == run_files


def test_run_config_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
  """config.json and flags.txt are written under a temporary name and
  renamed: a failure (or kill) mid-write leaves the previous file intact."""
  config = small_config(str(tmp_path / "data"), tmp_path / "run")
  run = outputs.Folder(str(tmp_path / "run"), "model_dir")
  training.write_run_config(config, run)
  before = (tmp_path / "run" / "config.json").read_text()
  real_replace = os.replace

  def failing_replace(source, target):
    if target.endswith("config.json"):
      raise OSError("disk full")
    real_replace(source, target)

  monkeypatch.setattr(os, "replace", failing_replace)
  with pytest.raises(OSError, match="disk full"):
    training.write_run_config(
        config.replace(crop_size=64, load_size=72), run)
  assert (tmp_path / "run" / "config.json").read_text() == before
  assert sorted(os.listdir(tmp_path / "run")) == [
      outputs.MANIFEST, "config.json", "flags.txt"]
