"""pix2pix_tf.Pix2Pix: Keras's fit runs the train command's own update, with
Keras's callbacks, and ends where the train command ends."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import pix2pix_tf
from conftest import ENV, small_config
from pix2pix_tf.data import demo
from pix2pix_tf.training import run as run_lib

# Builds the model from a flagfile's options, fits it with Keras's
# TensorBoard and ModelCheckpoint callbacks, and saves every weight by path.
FIT = textwrap.dedent("""
    import sys
    from pix2pix_tf import training
    training.make_deterministic()  # As train --deterministic, first.
    import keras, numpy as np
    import pix2pix_tf
    flagfile, steps, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    config = pix2pix_tf.Config().with_flags(open(flagfile).read())
    model = pix2pix_tf.Pix2Pix(config)
    model.compile()
    model.fit(model.dataset(), epochs=1, steps_per_epoch=steps, verbose=0,
              callbacks=[keras.callbacks.TensorBoard(out + "/logs"),
                         keras.callbacks.ModelCheckpoint(out + "/model.keras")])
    np.savez(out + "/weights.npz", step=model.state.step.numpy(), **{
        w.path: w.numpy() for w in model.generator.weights +
        model.discriminator.trainable_weights})
""")


def weights_by_path(model):
  """G's weights and statistics, D's weights (D's moving statistics are
  not checkpointed: D always judges with batch statistics)."""
  return {w.path: w.numpy() for w in model.generator.weights +
          model.discriminator.trainable_weights}


@pytest.mark.slow
def test_fit_ends_with_the_weights_of_the_train_command(tmp_path):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 8, 2, 32)
  config = small_config(data_dir, tmp_path / "run", max_steps=5, seed=3,
                        deterministic=True, strategy="mirrored",
                        label_palette="")
  flagfile = tmp_path / "run.flags"
  flagfile.write_text(run_lib.flagfile_text(config))
  for args in (["-m", "pix2pix_tf.train", f"--flagfile={flagfile}"],
               ["-c", FIT, str(flagfile), "5", str(tmp_path / "fit")]):
    os.makedirs(tmp_path / "fit", exist_ok=True)
    done = subprocess.run([sys.executable, *args], capture_output=True,
                          text=True, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
  fitted = dict(np.load(tmp_path / "fit" / "weights.npz"))
  assert int(fitted.pop("step")) == 5
  model = pix2pix_tf.Pix2Pix(config)
  model.state.checkpoint().read(tf.train.latest_checkpoint(
      tmp_path / "run" / "checkpoints")).assert_existing_objects_matched()
  trained = weights_by_path(model)
  assert trained.keys() == fitted.keys() and len(trained) > 50
  initial = weights_by_path(pix2pix_tf.Pix2Pix(config))
  assert any(not np.array_equal(initial[k], trained[k]) for k in trained)
  for path in trained:
    np.testing.assert_array_equal(fitted[path], trained[path], err_msg=path)
  # Keras's callbacks wrote the losses the step returns, and a .keras file
  # that loads back into the fitted model.
  from conftest import scalar_tags
  tags = scalar_tags(tmp_path / "fit" / "logs" / "train")
  assert {"epoch_gen_l1_loss", "epoch_disc_loss"} <= tags.keys(), tags.keys()
  loaded = keras.saving.load_model(tmp_path / "fit" / "model.keras")
  assert isinstance(loaded, pix2pix_tf.Pix2Pix)
  for path, value in weights_by_path(loaded).items():
    np.testing.assert_array_equal(value, fitted[path], err_msg=path)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  root = tmp_path_factory.mktemp("model")
  return pix2pix_tf.Pix2Pix(small_config(root / "no data", root / "run"))


def test_calling_the_model_runs_the_generator(model):
  images = tf.random.stateless_uniform([2, 32, 32, 3], (1, 2), -1, 1)
  np.testing.assert_array_equal(model(images),
                                model.generator(images, training=False))


@pytest.mark.parametrize("argument", ["optimizer", "loss"])
def test_compile_refuses_what_the_config_decides(model, argument):
  with pytest.raises(ValueError, match=f"takes no {argument}: .*config"):
    model.compile(**{argument: "mae" if argument == "loss" else "adam"})


def test_options_replace_the_configs(model):
  replaced = pix2pix_tf.Pix2Pix(model.config, steps_per_epoch=7, ngf=4)
  assert (replaced.config.model.ngf, replaced.steps_per_epoch) == (4, 7)
  assert replaced.generator.count_params() < model.generator.count_params()
  assert replaced.get_config()["config"]["ngf"] == 4


@pytest.mark.slow
def test_validation_and_evaluate_report_the_losses_without_training(
    tiny_dataset, tmp_path):
  config = small_config(tiny_dataset, tmp_path / "run", max_steps=2,
                        inference_mode="eval")
  model = pix2pix_tf.Pix2Pix(config)
  model.compile()
  before = [w.numpy() for w in model.generator.weights +
            model.discriminator.trainable_weights]
  # The val split in one pass (it ends), as one batch of two.
  whole = model.evaluate(model.dataset("val"), return_dict=True, verbose=0)
  assert {"gen_l1_loss", "gen_gan_loss", "disc_loss"} <= whole.keys()
  for old, new in zip(before, model.generator.weights +
                      model.discriminator.trainable_weights):
    np.testing.assert_array_equal(old, new.numpy())  # G's statistics too.
  # The same two pairs as two batches of one: the mean over both examples,
  # not the last batch's, nor one divided by --batch_size.
  pairs = model.dataset("val").unbatch().batch(1)
  halves = model.evaluate(pairs, return_dict=True, verbose=0)
  assert halves["gen_l1_loss"] == pytest.approx(whole["gen_l1_loss"],
                                                rel=1e-5)
  one = [model.evaluate(pair, return_dict=True, verbose=0)["gen_l1_loss"]
         for pair in (pairs.take(1), pairs.skip(1))]
  assert one[0] != one[1] and whole["gen_l1_loss"] == pytest.approx(
      np.mean(one), rel=1e-5)
  history = model.fit(model.dataset(), epochs=1, steps_per_epoch=2,
                      validation_data=model.dataset("val"), verbose=0)
  assert history.history["val_gen_l1_loss"][0] != whole["gen_l1_loss"]


@pytest.mark.slow
def test_validation_leaves_the_noise_that_training_draws_as_it_was(
    tiny_dataset, tmp_path):
  """With --gan_mode=wgangp validation draws the gradient penalty's mixing
  from the step's noise and puts its state back: the training steps after
  it draw what they would have drawn without it, as after the train
  command's validation. (The state is a pair of integers, compared
  exactly; weights of two trainings in one process may differ in their
  last bits.)"""
  config = small_config(tiny_dataset, tmp_path / "run", gan_mode="wgangp")
  states = []
  for validation in (None, "val"):
    model = pix2pix_tf.Pix2Pix(config)
    model.compile()
    history = model.fit(
        model.dataset(), epochs=2, steps_per_epoch=1, verbose=0,
        validation_data=validation and model.dataset(validation))
    states.append(model.state.noise.state.numpy())
  assert "val_disc_gradient_penalty" in history.history
  assert states[0].tolist() != [config.optimisation.seed, 0]  # Trained.
  np.testing.assert_array_equal(states[1], states[0])


def noise_copies(strategy, model):
  """Each replica's copy of the state of the step's noise."""
  return [copy.numpy() for copy in strategy.experimental_local_results(
      model.state.noise.state.value)]


@pytest.mark.slow
def test_losses_are_the_batchs_on_two_replicas(tiny_dataset, tmp_path):
  """Each replica's losses are divided by the global batch: fit logs
  their sum, the loss of the whole batch, as on one device. (G in eval
  mode, each image translated alike on either; D's batch statistics are
  per replica, so only G's L1 compares.) Each replica's copy of the
  step's noise is as it was."""
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  config = small_config(tiny_dataset, tmp_path / "run", max_steps=1,
                        mixed_precision="none", inference_mode="eval",
                        gan_mode="wgangp")
  batch = next(iter(pix2pix_tf.Pix2Pix(config).dataset("val").take(1)))
  results = []
  for scope in (tf.distribute.get_strategy(), strategy):
    with scope.scope():
      model = pix2pix_tf.Pix2Pix(config)
      model.compile()
    before = noise_copies(scope, model)
    results.append(model.evaluate(
        tf.data.Dataset.from_tensors(batch), return_dict=True, verbose=0))
    # The gradient penalty drew from the step's noise; each replica put its
    # own copy back.
    np.testing.assert_array_equal(noise_copies(scope, model), before)
  assert len(before) == 2 and "disc_gradient_penalty" in results[-1]
  one, two = results
  assert two["gen_l1_loss"] == pytest.approx(one["gen_l1_loss"], rel=1e-4)
