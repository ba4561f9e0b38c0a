"""Model shapes, parameter counts and structure against the reference."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf import architectures
from pix2pix_tf import config as config_lib
from pix2pix_tf import models
from pix2pix_tf.models import generators


def trainable_params(model):
  return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("depth, expected", [(8, 54_413_955),
                                             (7, 41_828_995)])
def test_unet_parameter_counts_match_reference(depth, expected):
  assert trainable_params(models.unet_generator(depth)) == expected


# (n_layers, receptive field, output side for 256x256, trainable params with
# batch norm on 6 input channels): the reference implementation's figures.
PATCHGANS = [(1, 16, 126, 139_585), (2, 34, 62, 666_433),
             (3, 70, 30, 2_768_705), (4, 142, 14, 6_964_033),
             (5, 286, 6, 11_159_361)]


@pytest.mark.parametrize("n_layers, field, side, params", PATCHGANS)
def test_patchgan_matches_reference(n_layers, field, side, params):
  disc = models.patchgan_discriminator(n_layers)
  assert trainable_params(disc) == params
  assert models.receptive_field(disc) == field
  shapes = disc.compute_output_shape([(1, 256, 256, 3), (1, 256, 256, 3)])
  assert tuple(shapes[0]) == (1, side, side, 1)


def test_discriminator_scores_a_256_pair_with_a_30x30_map():
  disc = models.patchgan_discriminator(3, ndf=8)
  x = tf.zeros([2, 256, 256, 3])
  logits, *features = disc([x, x], training=False)
  assert logits.shape == (2, 30, 30, 1)
  assert logits.dtype == tf.float32
  # The activations after each block, for feature matching.
  assert [f.shape[1:] for f in features] == [
      (128, 128, 8), (64, 64, 16), (32, 32, 32), (31, 31, 64)]


def test_pixel_discriminator_matches_reference():
  disc = models.pixel_discriminator()
  assert trainable_params(disc) == 9_024
  assert models.receptive_field(disc) == 1
  shapes = disc.compute_output_shape([(1, 256, 256, 3), (1, 256, 256, 3)])
  assert tuple(shapes[0]) == (1, 256, 256, 1)


def variant(**overrides):
  values = dict(crop_size=256, load_size=286)
  values.update(overrides)
  return config_lib.Config().replace(**values)


@pytest.mark.parametrize("fields",
                         [str(f) for f in architectures.RECEPTIVE_FIELDS])
def test_receptive_fields_from_flags(fields):
  """Each --d_receptive_fields value builds the discriminator whose field,
  computed from its layers, is that value."""
  disc = models.build_discriminators(variant(d_receptive_fields=fields,
                                            ndf=8))
  assert models.receptive_fields(disc) == [int(fields)]


def test_small_and_large_discriminator_pair():
  config = variant(d_receptive_fields="16,286", ndf=8)
  disc = models.build_discriminators(config)
  assert models.receptive_fields(disc) == [16, 286]
  x = tf.zeros([1, 256, 256, 3])
  outputs = disc([x, x])
  assert [o[0].shape for o in outputs] == [(1, 126, 126, 1), (1, 6, 6, 1)]


def test_multiscale_discriminator_sees_downsampled_pairs():
  config = variant(num_discriminators=3, ndf=8)
  disc = models.build_discriminators(config)
  x = tf.zeros([1, 256, 256, 3])
  outputs = disc([x, x])
  assert [o[0].shape for o in outputs] == [(1, 30, 30, 1), (1, 14, 14, 1),
                                            (1, 6, 6, 1)]
  # Each 3x3 stride-2 pooling widens the field: r' = (r - 1) * 2 + 3.
  assert models.receptive_fields(disc) == [70, 141, 283]
  # Three independent PatchGANs.
  one = models.build_discriminators(variant(ndf=8))
  assert trainable_params(disc) == 3 * trainable_params(one)


def test_unconditional_discriminator_sees_the_candidate_only():
  conditional = models.build_discriminators(variant())
  unconditional = models.build_discriminators(
      variant(conditional_discriminator=False))
  # The first convolution has 3 input channels instead of 6.
  assert trainable_params(conditional) - trainable_params(unconditional) == (
      3 * 64 * 16)
  x = tf.zeros([1, 256, 256, 3])
  noise = tf.random.uniform([1, 256, 256, 3])
  # Changing the input image does not change an unconditional D's verdict.
  a = unconditional([x, x])[0][0]
  b = unconditional([noise, x])[0][0]
  np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert not np.array_equal(conditional([x, x])[0][0].numpy(),
                            conditional([noise, x])[0][0].numpy())


@pytest.mark.parametrize("name, norm, expected", [
    ("resnet_9blocks", "batch", 11_383_427),
    ("resnet_9blocks", "instance", 11_378_179),
    ("resnet_6blocks", "batch", 7_841_411),
    ("resnet_6blocks", "instance", 7_837_699),
])
def test_resnet_parameter_counts_match_reference(name, norm, expected):
  generator = models.build_generator(variant(generator=name, norm=norm))
  assert trainable_params(generator) == expected


def test_resnet_generator_shapes_and_reflection_padding():
  generator = models.resnet_generator(2, ngf=4)
  out = generator(tf.random.uniform([1, 32, 48, 3], -1, 1))
  assert out.shape == (1, 32, 48, 3)
  pad = models.ReflectionPadding2D(2)
  x = tf.reshape(tf.range(9, dtype=tf.float32), [1, 3, 3, 1])
  padded = pad(x)[0, :, :, 0].numpy()
  assert padded.shape == (7, 7)
  np.testing.assert_array_equal(padded[2], [2, 1, 0, 1, 2, 1, 0])  # Row 0.
  np.testing.assert_array_equal(padded[:, 2], [6, 3, 0, 3, 6, 3, 0])


def test_unet_with_instance_norm_count_follows_the_bias_rule():
  # From the reference's UnetGenerator with InstanceNorm2d (no affine): the
  # batch-norm count, less gamma and beta of its 4,928 normalised channels,
  # plus a bias in every convolution that had none (encoder 64 + 128 + 256 +
  # 5 x 512, decoder 4 x 512 + 256 + 128 + 64).
  expected = 54_413_955 - 2 * 4_928 + (3_008 + 2_496)
  assert expected == 54_409_603
  generator = models.build_generator(variant(norm="instance"))
  assert trainable_params(generator) == expected


def test_every_generator_name_has_a_builder_and_every_builder_a_name():
  """architectures.GENERATORS is the one list of --generator values: the
  flag's choices, each with a family that generators.BUILDERS builds, and
  no builder that no value names."""
  families = {g.family for g in architectures.GENERATORS.values()}
  assert families == set(generators.BUILDERS)
  choices = {f.name: f.metadata["choices"]
             for _, f in config_lib.option_fields()}["generator"]
  assert choices == tuple(architectures.GENERATORS)


@pytest.mark.parametrize("name", architectures.GENERATORS)
def test_each_generator_downsamples_as_its_row_says(name):
  config = variant(generator=name, unet_depth=5, ngf=4)
  strided = [layer for layer in models.flat_layers(
      models.build_generator(config))
             if isinstance(layer, keras.layers.Conv2D)
             and tuple(layer.strides) == (2, 2)]
  depth = architectures.GENERATORS[name].depth or config.model.unet_depth
  assert len(strided) == depth == config.model.generator_depth


def test_receptive_field_is_computed_from_layers():
  # A chain the PatchGAN table does not contain: 3x3 stride 1, then 4x4
  # stride 2 -> r = (1 - 1) * 2 + 4 = 4, then (4 - 1) * 1 + 3 = 6.
  inputs = keras.Input((None, None, 1))
  x = keras.layers.Conv2D(1, 3)(inputs)
  x = keras.layers.Conv2D(1, 4, strides=2)(x)
  assert models.receptive_field(keras.Model(inputs, x)) == 6


def test_unet_256_output_shape_and_range():
  gen = models.unet_generator(8)
  assert tuple(gen.compute_output_shape((1, 256, 256, 3))) == (1, 256, 256, 3)
  # Fully convolutional: a 256x512 input (not square) works at inference.
  out = gen(tf.random.uniform([1, 256, 512, 3], -1, 1), training=False)
  assert out.shape == (1, 256, 512, 3)
  assert float(tf.reduce_max(tf.abs(out))) <= 1.0


def test_unet_takes_any_multiple_of_its_depth():
  gen = models.unet_generator(4, ngf=4)
  for h, w in [(16, 16), (32, 48), (64, 16)]:
    assert gen(tf.zeros([1, h, w, 3])).shape == (1, h, w, 3)


def test_unet_structure_follows_the_paper():
  gen = models.unet_generator(8)
  convs = [l for l in gen.layers if isinstance(l, keras.layers.Conv2D)
           and not isinstance(l, keras.layers.Conv2DTranspose)]
  assert [c.filters for c in convs] == [64, 128, 256, 512, 512, 512, 512, 512]
  assert all(c.kernel_size == (4, 4) and c.strides == (2, 2) for c in convs)
  ups = [l for l in gen.layers if isinstance(l, keras.layers.Conv2DTranspose)]
  assert [u.filters for u in ups] == [512, 512, 512, 512, 256, 128, 64, 3]
  names = {l.name for l in gen.layers}
  # No norm on the first and the innermost encoder layers.
  assert "down0_norm" not in names and "down7_norm" not in names
  assert {f"down{i}_norm" for i in range(1, 7)} <= names
  # Dropout in the first three decoder blocks, nowhere else.
  dropouts = [l for l in gen.layers if isinstance(l, keras.layers.Dropout)]
  assert [d.name for d in dropouts] == ["up7_dropout", "up6_dropout",
                                        "up5_dropout"]
  assert all(d.rate == 0.5 for d in dropouts)
  # Encoder LeakyReLU 0.2, decoder ReLU, tanh output.
  assert all(l.negative_slope == pytest.approx(0.2) for l in gen.layers
             if isinstance(l, keras.layers.LeakyReLU))
  assert sum(isinstance(l, keras.layers.LeakyReLU) for l in gen.layers) == 7
  assert sum(isinstance(l, keras.layers.ReLU) for l in gen.layers) == 8
  assert gen.layers[-1].activation.__name__ == "tanh"


def test_bias_rule_follows_the_reference():
  batch = models.unet_generator(5, ngf=8, norm="batch")
  instance = models.unet_generator(5, ngf=8, norm="instance")
  # Batch norm: no bias anywhere but the final transposed convolution.
  with_bias = [l.name for l in batch.layers
               if getattr(l, "use_bias", False)]
  assert with_bias == ["up0_conv"]
  assert all(getattr(l, "use_bias", True) for l in instance.layers
             if isinstance(l, keras.layers.Conv2D))
  disc = models.patchgan_discriminator(3, ndf=8, norm="batch")
  assert [l.name for l in disc.layers if getattr(l, "use_bias", False)] == [
      "conv0", "logits"]
  disc = models.patchgan_discriminator(3, ndf=8, norm="instance")
  assert [l.name for l in disc.layers if getattr(l, "use_bias", False)] == [
      "conv0", "conv1", "conv2", "conv3", "logits"]


def test_initialisation_follows_the_reference():
  gen = models.unet_generator(8)
  kernel = gen.get_layer("down3_conv").kernel.numpy()
  assert abs(kernel.mean()) < 1e-3
  assert kernel.std() == pytest.approx(0.02, rel=0.05)
  gamma = gen.get_layer("down3_norm").gamma.numpy()
  assert gamma.mean() == pytest.approx(1.0, abs=0.01)
  assert gamma.std() == pytest.approx(0.02, rel=0.3)
  assert np.all(gen.get_layer("down3_norm").beta.numpy() == 0)


def test_instance_norm_is_group_norm_with_one_group_per_channel():
  gen = models.unet_generator(5, ngf=8, norm="instance")
  norms = [l for l in gen.layers
           if isinstance(l, keras.layers.GroupNormalization)]
  # groups=-1 resolves to the channel count when the layer is built.
  assert norms and all(n.groups == n.input.shape[-1] for n in norms)
  assert not any(n.center or n.scale for n in norms)
  assert not any(isinstance(l, keras.layers.BatchNormalization)
                 for l in gen.layers)


@pytest.mark.slow
def test_summary_tool_json(tmp_path):
  flagfile = tmp_path / "run.flags"
  flagfile.write_text("--crop_size=256\n--data_dir=unused\n")
  result = subprocess.run(
      [sys.executable, "-m", "pix2pix_tf.summary", f"--flagfile={flagfile}",
       "--format=json"], capture_output=True, text=True, check=True,
      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  summary = json.loads(result.stdout)
  gen, disc = summary["generator"], summary["discriminator"]
  assert gen["trainable_params"] == 54_413_955
  # Plus batch norm's moving mean and variance, for the encoder's and the
  # decoder's normalised channels.
  assert gen["total_params"] == 54_413_955 + 2 * (
      (128 + 256 + 512 * 4) + (512 * 4 + 256 + 128 + 64))
  assert gen["output_shape"] == [256, 256, 3]
  assert gen["size_mb"] == pytest.approx(gen["total_params"] * 4 / 2**20,
                                         abs=0.01)
  assert disc["trainable_params"] == 2_768_705
  assert disc["output_shape"] == [30, 30, 1]
  assert disc["receptive_field"] == 70


@pytest.mark.slow
def test_summary_tool_rejects_a_bad_flag_combination():
  result = subprocess.run(
      [sys.executable, "-m", "pix2pix_tf.summary", "--crop_size=100"],
      capture_output=True, text=True,
      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert result.returncode != 0
  assert "--crop_size=100 is not a multiple of 256" in result.stderr


def test_every_config_field_is_a_training_flag():
  from absl import flags
  flag_values = flags.FlagValues()
  config_lib.define_flags(flag_values)
  for _, field in config_lib.option_fields():
    assert field.name in flag_values, field.name
    assert flag_values[field.name].default == field.default, field.name
    assert flag_values[field.name].help == config_lib.flag_help(field), (
        field.name)
  assert flag_values["direction"].parser.enum_values == ["AtoB", "BtoA"]


def test_summary_reports_every_discriminators_receptive_field():
  from pix2pix_tf.models import summary
  config = config_lib.Config().replace(
      d_receptive_fields="1,16,34,70,142,286", ndf=4, ngf=4)
  disc = summary.network_summary(config)["discriminator"]
  assert disc["receptive_fields"] == [1, 16, 34, 70, 142, 286]
  assert disc["output_shapes"] == [[256, 256, 1], [126, 126, 1],
                                   [62, 62, 1], [30, 30, 1], [14, 14, 1],
                                   [6, 6, 1]]
  config = config_lib.Config().replace(num_discriminators=2, ndf=4, ngf=4)
  assert summary.network_summary(config)["discriminator"][
      "receptive_fields"] == [70, 141]
