"""pix2pixHD's VGG perceptual term (--lambda_vgg): VGG19 read from a weights
file laid out as Keras's published one (random weights: nothing is
downloaded), its five activations given Caffe's input, the term's value and
gradients, and a run that trains with it and logs it."""

import re

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.legacy.saving import legacy_h5_format

from conftest import scalar_tags, small_config
from pix2pix_tf import config as config_lib
from pix2pix_tf import errors
from pix2pix_tf import models
from pix2pix_tf import training
from pix2pix_tf.data import demo
from pix2pix_tf.training import losses


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
  """Random VGG19 notop weights in the legacy .h5 layout of Keras's
  vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5; and the network."""
  keras.utils.set_random_seed(3)
  vgg = keras.applications.VGG19(include_top=False, weights=None,
                                 input_shape=(None, None, 3))
  path = str(tmp_path_factory.mktemp("vgg") / "vgg19_random_notop.h5")
  with h5py.File(path, "w") as file:
    legacy_h5_format.save_weights_to_hdf5_group(file, vgg)
  return path, vgg


def test_the_five_activations_of_the_file_on_caffes_input(vgg_file):
  path, vgg = vgg_file
  network = models.build_vgg(path)
  assert not network.trainable_weights
  images = np.random.RandomState(0).uniform(-1, 1, (2, 32, 32, 3))
  features = models.vgg_features(network, images)
  # Caffe's input, by hand: 0..255, BGR, less ImageNet's mean.
  caffe = (images + 1.0) * 127.5
  caffe = caffe[..., ::-1] - np.array([103.939, 116.779, 123.68])
  for name, size, ours in zip(models.perceptual.VGG_LAYERS,
                              (32, 16, 8, 4, 2), features):
    layer_output = keras.Model(vgg.input, vgg.get_layer(name).output)
    expected = layer_output(caffe.astype(np.float32)).numpy()
    assert ours.shape[1:3] == (size, size)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-4, atol=1e-3)


def test_the_term_is_pix2pixhds_weighted_l1_with_the_target_fixed(vgg_file):
  network = models.build_vgg(vgg_file[0])
  rng = np.random.RandomState(1)
  generated = tf.Variable(rng.uniform(-1, 1, (2, 32, 32, 1)), dtype=tf.float32)
  target = tf.Variable(rng.uniform(-1, 1, (2, 32, 32, 1)), dtype=tf.float32)
  views = losses.Views(None, target, generated, helpers={"vgg": network})
  with tf.GradientTape(persistent=True) as tape:
    value = losses.vgg_loss(views)
  ours = models.vgg_features(network, np.repeat(generated.numpy(), 3, -1))
  theirs = models.vgg_features(network, np.repeat(target.numpy(), 3, -1))
  expected = sum(w * np.abs(o.numpy() - t.numpy()).mean(axis=(1, 2, 3))
                 for w, o, t in zip((1 / 32, 1 / 16, 1 / 8, 1 / 4, 1),
                                    ours, theirs))
  np.testing.assert_allclose(value.numpy(), expected, rtol=1e-4)
  assert value.shape == (2,) and np.all(expected > 0)
  assert tape.gradient(value, target) is None
  assert np.abs(tape.gradient(value, generated).numpy()).max() > 0
  same = losses.Views(None, target, target, helpers={"vgg": network})
  np.testing.assert_array_equal(losses.vgg_loss(same).numpy(), [0.0, 0.0])


@pytest.mark.slow
def test_a_run_trains_with_it_logs_it_and_keeps_vgg_frozen_and_out_of_the_checkpoint(
    tmp_path, vgg_file):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 4, 0, 32)
  config = small_config(data_dir, tmp_path / "run", max_steps=2,
                        lambda_vgg=10.0, vgg_weights=vgg_file[0])
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  built = training.build(config, strategy, 2)
  names = built.train_step.metric_names
  assert names[:3] == ("gen_total_loss", "gen_gan_loss", "gen_l1_loss")
  assert "gen_vgg_loss" in names
  vgg = built.state.helpers["vgg"]
  before = [w.numpy().copy() for w in vgg.weights]
  generator_before = built.state.generator.trainable_weights[0].numpy().copy()
  batch = tuple(np.random.RandomState(0).uniform(
      -1, 1, (2, 2, 32, 32, 3)).astype(np.float32))
  metrics = built.distributed_step(iter(
      strategy.experimental_distribute_dataset(
          tf.data.Dataset.from_tensors(batch).repeat())))
  assert float(metrics["gen_vgg_loss"]) > 0
  assert not np.array_equal(
      generator_before, built.state.generator.trainable_weights[0].numpy())
  assert all(np.array_equal(a, b.numpy()) for a, b in zip(before,
                                                          vgg.weights))
  training.train_and_evaluate(config, strategy)
  tags = scalar_tags(str(tmp_path / "run" / "logs" / "train"))
  assert "gen_vgg_loss" in tags and tags["gen_vgg_loss"][-1][1] > 0
  checkpoint = tf.train.latest_checkpoint(str(tmp_path / "run" /
                                              "checkpoints"))
  names = [name for name, _ in tf.train.list_variables(checkpoint)]
  assert names and not any("vgg" in name or "block1_conv1" in name
                           for name in names)


def test_missing_or_wrong_weights_are_named_with_what_to_give(tmp_path):
  # Unset or missing: refused when the run starts, before it writes.
  data_dir = demo.write_dataset(str(tmp_path / "data"), 2, 0, 36)
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  for weights in ("", str(tmp_path / "none.h5")):
    config = small_config(data_dir, tmp_path / "run", lambda_vgg=1.0,
                          vgg_weights=weights)
    with pytest.raises(config_lib.ConfigError, match=re.escape(
        f"--vgg_weights={weights!r} is not a file; the gen_vgg_loss term "
        "reads it.")):
      training.train_and_evaluate(config, strategy)
    assert not (tmp_path / "run").exists()
  # Weights without a weight: the term is off and nothing reads them.
  off = losses.build_objective(small_config(".", ".", vgg_weights="x.h5"))
  assert (off.helpers, off.files) == ({}, ())
  with pytest.raises(errors.CommandError, match=r"none\.h5 is not a file"):
    models.build_vgg(str(tmp_path / "none.h5"))
  other = str(tmp_path / "other.weights.h5")
  keras.applications.MobileNetV2(include_top=False, weights=None,
                                 input_shape=(32, 32, 3)).save_weights(other)
  with pytest.raises(errors.CommandError,
                     match=r"other\.weights\.h5 does not load into VGG19.*"
                     r"vgg19_weights_tf_dim_ordering_tf_kernels_notop\.h5"):
    models.build_vgg(other)


def test_a_term_declares_the_frozen_networks_it_reads(monkeypatch, vgg_file):
  """A run's state holds its objective, built once, and the frozen networks
  its terms name, and nothing else: a new term with a helper needs no other
  edit."""
  config = small_config(".", ".", lambda_vgg=1.0, vgg_weights=vgg_file[0])
  objective = losses.build_objective(config)
  assert list(objective.helpers) == ["vgg"]
  assert objective.files == (("gen_vgg_loss", "vgg_weights", vgg_file[0]),)
  assert losses.build_objective(small_config(".", ".")).helpers == {}
  extra = losses.Term("gen_extra_loss", 1.0, lambda views: 0.0,
                      helpers={"tiny": lambda: keras.Sequential(name="tiny")})
  widened = losses.Objective(objective.generator + (extra,),
                             objective.discriminator)
  assert list(widened.helpers) == ["vgg", "tiny"]
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  without = training.create_state(small_config(".", "."), 1, strategy)
  assert without.helpers == {}
  state = training.create_state(config, 1, strategy)
  assert list(state.helpers) == ["vgg"]
  assert state.helpers["vgg"].compute_dtype == "float32"
  # Built once for the state: the step computes and reports its terms.
  calls = []
  monkeypatch.setattr(losses, "build_objective",
                      lambda config: calls.append(config) or widened)
  built = training.build(config, strategy, 1)
  assert calls == [config]
  assert built.state.objective is widened
  assert list(built.state.helpers) == ["vgg", "tiny"]
  assert "gen_extra_loss" in built.train_step.metric_names
