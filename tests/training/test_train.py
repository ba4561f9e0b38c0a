"""Training: the entry point end to end, resume, learning, distribution."""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorboard.plugins.hparams import plugin_data_pb2

from conftest import (NO_TENSORFLOW, assert_same_update, run_command, run_saying_imports,
                      scalar_tags, small_config, truncate_after_header)
from pix2pix_tf import config as config_lib
from pix2pix_tf.data import demo
from pix2pix_tf import data as data_lib
from pix2pix_tf import models
from pix2pix_tf import training

SMALL_FLAGS = ["--load_size=36", "--crop_size=32", "--generator=unet",
               "--unet_depth=5", "--ngf=8", "--ndf=8", "--batch_size=2",
               "--epochs=2", "--epochs_decay=2", "--num_samples=2",
               "--log_every_steps=2", "--sample_every_steps=2",
               "--eval_every_steps=2", "--checkpoint_every_steps=2"]


@pytest.mark.slow
def test_entry_point_trains_writes_everything_and_resumes(tiny_dataset,
                                                           tmp_path):
  model_dir = tmp_path / "run"
  flagfile = tmp_path / "tiny.flags"
  flagfile.write_text("\n".join(SMALL_FLAGS + [f"--data_dir={tiny_dataset}",
                                               f"--model_dir={model_dir}"]))
  first = run_command("train", f"--flagfile={flagfile}", "--max_steps=4",
                      "--profile_steps=3,4")
  assert first.returncode == 0, first.stderr
  assert "val at step 0: l1 " in first.stdout
  assert "val at step 4: l1 " in first.stdout

  # Checkpoints, with the step counter inside.
  checkpoints = model_dir / "checkpoints"
  assert tf.train.latest_checkpoint(str(checkpoints)).endswith("ckpt-4")
  reader = tf.train.load_checkpoint(str(checkpoints))
  step_key = [k for k in reader.get_variable_to_shape_map()
              if k.startswith("step/")][0]
  assert reader.get_tensor(step_key) == 4

  # TensorBoard scalars and images.
  train_tags = scalar_tags(str(model_dir / "logs" / "train"))
  for name in ("gen_total_loss", "gen_gan_loss", "gen_l1_loss", "disc_loss",
               "disc_real_loss", "disc_generated_loss", "learning_rate",
               "images_per_second"):
    assert name in train_tags, name
    assert [s for s, _ in train_tags[name]] == [2, 4]
    assert all(np.isfinite(v) for _, v in train_tags[name])
  assert "input_generated_target" in train_tags
  val_tags = scalar_tags(str(model_dir / "logs" / "val"))
  for name in ("l1", "mse", "psnr", "ssim"):
    assert [s for s, _ in val_tags[name]] == [0, 2, 4], name
  # The val pass's L1 is a tag of its own, not the training loss's.
  assert not set(val_tags) & set(train_tags)
  # 8 images, batch 2: 4 steps an epoch; epochs=2 at 2e-4, no decay yet.
  assert train_tags["learning_rate"][-1][1] == pytest.approx(2e-4)

  # Sample grids: 2 examples of input | generated | target.
  sample = np.asarray(Image.open(model_dir / "samples" / "step_0000004.png"))
  assert sample.shape == (2 * 32, 3 * 32, 3)
  assert sample.std() > 10

  flags_text = (model_dir / "flags.txt").read_text()
  assert f"--data_dir={tiny_dataset}\n" in flags_text
  assert "--crop_size=32\n" in flags_text

  # Step 0 describes the run: the sample before training, the flags as
  # text, and the options as hparams in logs/ (beside train/ and val/, whose
  # scalars are the HParams tab's metrics).
  assert train_tags["input_generated_target"][0][0] == 0
  assert (model_dir / "samples" / "step_0000000.png").exists()
  assert logged(model_dir / "logs" / "train", "flags") == [
      (0, "<pre>" + flags_text + "</pre>")]
  hparams, = logged(model_dir / "logs", "_hparams_/session_start_info")
  assert hparams[0] == 0
  start = plugin_data_pb2.HParamsPluginData.FromString(
      hparams[1]).session_start_info
  assert start.hparams["crop_size"].number_value == 32
  assert start.hparams["data_dir"].string_value == str(tiny_dataset)
  assert start.hparams["flip"].bool_value is True

  # The same command again resumes at the saved step and goes on.
  second = run_command("train", f"--flagfile={flagfile}", "--max_steps=10")
  assert second.returncode == 0, second.stderr
  assert "Resumed from" in second.stdout and "at step 4." in second.stdout
  assert "val at step 0" not in second.stdout
  assert tf.train.latest_checkpoint(str(checkpoints)).endswith("ckpt-10")
  train_tags = scalar_tags(str(model_dir / "logs" / "train"))
  assert [s for s, _ in train_tags["gen_l1_loss"]] == [2, 4, 6, 8, 10]
  # The schedule continues: 2 epochs of 4 steps at 2e-4, then lower after
  # each of the 2 decay epochs, by 1/3 of it. The update of step 10 (index
  # 9) is in epoch 2 (from 0), the first decay epoch: 1 - 1/3.
  assert train_tags["learning_rate"][-1][1] == pytest.approx(
      2e-4 * (1 - 1 / 3), rel=1e-5)
  # Three checkpoints kept by default.
  assert len(glob.glob(str(checkpoints / "ckpt-*.index"))) == 3
  # --profile_steps: a profiler trace of steps 3 and 4, for the Profile tab.
  assert f"Profiled steps 3 to 4 into {model_dir}/logs/train." in first.stdout
  trace, = glob.glob(str(model_dir / "logs" / "train" / "plugins" /
                          "profile" / "*" / "*.xplane.pb"))
  assert b"Conv2D" in open(trace, "rb").read()
  # A resumed run is the same session: described once, at step 0.
  assert len(logged(model_dir / "logs" / "train", "flags")) == 1
  assert len(logged(model_dir / "logs", "_hparams_/session_start_info")) == 1


def logged(log_dir, tag):
  """(step, text or plugin content) of each `tag` event in a log folder
  (its own events, not its subfolders')."""
  found = []
  for path in sorted(glob.glob(os.path.join(log_dir, "events.out.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag != tag:
          continue
        if value.metadata.plugin_data.plugin_name == "hparams":
          found.append((event.step, value.metadata.plugin_data.content))
        else:
          found.append((event.step, tf.make_ndarray(
              value.tensor).item().decode()))
  return found


@pytest.mark.slow
def test_entry_point_names_a_missing_dataset(tmp_path):
  result = run_command("train", f"--data_dir={tmp_path}/datasets/facades",
                       f"--model_dir={tmp_path}/run")
  assert result.returncode != 0
  assert f"{tmp_path}/datasets/facades/train does not exist" in result.stderr
  assert "python -m pix2pix_tf.datasets download facades" in result.stderr
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_entry_point_names_a_corrupt_image_and_saves_no_checkpoint(
    tiny_dataset, tmp_path):
  good = os.path.join(tiny_dataset, "train", "0001.png")
  Image.open(good).save(os.path.join(tiny_dataset, "train", "0002.jpg"))
  corrupt = truncate_after_header(
      os.path.join(tiny_dataset, "train", "0002.jpg"))
  # The only checkpoint due is the last one, so none may exist. (Every 2
  # steps, one could legitimately be saved before the shuffled, parallel
  # pipeline reaches the bad image.)
  result = run_command("train", *SMALL_FLAGS, f"--data_dir={tiny_dataset}",
                       f"--model_dir={tmp_path}/run", "--max_steps=20",
                       "--checkpoint_every_steps=1000")
  assert result.returncode != 0
  assert f"{corrupt} is not a usable image pair" in result.stderr
  assert not glob.glob(f"{tmp_path}/run/checkpoints/ckpt-*")


@pytest.mark.slow
def test_entry_point_names_a_text_file_posing_as_an_image(tiny_dataset,
                                                          tmp_path):
  fake = os.path.join(tiny_dataset, "train", "notes.jpg")
  with open(fake, "w") as f:
    f.write("not an image")
  result = run_command("train", *SMALL_FLAGS, f"--data_dir={tiny_dataset}",
                       f"--model_dir={tmp_path}/run", "--max_steps=2")
  assert result.returncode != 0
  assert f"{fake} is not a .jpg image" in result.stderr
  assert not (tmp_path / "run").exists()


# `python -m pix2pix_tf.train ARGS` that says at its exit whether it
# imported TensorFlow.
def test_flag_errors_are_one_clear_line(tiny_dataset, tmp_path):
  result = run_saying_imports(
      "train", f"--data_dir={tiny_dataset}", "--load_size=200",
      "--crop_size=256", f"--model_dir={tmp_path}/run")
  assert result.returncode != 0
  assert "--crop_size=256 is larger than --load_size=200" in result.stderr
  # Answered before TensorFlow's import, which takes seconds.
  assert NO_TENSORFLOW in result.stdout
  result = run_command("train", "--norm=weird")
  assert result.returncode != 0 and "--norm" in result.stderr


@pytest.mark.parametrize("overrides, message", [
    (dict(crop_size=64, load_size=48), "--crop_size=64 is larger than"),
    (dict(preprocess="scale_width", load_size=36),
     "makes every half --load_size=36 wide, not a multiple of 32 .* "
     r"\(e\.g\. 32\)"),
    (dict(crop_size=48, load_size=48), "--crop_size=48 is not a multiple of 32"),
    (dict(d_layers=5), "--d_layers=5 is too deep for --crop_size=32"),
    (dict(gan_mode="none", lambda_l1=0.0), "nothing to optimise"),
    (dict(profile_steps="3,2"), "--profile_steps=3,2 is not FIRST,LAST"),
    (dict(profile_steps="0,2"), "--profile_steps=0,2 is not FIRST,LAST"),
    (dict(profile_steps="2"), "--profile_steps=2 is not FIRST,LAST"),
    (dict(profile_steps="a,b"), "--profile_steps=a,b is not FIRST,LAST"),
])
def test_invalid_configurations_are_rejected(tmp_path, overrides, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    small_config(tmp_path, tmp_path, **overrides)
  with pytest.raises(config_lib.ConfigError, match=message):
    small_config(tmp_path, tmp_path).replace(**overrides)


def single_pair_batches(batch_size=1, size=32):
  """One demo pair (label map -> photo), repeated."""
  photo, label_map = demo.draw_example(np.random.RandomState(0), size)
  input_image = data_lib.normalize(tf.constant(label_map, tf.float32))
  target = data_lib.normalize(tf.constant(photo, tf.float32))
  return tf.data.Dataset.from_tensors((input_image, target)).repeat().batch(
      batch_size)


def test_a_few_dozen_steps_on_one_pair_lower_the_l1_loss(tmp_path):
  # A higher learning rate than the paper's, so that 40 steps show it.
  config = small_config(tmp_path, tmp_path, batch_size=1, learning_rate=2e-3)
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  keras.utils.set_random_seed(0)
  state = training.create_state(config, 100, strategy)
  step = training.make_distributed_step(
      strategy, training.make_train_step(state, config, 1), state.step)
  iterator = iter(strategy.experimental_distribute_dataset(
      single_pair_batches()))
  l1 = [float(step(iterator)["gen_l1_loss"]) for _ in range(40)]
  assert int(state.step.numpy()) == 40
  assert np.mean(l1[-5:]) < 0.5 * l1[0], l1


def train_replicated(strategy, config, initial_weights, steps=3):
  with strategy.scope():
    state = training.create_state(config, 100, strategy)
  state.generator.set_weights(initial_weights[0])
  state.discriminator.set_weights(initial_weights[1])
  step = training.make_distributed_step(
      strategy, training.make_train_step(state, config, 2), state.step)
  dataset = tf.data.Dataset.from_tensor_slices(
      tuple(np.random.RandomState(1).uniform(-1, 1, (2, 2, 32, 32, 3))
            .astype(np.float32))).repeat().batch(2)
  iterator = iter(strategy.experimental_distribute_dataset(dataset))
  metrics = [step(iterator) for _ in range(steps)]
  return state, metrics


@pytest.fixture(scope="module")
def two_replicas():
  # One strategy for the module: separate MirroredStrategy objects in one
  # process can clash in their collective-op keys.
  return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


# Norms whose result does not depend on how the batch is split. (Instance
# norm does not either, but the reference gives its convolutions biases that
# the norm cancels; their gradients are rounding noise, which Adam amplifies
# into differences of the order of the learning rate.)
@pytest.mark.parametrize("norm", ["none", "sync_batch"])
@pytest.mark.slow
def test_two_replicas_match_one_replica_on_the_same_global_batch(
    tmp_path, norm, two_replicas):
  config = small_config(tmp_path, tmp_path, dropout=0.0, norm=norm)
  one = tf.distribute.OneDeviceStrategy("/cpu:0")
  two = two_replicas
  assert two.num_replicas_in_sync == 2
  keras.utils.set_random_seed(0)
  reference = training.create_state(config, 100, one)
  initial = (reference.generator.get_weights(),
             reference.discriminator.get_weights())
  state_one, metrics_one = train_replicated(one, config, initial)
  state_two, metrics_two = train_replicated(two, config, initial)
  for a, b in zip(metrics_one, metrics_two):
    assert float(a["gen_l1_loss"]) == pytest.approx(float(b["gen_l1_loss"]),
                                                    rel=1e-4)
  for model in ("generator", "discriminator"):
    w_one = getattr(state_one, model).get_weights()
    w_two = getattr(state_two, model).get_weights()
    moved = max(np.abs(a - b).max() for a, b in zip(w_one, initial[
        0 if model == "generator" else 1]))
    assert moved > 1e-4  # Training changed the weights ...
    for a, b in zip(w_one, w_two):  # ... and both runs changed them alike.
      assert_same_update(a, b, config.optimisation.learning_rate)


def test_paper_mode_generation_leaves_the_model_unchanged(tmp_path):
  config = small_config(tmp_path, tmp_path)
  state = training.create_state(config, 10, tf.distribute.OneDeviceStrategy(
      "/cpu:0"))
  before = [v.numpy().copy() for v in state.generator.weights]
  generate = models.make_generate(state.generator, "paper")
  x = tf.random.uniform([2, 32, 32, 3], -1, 1)
  paper = generate(x)
  after = [v.numpy() for v in state.generator.weights]
  for a, b in zip(before, after):
    np.testing.assert_array_equal(a, b)
  # Paper mode uses batch statistics and dropout; eval mode does not.
  evaluated = models.make_generate(state.generator, "eval")(x)
  assert not np.allclose(paper.numpy(), evaluated.numpy(), atol=1e-3)
  np.testing.assert_array_equal(
      evaluated.numpy(),
      models.make_generate(state.generator, "eval")(x).numpy())


@pytest.mark.slow
def test_another_seed_gives_another_model(tiny_dataset, tmp_path):
  """Two seeds, two models. (One seed, one model: under --deterministic,
  test_scale's killed-run test starts an unbroken run and the run it kills
  from scratch in separate processes, and their weights end equal.)"""
  weights = []
  for run, seed in (("a", 7), ("b", 8)):
    result = run_command("train", *SMALL_FLAGS, f"--data_dir={tiny_dataset}",
                         f"--model_dir={tmp_path}/{run}", "--max_steps=3",
                         "--deterministic", f"--seed={seed}")
    assert result.returncode == 0, result.stderr
    reader = tf.train.load_checkpoint(f"{tmp_path}/{run}/checkpoints")
    weights.append({k: reader.get_tensor(k)
                    for k in reader.get_variable_to_shape_map()
                    if k != "_CHECKPOINTABLE_OBJECT_GRAPH"})
  assert len(weights[0]) > 100 and weights[0].keys() == weights[1].keys()
  assert any(not np.array_equal(value, weights[1][key])
             for key, value in weights[0].items())
