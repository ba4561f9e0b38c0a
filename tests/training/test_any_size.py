"""Training on images of their own sizes: --preprocess without a crop."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ENV, gradient_image, small_config, write_pair
from pix2pix_tf import outputs
from pix2pix_tf import data as data_lib
from pix2pix_tf import serving
from pix2pix_tf import training

# (height, width) of each training pair's halves: odd, non-square, and
# not multiples of 16 (the depth-4 U-Net's), two of each size.
SIZES = [(37, 45), (37, 45), (30, 52), (30, 52), (48, 32), (48, 32)]


def odd_sized_dataset(root):
  for split, sizes in (("train", SIZES), ("val", SIZES[:2])):
    (root / split).mkdir(parents=True)
    for i, (height, width) in enumerate(sizes):
      write_pair(root / split / f"{i}.png",
                 gradient_image(height, width, offset=i),
                 gradient_image(height, width, offset=i + 40))
  return root


def config_for(tmp_path, **overrides):
  # scale_width: every half 48 wide, a multiple of 16.
  return small_config(odd_sized_dataset(tmp_path / "data"), tmp_path / "run",
                      unet_depth=4, max_steps=3, load_size=48, **overrides)


@pytest.mark.parametrize("mode", ["none", "scale_width"])
def test_batches_hold_one_size_fitted_to_the_generator(mode, tmp_path):
  config = config_for(tmp_path, preprocess=mode)
  split = data_lib.open_split(config.data.data_dir, "train")
  dataset = data_lib.make_dataset(split, config, 2, training=True)
  shapes = set()
  for input_image, target_image in dataset.take(12):
    assert input_image.shape == target_image.shape
    assert input_image.shape[0] == 2
    assert input_image.shape[1] % 16 == 0 and input_image.shape[2] % 16 == 0
    shapes.add(tuple(input_image.shape[1:3]))
  if mode == "none":  # 37x45 -> 48x48, 30x52 -> 32x64, 48x32 kept.
    assert shapes == {(48, 48), (32, 64), (48, 32)}
  else:  # Width 48 (--load_size), height scaled (at least 32), padded:
    # 37x45 -> 39x48 -> 48x48, 30x52 -> 32x48 (at least --crop_size),
    # 48x32 -> 72x48 -> 80x48.
    assert shapes == {(48, 48), (32, 48), (80, 48)}


@pytest.mark.parametrize("mode", ["none", "scale_width"])
@pytest.mark.slow
def test_a_few_steps_train_on_odd_non_square_images(mode, tmp_path):
  config = config_for(tmp_path, preprocess=mode, strategy="one_device")
  results = training.train_and_evaluate(config)
  assert results["step"] == 3
  assert np.isfinite(results["gen_total_loss"])
  # And the run's export translates odd sizes back at their own size, at
  # the resolution --preprocess implies (native for none).
  export = str(tmp_path / "run" / "export")
  assert serving.read_metadata(export)["resolution"] == (
      "native" if mode == "none" else "training")
  files = sorted(str(p) for p in (tmp_path / "data" / "val").glob("*.png"))
  out = outputs.Folder(str(tmp_path / "out"), "output")
  assert serving.translate_files(export, files, out, paired=True) == []
  for i, (height, width) in enumerate(SIZES[:2]):
    generated = np.asarray(Image.open(tmp_path / "out" / f"{i}.png"))
    assert generated.shape == (height, width, 3)


def test_reject_names_the_image_and_the_nearest_valid_size(tmp_path):
  config = config_for(tmp_path, preprocess="none", size_policy="reject")
  with pytest.raises(data_lib.DatasetError,
                     match=r"0\.png: a 45x37 half .*nearest valid size is "
                     r"48x32"):
    training.train_and_evaluate(config)
  assert not (tmp_path / "run" / "checkpoints").exists()


# Two CPU replicas in a child process: a MirroredStrategy made in the test
# process would share collective-op keys with the other tests' strategies.
TWO_REPLICAS = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pix2pix_tf import config as config_lib, data as data_lib, training
config = config_lib.Config.from_json(sys.stdin.read())
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
built = training.build(config, strategy, 3)
iterator = training.train_iterator(
    strategy, config, data_lib.open_split(config.data.data_dir, "train"))
for _ in range(3):
  metrics = built.distributed_step(iterator, 1)
# What the replicas were given: the per-replica batch shapes of six steps.
shapes = []
for _ in range(6):
  batch = next(iterator)
  shapes.append([tuple(pair[0].shape) for pair in
                 zip(*[strategy.experimental_local_results(part)
                       for part in batch])])
print(json.dumps({"loss": float(metrics["gen_total_loss"]),
                  "step": int(built.state.step.numpy()), "shapes": shapes}))
"""


@pytest.mark.slow
def test_two_replicas_train_on_batches_of_different_sizes(tmp_path):
  """Each replica's batches hold one size, which may differ from the other
  replica's and from step to step."""
  config = config_for(tmp_path, preprocess="none", batch_size=4)
  child = subprocess.run([sys.executable, "-c", TWO_REPLICAS],
                         input=config.to_json(), capture_output=True,
                         text=True, env=ENV, timeout=600)
  assert child.returncode == 0, child.stderr[-2000:]
  result = json.loads(child.stdout.splitlines()[-1])
  assert np.isfinite(result["loss"]) and result["step"] == 3
  # Two images per replica, each batch of one size, and sizes differing
  # between batches.
  replica_shapes = [shape for step in result["shapes"] for shape in step]
  assert all(shape[0] == 2 for shape in replica_shapes)
  assert len({tuple(shape) for shape in replica_shapes}) > 1
