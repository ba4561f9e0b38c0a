"""The training stream: shuffling as --shuffle_buffer says, skipping before
reading on resume, and a disk cache per split and configuration."""

import glob
import os

import numpy as np
import pytest
from PIL import Image

from conftest import small_config
from pix2pix_tf import data as data_lib
from pix2pix_tf import training


def constant_pairs(folder, values, size=32):
  """One pair file per value, both halves filled with that grey level."""
  os.makedirs(folder, exist_ok=True)
  for i, value in enumerate(values):
    pair = np.full((size, 2 * size, 3), value, np.uint8)
    Image.fromarray(pair).save(os.path.join(folder, f"{i:04d}.png"))
  return sorted(glob.glob(os.path.join(folder, "*.png")))


def stream_values(dataset, count):
  """The grey level (0..255) of each of the first `count` elements."""
  values = []
  for input_image, _ in dataset.take(count):
    values.append(int(round((float(input_image.numpy().mean()) + 1) * 127.5)))
  return values


def plain_config(tmp_path, **overrides):
  # Crops of the whole image and no flip: each element is exactly its file.
  return small_config(tmp_path, tmp_path, load_size=32, crop_size=32,
                      flip=False, deterministic=True, **overrides)


VALUES = [10, 40, 70, 100, 130, 160, 190, 220]


def test_shuffle_buffer_of_one_keeps_file_order_and_zero_shuffles_all(
    tmp_path):
  files = constant_pairs(str(tmp_path / "train"), VALUES)
  in_order = data_lib.make_dataset(
      files, plain_config(tmp_path, shuffle_buffer=1), 1, training=True)
  assert stream_values(in_order, 16) == VALUES * 2
  whole = data_lib.make_dataset(
      files, plain_config(tmp_path, shuffle_buffer=0), 1, training=True)
  epochs = stream_values(whole, 24)
  for start in (0, 8, 16):
    assert sorted(epochs[start:start + 8]) == VALUES  # Full passes.
  assert epochs[:8] != VALUES and epochs[:8] != epochs[8:16]


def test_a_resumed_stream_skips_file_names_before_reading_them(tmp_path):
  files = constant_pairs(str(tmp_path / "train"), VALUES)
  config = plain_config(tmp_path)
  whole = stream_values(
      data_lib.make_dataset(files, config, 1, training=True), 24)
  # Resume in the middle of the third epoch: the first half of that epoch
  # was trained on. Delete those files; a pipeline that reads before it
  # skips fails on them.
  skip = 20
  skipped = set(whole[16:skip])
  for path, value in zip(files, VALUES):
    if value in skipped:
      os.remove(path)
  resumed = data_lib.make_dataset(files, config, 1, training=True,
                                        skip=skip)
  assert stream_values(resumed, 4) == whole[skip:24]


@pytest.mark.slow
def test_the_disk_cache_is_per_split_and_configuration(tmp_path):
  train = constant_pairs(str(tmp_path / "data" / "train"), [0] * 4)
  val = constant_pairs(str(tmp_path / "data" / "val"), [255] * 2)
  prefix = str(tmp_path / "cache" / "pairs")
  os.makedirs(os.path.dirname(prefix))
  config = plain_config(tmp_path, cache=prefix)
  train_split = data_lib.Split(tuple(train), len(train))
  val_split = data_lib.Split(tuple(val), len(val))

  def cached_stream(split, config):
    return stream_values(
        data_lib.make_dataset(split,
                              config,
                              1,
                              training=True,
                              cache=config.data.cache), 2 * split.count)

  assert cached_stream(train_split, config) == [0] * 8
  assert cached_stream(val_split, config) == [255] * 4
  names = {data_lib.cache_path(prefix, s, config)
           for s in (train_split, val_split)}
  assert len(names) == 2
  for name in names:
    assert os.path.exists(name + ".index")
  # Another direction, or changed files, give another cache file: a cache is
  # never read back for data it does not hold.
  flipped = plain_config(tmp_path, cache=prefix, direction="BtoA")
  assert data_lib.cache_path(prefix, train_split, flipped) not in names
  constant_pairs(str(tmp_path / "data" / "train"), [90] * 4)
  assert cached_stream(train_split, config) == [90] * 8
  # Evaluation data is not cached at all.
  with pytest.raises(ValueError, match="Only training data is cached"):
    data_lib.make_dataset(val_split, config, 1, training=False,
                                cache=prefix)


def test_a_cache_left_unfinished_by_a_killed_run_is_rebuilt(tmp_path):
  files = constant_pairs(str(tmp_path / "train"), VALUES)
  split = data_lib.Split(tuple(files), len(files))
  prefix = str(tmp_path / "pairs")
  config = plain_config(tmp_path, cache=prefix)
  name = data_lib.cache_path(prefix, split, config)
  # What a run killed during its first pass leaves behind.
  for leftover in ("_0.lockfile", "_0.data-00000-of-00001.tempstate1"):
    with open(name + leftover, "w") as f:
      f.write("")
  dataset = data_lib.make_dataset(split, config, 1, training=True,
                                        cache=prefix)
  assert sorted(stream_values(dataset, 8)) == VALUES
  assert os.path.exists(name + ".index")


@pytest.mark.slow
def test_val_samples_and_metrics_are_val_data_under_a_disk_cache(tmp_path):
  # Black training pairs, white val pairs: a val pass that read the
  # training cache would show black targets.
  data_dir = tmp_path / "data"
  constant_pairs(str(data_dir / "train"), [0] * 4)
  constant_pairs(str(data_dir / "val"), [255] * 2)
  config = small_config(data_dir, tmp_path / "run", load_size=32,
                        crop_size=32, max_steps=2, num_samples=2,
                        cache=str(tmp_path / "pairs"))
  training.train_and_evaluate(config)
  grid = np.asarray(Image.open(
      tmp_path / "run" / "samples" / "step_0000002.png"))
  width = grid.shape[1] // 3
  assert (grid[:, 2 * width:] == 255).all()  # The target column.
  # One cache, of the training split, holding training pairs.
  assert len(glob.glob(str(tmp_path / "pairs-*.index"))) == 1
  train = data_lib.open_split(str(data_dir), "train")
  assert stream_values(data_lib.make_dataset(
      train, config, 1, training=True, cache=config.data.cache), 8) == [0] * 8
