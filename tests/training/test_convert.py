"""python -m pix2pix_tf.convert: a run from the reference's checkpoints,
whose export computes what PyTorch computed and which train fine-tunes."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_command
from pix2pix_tf import config as config_lib
from pix2pix_tf.data import demo

DATA = os.path.join(os.path.dirname(__file__), "..", "models", "data")
# The fixtures' architecture: a 5-level U-Net and a 3-layer PatchGAN,
# ngf = ndf = 4, batch norm, no dropout.
FLAGS = ["--generator=unet", "--unet_depth=5", "--ngf=4", "--ndf=4",
         "--norm=batch", "--dropout=0", "--load_size=32", "--crop_size=32",
         "--batch_size=1", "--strategy=one_device", "--mixed_precision=none"]


@pytest.mark.slow
def test_convert_exports_pytorchs_model_and_train_fine_tunes_it(tmp_path):
  run = tmp_path / "imported"
  result = run_command(
      "convert", f"--from_pytorch={DATA}/unet_batch.pth",
      f"--from_pytorch_discriminator={DATA}/patchgan_batch.pth",
      f"--output_dir={run}", *FLAGS)  # The other name of --model_dir.
  assert result.returncode == 0, result.stderr
  recorded = json.loads((run / "config.json").read_text())
  assert recorded["dropout_placement"] == "reference"  # The reference's.
  # The discriminator's weights are the file's (where checkpoints keep
  # them: training.run.DISCRIMINATOR_WEIGHT).
  from pix2pix_tf import models
  from pix2pix_tf.models import pytorch_weights as pw
  from pix2pix_tf.training import run as run_lib
  config = config_lib.Config.from_json((run / "config.json").read_text())
  discriminator = models.build_discriminators(config)
  reader = tf.train.load_checkpoint(str(run / "checkpoints"))
  state = pw.read_state_dict(f"{DATA}/patchgan_batch.pth")
  pw.load_weights(discriminator.discriminators[0], state,
                  pw.discriminator_layers(config),
                  f"{DATA}/patchgan_batch.pth")
  for i, variable in enumerate(discriminator.trainable_variables):
    np.testing.assert_array_equal(
        reader.get_tensor(run_lib.DISCRIMINATOR_WEIGHT.format(i)),
        variable.numpy())
  expected = np.load(os.path.join(DATA, "unet_expected.npz"))
  image = expected["input"].transpose(0, 2, 3, 1)
  exported = tf.saved_model.load(str(run / "export")).signatures[
      "serving_default"](images=tf.constant(image))["generated_image"]
  # Paper mode (the default): the image's own batch statistics.
  np.testing.assert_allclose(np.asarray(exported).transpose(0, 3, 1, 2),
                             expected["batch_train"], atol=1e-4)
  # Fine-tuning: train resumes the converted run on other data.
  data_dir = demo.write_dataset(str(tmp_path / "data"), 2, 0, 32)
  # (With its flags.txt: convert recorded --dropout_placement=reference.)
  result = run_command("train", f"--flagfile={run}/flags.txt",
                       f"--data_dir={data_dir}", "--max_steps=2",
                       "--num_samples=0")
  assert result.returncode == 0, result.stderr
  assert "Resumed from" in result.stdout and "at step 0" in result.stdout
  # Or a new run starts from it (--init_from): fresh optimizers, step 0.
  result = run_command("train", f"--model_dir={tmp_path / 'tuned'}",
                       f"--init_from={run}", f"--data_dir={data_dir}",
                       "--max_steps=1", "--num_samples=0",
                       "--learning_rate=1e-6", *FLAGS)
  assert result.returncode == 0, result.stderr
  assert "Initialised the generator and discriminator from" in result.stdout
  tuned = tf.saved_model.load(str(tmp_path / "tuned" / "export")).signatures[
      "serving_default"](images=tf.constant(image))["generated_image"]
  # From the run's latest checkpoint (the fine-tuned one, exported at its
  # end): one step at a tiny learning rate moves little.
  latest = tf.saved_model.load(str(run / "export")).signatures[
      "serving_default"](images=tf.constant(image))["generated_image"]
  assert np.abs(np.asarray(tuned) - np.asarray(latest)).max() < 1e-2
  # Converting into it again would overwrite a run: refused.
  result = run_command("convert", f"--from_pytorch={DATA}/unet_batch.pth",
                       f"--model_dir={run}", *FLAGS)
  assert result.returncode != 0 and "already holds" in result.stderr


@pytest.mark.slow
def test_convert_names_the_flag_for_a_mismatched_file(tmp_path):
  result = run_command(
      "convert", f"--from_pytorch={DATA}/unet_batch.pth",
      f"--model_dir={tmp_path / 'x'}",
      *[f if f != "--norm=batch" else "--norm=instance" for f in FLAGS])
  assert result.returncode != 0
  assert "--norm=batch" in result.stderr
  assert not (tmp_path / "x" / "checkpoints").exists()


def test_init_from_takes_the_discriminator_only_when_it_fits(tmp_path):
  """The discriminator's weights come from the checkpoint when they fit
  (the same depth), and none of them when they do not (another depth)."""
  from conftest import small_config
  from pix2pix_tf import training
  from pix2pix_tf.training import run as run_lib
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  source = training.create_state(
      small_config(tmp_path, tmp_path / "a", d_layers=3), 1, strategy)
  rng = np.random.default_rng(0)
  for variable in source.discriminator.trainable_variables:
    variable.assign(rng.normal(size=variable.shape).astype(np.float32))
  path = source.checkpoint().save(str(tmp_path / "ckpt"))
  for d_layers, fits in ((3, True), (2, False)):
    target = training.create_state(
        small_config(tmp_path, tmp_path / "b", d_layers=d_layers), 1,
        strategy)
    before = [v.numpy() for v in target.discriminator.variables]
    run_lib.init_weights(target, path)
    for mine, theirs in zip(target.generator.weights,
                            source.generator.weights):
      np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    if fits:
      for mine, theirs in zip(target.discriminator.trainable_variables,
                              source.discriminator.trainable_variables):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    else:
      for variable, value in zip(target.discriminator.variables, before):
        np.testing.assert_array_equal(variable.numpy(), value)
