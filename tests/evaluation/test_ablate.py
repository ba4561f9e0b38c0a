"""tools/ablate.py: a two-variant grid of a few steps, and its resumption."""

import csv
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from conftest import ENV, ROOT
from pix2pix_tf.data import demo

TOOL = os.path.join(ROOT, "tools", "ablate.py")


def run_grid(data_dir, variants, out, steps=3):
  return subprocess.run(
      [sys.executable, TOOL, f"--data_dir={data_dir}",
       f"--variants={variants}", f"--steps={steps}", "--image_size=32",
       f"--out={out}", "--flags=--ngf=8 --ndf=8 --batch_size=2",
       "--num_samples=2"], capture_output=True, text=True, env=ENV,
      timeout=600)


@pytest.mark.slow
def test_grid_writes_tables_and_figures_and_resumes(tmp_path):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 6, 3, 32)
  variants = tmp_path / "grid.txt"
  variants.write_text("# receptive field, then loss\n"
                      "small_d: --d_layers=1\n"
                      "l1_only: --gan_mode=none\n")
  out = tmp_path / "out"
  first = run_grid(data_dir, variants, out)
  assert first.returncode == 0, first.stderr

  with open(out / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["variant"] for r in rows] == ["small_d", "l1_only"]
  assert [r["flags"] for r in rows] == ["--d_layers=1", "--gan_mode=none"]
  for row in rows:
    assert row["steps"] == "3"
    assert 0 < float(row["l1"]) < 2 and float(row["psnr"]) > 0
    assert -1 <= float(row["ssim"]) <= 1
  # The L1-only variant has no discriminator losses.
  assert rows[0]["train_disc_loss"] and not rows[1]["train_disc_loss"]
  table = (out / "results.md").read_text()
  assert "| small_d | `--d_layers=1` |" in table
  assert "| l1_only | `--gan_mode=none` |" in table
  for figure in ("losses.png", "samples.png"):
    image = Image.open(out / figure)
    assert image.size[0] > 200 and image.size[1] > 100
  # samples.png: input, target and one row per variant.
  assert Image.open(out / "samples.png").size[1] > Image.open(
      out / "samples.png").size[0]

  # A stopped grid resumes: the finished variant is kept, a half-finished
  # one continues from its checkpoint instead of restarting.
  os.remove(out / "l1_only" / "metrics.json")
  kept = json.loads((out / "small_d" / "metrics.json").read_text())
  second = run_grid(data_dir, variants, out, steps=5)
  assert second.returncode == 0, second.stderr
  assert "[small_d] done before" in second.stdout
  assert "Resumed from" in second.stdout and "at step 3." in second.stdout
  assert json.loads((out / "small_d" / "metrics.json").read_text()) == kept
  with open(out / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["steps"] for r in rows] == ["3", "5"]


@pytest.mark.slow
def test_bad_variants_are_rejected_before_training(tmp_path):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 2, 2, 32)
  variants = tmp_path / "grid.txt"
  variants.write_text("ok: --d_layers=1\ntoo_deep: --d_layers=5\n")
  result = run_grid(data_dir, variants, tmp_path / "out")
  assert result.returncode != 0
  assert "--d_layers=5 is too deep for --crop_size=32" in result.stderr
  assert not (tmp_path / "out").exists()
  result = run_grid(data_dir, "no_such_set", tmp_path / "out")
  assert result.returncode != 0 and "neither a built-in set" in result.stderr


def load_tool():
  import importlib.util
  spec = importlib.util.spec_from_file_location("ablate", TOOL)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_builtin_sets_are_the_studies_comparisons():
  ablate = load_tool()
  sets = ablate.VARIANT_SETS
  assert [n for n, _ in sets["receptive_field"]] == [
      "1x1", "16x16", "70x70", "142x142", "286x286"]
  assert [n for n, _ in sets["loss"]] == [
      "cGAN", "L1", "L2", "cGAN+L1", "cGAN+L2", "cGAN+L1+L2", "LSGAN+L1"]
  assert [n for n, _ in sets["paper_table1"]] == [
      "L1", "GAN", "cGAN", "L1+GAN", "L1+cGAN"]
  from pix2pix_tf import models
  for name, text in sets["receptive_field"]:
    config = ablate.apply_flags(ablate.base_config("d", 256, 10, "m"),
                                text).validate()
    discriminator = models.build_discriminator(
        ablate.apply_flags(config, "--ndf=4"))
    assert models.receptive_fields(discriminator) == [
        int(name.split("x")[0])]
  for name, text in sets["paper_table1"] + sets["loss"]:
    config = ablate.apply_flags(ablate.base_config("d", 128, 10, "m"),
                                text).validate()
    assert config.conditional_discriminator == (name != "GAN" and
                                                name != "L1+GAN")
    assert (config.gan_mode == "none") == (name in ("L1", "L2"))
    assert (config.lambda_l1 > 0) == ("L1" in name)
    assert (config.lambda_l2 > 0) == ("L2" in name)
