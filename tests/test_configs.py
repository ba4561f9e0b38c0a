"""The flagfiles in configs/ parse, validate and carry the paper's settings."""

import glob
import os

import numpy as np
import pytest
from absl import flags

from conftest import ROOT, load_tool
from pix2pix_tf import config as config_lib
from pix2pix_tf import options as options_lib
from pix2pix_tf.data import demo

CONFIGS = os.path.join(ROOT, "configs")
FLAG_DOC = os.path.join(ROOT, "docs", "flags.md")


# tools/update_docs.py, which writes docs/flags.md.
update_docs = load_tool("update_docs")

# name: (direction, batch size, total epochs, jitter, mirror), REFERENCE.md.
PAPER = {
    "facades": ("BtoA", 1, 200, True, True),
    "cityscapes": ("BtoA", 1, 200, True, True),
    "maps": ("AtoB", 1, 200, True, True),
    "edges2shoes": ("AtoB", 4, 15, False, False),
    "edges2handbags": ("AtoB", 4, 15, False, False),
    "night2day": ("BtoA", 4, 17, True, True),
}


def load_flagfile(path):
  """The Config that `python -m pix2pix_tf.train --flagfile=path` runs."""
  flag_values = flags.FlagValues()
  config_lib.define_flags(flag_values)
  flag_values(["train", f"--flagfile={path}"])
  return config_lib.Config.from_flag_values(flag_values)


def test_every_standard_dataset_has_a_flagfile():
  names = {os.path.basename(p)[:-6] for p in glob.glob(f"{CONFIGS}/*.flags")}
  assert set(PAPER) | {"demo"} <= names


@pytest.mark.parametrize("name", sorted(PAPER))
def test_flagfile_carries_the_papers_settings(name):
  path = os.path.join(CONFIGS, f"{name}.flags")
  config = load_flagfile(path)
  direction, batch_size, epochs, jitter, mirror = PAPER[name]
  assert config.data.data_dir == f"datasets/{name}"
  assert config.data.direction == direction
  assert config.optimisation.batch_size == batch_size
  assert config.optimisation.epochs + config.optimisation.epochs_decay == epochs
  assert (config.data.load_size > config.data.crop_size) == jitter
  assert config.data.flip == mirror
  assert (config.model.generator, config.data.crop_size,
          config.objective.lambda_l1) == ("unet_256", 256, 100.0)
  header = open(path).read().split("\n--")[0]
  assert f"python -m pix2pix_tf.train --flagfile=configs/{name}.flags" in (
      header)
  assert f"python -m pix2pix_tf.datasets download {name}" in header


@pytest.mark.parametrize("name", ["facades", "cityscapes"])
def test_label_flagfiles_record_their_palette(name):
  # The export then carries it: the page shows each class as a brush.
  config = load_flagfile(os.path.join(CONFIGS, f"{name}.flags"))
  assert config.outputs.label_palette == name


def test_maps_header_translates_at_native_resolution():
  header = open(os.path.join(CONFIGS, "maps.flags")).read().split("\n--")[0]
  assert ("python -m pix2pix_tf.predict --model_dir=runs/maps "
          "--resolution=native") in header
  assert "--tile=512" in header


def test_demo_flagfile_is_valid_and_small():
  path = os.path.join(CONFIGS, "demo.flags")
  config = load_flagfile(path)
  assert config.data.data_dir == "datasets/demo"
  assert config.data.crop_size == 64
  assert "python -m pix2pix_tf.train --flagfile=configs/demo.flags" in (
      open(path).read())


def test_demo_data_is_deterministic_and_paired(tmp_path):
  first = demo.write_dataset(str(tmp_path / "a"), 3, 1, 32, seed=5)
  second = demo.write_dataset(str(tmp_path / "b"), 3, 1, 32, seed=5)
  for split, count in (("train", 3), ("val", 1)):
    names = sorted(os.listdir(os.path.join(first, split)))
    assert len(names) == count
    for name in names:
      a = open(os.path.join(first, split, name), "rb").read()
      b = open(os.path.join(second, split, name), "rb").read()
      assert a == b
  # Label map colours come from the palette; the photo is textured.
  photo, label_map = demo.draw_example(np.random.RandomState(0), 64)
  colours = {tuple(c) for c in label_map.reshape(-1, 3)}
  assert colours <= set(demo.PALETTE.values())
  assert {demo.PALETTE["window"], demo.PALETTE["wall"]} <= colours
  assert len({tuple(c) for c in photo.reshape(-1, 3)}) > 100


def test_flag_doc_table_is_generated_from_config():
  """docs/flags.md's table is what tools/update_docs.py writes: every
  field, its default and its help, in order."""
  flag_doc = open(FLAG_DOC).read()
  table = config_lib.flag_table()
  assert table.count("\n| `--") == len(list(config_lib.option_fields()))
  assert table.count("\n### ") == len(config_lib.GROUPS) - 1
  assert table in flag_doc, ("docs/flags.md's flag table is stale: run "
                             "python tools/update_docs.py")


def test_flag_doc_command_flags_are_generated_from_each_commands_options():
  """Every other command's flags: docs/flags.md shows what
  define_command_flags defines from each command's OPTIONS (names, defaults,
  help), each command's table in full; every command module with OPTIONS is
  listed."""
  from absl import flags
  flag_doc = open(FLAG_DOC).read()
  assert update_docs.command_flag_reference() in flag_doc, (
      "docs/flags.md's command flags are stale: run python "
      "tools/update_docs.py")
  options_of = update_docs.command_options()
  # Every command has its own (train: --config; its training options are
  # Config's).
  assert list(options_of) == ["convert", "datasets", "evaluate", "export",
                              "predict", "segmenter", "serve", "study",
                              "summary", "train"]
  for command, options in options_of.items():
    flag_values = flags.FlagValues()
    options_lib.define_command_flags(options, flag_values)
    assert sorted(flag_values) == sorted(o.name for o in options)
    for option in options:
      assert flag_values[option.name].default == option.default
      assert option.help in flag_values[option.name].help


def test_with_flags_reads_flagfiles_like_absl():
  path = os.path.join(CONFIGS, "facades.flags")
  with open(path) as f:
    parsed = config_lib.Config().with_flags(f.read())
  assert parsed == load_flagfile(path)
  assert config_lib.Config().with_flags("--noflip --ngf=8").data.flip is False
  with pytest.raises(config_lib.ConfigError, match="Unknown training flag"):
    config_lib.Config().with_flags("--not_a_flag=1")
  with pytest.raises(config_lib.ConfigError, match="--ngf=many"):
    config_lib.Config().with_flags("--ngf=many")


def test_config_is_composed_of_frozen_groups_read_by_name():
  """Config holds one frozen dataclass per group of docs/flags.md; each
  option is in one group, under its flag's name; `replace` takes options by
  name whatever their group, and checks the result as a new Config."""
  import dataclasses
  config = config_lib.Config()
  assert [f.name for f in dataclasses.fields(config)] == list(
      config_lib.GROUPS)
  names = [field.name for _, field in config_lib.option_fields()]
  assert len(names) == len(set(names)) == len(config.flat())
  for name, group in config_lib.GROUPS.items():
    assert type(getattr(config, name)) is group
    with pytest.raises(dataclasses.FrozenInstanceError):
      setattr(getattr(config, name), dataclasses.fields(group)[0].name, 0)
  changed = config.replace(crop_size=128, generator="unet_128", seed=3)
  assert (changed.data.crop_size, changed.model.generator,
          changed.optimisation.seed) == (128, "unet_128", 3)
  assert changed.data.load_size == config.data.load_size
  assert config.data.crop_size == 256  # The original is unchanged.
  with pytest.raises(config_lib.ConfigError, match="Unknown training option"):
    config.replace(crop=128)
  with pytest.raises(config_lib.ConfigError, match="--crop_size=100"):
    config.replace(crop_size=100)


def test_a_run_records_its_options_flat_as_before_and_reads_them_back():
  """config.json and flags.txt hold one entry per flag, not the groups, so
  runs recorded before the groups existed still resume and export."""
  import json
  config = config_lib.Config().replace(crop_size=128, generator="unet_128")
  recorded = json.loads(config.to_json())
  assert recorded == config.flat() and recorded["crop_size"] == 128
  assert config_lib.Config.from_json(config.to_json()) == config
  # An older record: a flat dict missing options added since, and one
  # option this version no longer knows.
  older = {k: v for k, v in recorded.items() if k != "lambda_vgg"}
  older["an_old_option"] = 1
  read = config_lib.Config.from_json(json.dumps(older), data_dir="elsewhere")
  assert read.objective.lambda_vgg == 0.0
  assert read.data.data_dir == "elsewhere"
  assert read.model.generator == "unet_128"
