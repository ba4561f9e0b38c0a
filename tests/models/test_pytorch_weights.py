"""Reading PyTorch state dicts without PyTorch, and without running them
(fixtures: tests/models/make_pth_fixtures.py, written by torch.save)."""

import os
import pickle

import numpy as np
import pytest

from pix2pix_tf import errors
from pix2pix_tf.models import pytorch_weights

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.mark.parametrize("name", ["state.pth", "state_legacy.pth"])
def test_a_state_dict_reads_as_torch_wrote_it(name):
  """In either of torch.save's formats: zip, and the one before 1.6."""
  state = pytorch_weights.read_state_dict(os.path.join(DATA, name))
  expected = np.load(os.path.join(DATA, "state_expected.npz"))
  # `module.` removed, num_batches_tracked left out.
  assert sorted(state) == sorted(expected.files)
  for name in expected.files:
    assert state[name].dtype == expected[name].dtype, name
    np.testing.assert_array_equal(state[name], expected[name], err_msg=name)
  # The view kept its offset and strides into the shared storage.
  np.testing.assert_array_equal(state["view"], state["base"][1:, 2:5])


@pytest.mark.parametrize("name", ["evil.pth", "evil_legacy.pth"])
def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path,
                                                        monkeypatch, name):
  monkeypatch.chdir(tmp_path)
  with pytest.raises(pytorch_weights.UnsafeCheckpointError,
                     match=rf"{name} names .*system.*not reading it"):
    pytorch_weights.read_state_dict(os.path.join(DATA, name))
  assert not os.path.exists(tmp_path / "pix2pix_tf_evil_ran")


@pytest.mark.parametrize("content,message", [
    (b"GIF89a, say", "is not a checkpoint torch.save wrote"),
    (pickle.dumps(5, protocol=4), "is not a checkpoint torch.save wrote"),
    (b"\x80\x02not a pickle", "is damaged or not a state dict saved by "
     "torch.save"),
    (pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) +
     pickle.dumps(1000, protocol=2),
     "is in torch.save.s legacy format version 1000, not 1001"),
])
def test_files_that_are_not_torch_checkpoints_are_named(tmp_path, content,
                                                        message):
  path = tmp_path / "old.pth"
  path.write_bytes(content)
  with pytest.raises(errors.CommandError, match=f"old.pth {message}"):
    pytorch_weights.read_state_dict(str(path))


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_a_reference_unet_computes_what_pytorch_computed(norm):
  from pix2pix_tf import models
  path = os.path.join(DATA, f"unet_{norm}.pth")
  expected = np.load(os.path.join(DATA, "unet_expected.npz"))
  generator = models.unet_generator(depth=5, ngf=4, norm=norm, dropout=0.0)
  pytorch_weights.load_weights(generator,
                               pytorch_weights.read_state_dict(path),
                               pytorch_weights.unet_layers(5), path)
  image = expected["input"].transpose(0, 2, 3, 1)  # NCHW -> NHWC.
  for mode, model, training in (("eval", generator, False),
                                ("train", models.paper_mode(generator),
                                 False)):
    got = np.asarray(model(image, training=training)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, expected[f"{norm}_{mode}"], atol=1e-4,
                               err_msg=mode)


def test_a_file_of_another_architecture_names_the_tensor_and_the_flag():
  from pix2pix_tf import models
  path = os.path.join(DATA, "unet_batch.pth")
  state = pytorch_weights.read_state_dict(path)
  instance = models.unet_generator(depth=5, ngf=4, norm="instance")
  with pytest.raises(ValueError, match=r"running_mean.*--norm"):
    pytorch_weights.load_weights(instance, state,
                                 pytorch_weights.unet_layers(5), path)
  wider = models.unet_generator(depth=5, ngf=8, norm="batch")
  with pytest.raises(ValueError, match=r"model\.model\.0 holds .*--ngf"):
    pytorch_weights.load_weights(wider, state,
                                 pytorch_weights.unet_layers(5), path)
  deeper = models.unet_generator(depth=6, ngf=4, norm="batch")
  with pytest.raises(ValueError, match=r"--generator"):
    pytorch_weights.load_weights(deeper, state,
                                 pytorch_weights.unet_layers(6), path)


@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize("dropout", [False, True])
def test_a_reference_resnet_computes_what_pytorch_computed(norm, dropout):
  from pix2pix_tf import models
  name = f"{norm}_{'dropout' if dropout else 'plain'}"
  path = os.path.join(DATA, f"resnet_{name}.pth")
  expected = np.load(os.path.join(DATA, "resnet_expected.npz"))
  generator = models.resnet_generator(6, ngf=4, norm=norm,
                                      dropout=0.5 if dropout else 0.0)
  pytorch_weights.load_weights(
      generator, pytorch_weights.read_state_dict(path),
      pytorch_weights.resnet_layers(6, dropout), path)
  image = expected["input"].transpose(0, 2, 3, 1)
  got = np.asarray(generator(image, training=False)).transpose(0, 3, 1, 2)
  np.testing.assert_allclose(got, expected[f"{name}_eval"], atol=1e-4)
  if not dropout:  # Batch statistics of the one image.
    got = np.asarray(models.paper_mode(generator)(image)).transpose(
        0, 3, 1, 2)
    np.testing.assert_allclose(got, expected[f"{name}_train"], atol=1e-4)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_a_reference_patchgan_computes_what_pytorch_computed(norm):
  from pix2pix_tf.models import discriminators
  path = os.path.join(DATA, f"patchgan_{norm}.pth")
  expected = np.load(os.path.join(DATA, "patchgan_expected.npz"))
  discriminator = discriminators.patchgan_discriminator(3, ndf=4, norm=norm)
  pytorch_weights.load_weights(
      discriminator, pytorch_weights.read_state_dict(path),
      pytorch_weights.patchgan_layers(3), path)
  pair = expected["input"].transpose(0, 2, 3, 1)
  inputs = [pair[..., :3], pair[..., 3:]]  # input_image, candidate.
  for mode, training in (("eval", False), ("train", True)):
    logits = np.asarray(discriminator(inputs, training=training)[0])
    np.testing.assert_allclose(logits.transpose(0, 3, 1, 2),
                               expected[f"{norm}_{mode}"], atol=1e-4,
                               err_msg=mode)


def pattern(size):
  """make_pth_fixtures.pattern: the deep U-Nets' input."""
  y, x = np.mgrid[0:size, 0:size].astype(np.float32)
  return np.stack([np.sin(0.37 * x + 0.11 * y + c) for c in range(3)])[None]


@pytest.mark.parametrize("depth", [7, 8])
def test_unet_128_and_unet_256_depths_compute_what_pytorch_computed(depth):
  from pix2pix_tf import models
  path = os.path.join(DATA, f"unet_depth{depth}.pth")
  expected = np.load(os.path.join(DATA, "unet_deep_expected.npz"))
  generator = models.unet_generator(depth=depth, ngf=2, dropout=0.0)
  pytorch_weights.load_weights(generator,
                               pytorch_weights.read_state_dict(path),
                               pytorch_weights.unet_layers(depth), path)
  size = 2 ** depth
  centre = slice(size // 2 - 32, size // 2 + 32)
  image = pattern(size).transpose(0, 2, 3, 1)
  for mode, model in (("eval", generator),
                      ("train", models.paper_mode(generator))):
    got = np.asarray(model(image, training=False)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got[..., centre, centre],
                               expected[f"{mode}{depth}"], atol=1e-4,
                               err_msg=mode)


def test_resnet_9blocks_by_its_flags_computes_what_pytorch_computed():
  """The reference's pix2pix ResNet (9 blocks, dropout), read through the
  mapping that convert uses for --generator=resnet_9blocks."""
  from pix2pix_tf import config as config_lib
  from pix2pix_tf import models
  path = os.path.join(DATA, "resnet9_batch_dropout.pth")
  expected = np.load(os.path.join(DATA, "resnet9_expected.npz"))
  config = config_lib.Config().replace(generator="resnet_9blocks",
                                       ngf=4,
                                       norm="batch",
                                       dropout=0.5,
                                       crop_size=32,
                                       load_size=32)
  generator = models.build_generator(config)
  pytorch_weights.load_weights(
      generator, pytorch_weights.read_state_dict(path),
      pytorch_weights.generator_layers(config), path)
  got = np.asarray(generator(expected["input"].transpose(0, 2, 3, 1),
                             training=False)).transpose(0, 3, 1, 2)
  np.testing.assert_allclose(got, expected["eval"], atol=1e-4)


def test_a_generator_family_the_reference_lacks_is_refused(monkeypatch):
  """A new family's generator gets no U-Net's layer names: its import is
  refused, naming the flag."""
  from pix2pix_tf import architectures
  from pix2pix_tf import config as config_lib
  config = config_lib.Config().replace(generator="unet", unet_depth=5)
  assert len(pytorch_weights.generator_layers(config)) > 10
  monkeypatch.setitem(architectures.GENERATORS, "unet",
                      architectures.Generator("transformer", None))
  with pytest.raises(errors.CommandError,
                     match="--generator=unet is of the transformer family"):
    pytorch_weights.generator_layers(config)


@pytest.mark.parametrize("saved,flag", [("plain", 0.5), ("dropout", 0.0)])
def test_a_resnet_dropout_mismatch_names_the_flag(saved, flag):
  from pix2pix_tf import models
  path = os.path.join(DATA, f"resnet_batch_{saved}.pth")
  generator = models.resnet_generator(6, ngf=4, norm="batch", dropout=flag)
  with pytest.raises(ValueError, match=r"resnet_batch_.*--dropout \(0 for"):
    pytorch_weights.load_weights(
        generator, pytorch_weights.read_state_dict(path),
        pytorch_weights.resnet_layers(6, flag > 0), path)


def test_instance_norm_running_statistics_are_ignored_as_the_reference_does():
  """A reference U-Net with InstanceNorm2d(track_running_stats=True): its
  file also holds each norm's running mean and variance (torch.save writes
  them beside nothing else for a non-affine norm). They are dropped, as the
  reference drops them, and the model computes what PyTorch computed; with
  --norm=batch the error names --norm=instance."""
  from pix2pix_tf import models
  path = os.path.join(DATA, "unet_instance.pth")
  state = pytorch_weights.read_state_dict(path)
  layers = pytorch_weights.unet_layers(5)
  generator = models.unet_generator(depth=5, ngf=4, norm="instance",
                                    dropout=0.0)
  norms = {module: generator.get_layer(layer).input.shape[-1]
           for module, layer, kind in layers
           if kind == pytorch_weights.NORM}
  assert norms and not any(f"{m}.weight" in state for m in norms)
  rng = np.random.RandomState(0)
  tracked = dict(state)
  for module, channels in norms.items():
    tracked[f"{module}.running_mean"] = rng.randn(channels).astype(
        np.float32)
    tracked[f"{module}.running_var"] = rng.rand(channels).astype(np.float32)
  expected = np.load(os.path.join(DATA, "unet_expected.npz"))
  pytorch_weights.load_weights(generator, tracked, layers, path)
  image = expected["input"].transpose(0, 2, 3, 1)
  got = np.asarray(generator(image, training=False)).transpose(0, 3, 1, 2)
  np.testing.assert_allclose(got, expected["instance_eval"], atol=1e-4)
  batch = models.unet_generator(depth=5, ngf=4, norm="batch", dropout=0.0)
  with pytest.raises(ValueError, match="trained with --norm=instance"):
    pytorch_weights.load_weights(batch, tracked, layers, path)
