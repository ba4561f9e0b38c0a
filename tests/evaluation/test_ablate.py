"""tools/ablate.py: a two-variant grid of a few steps, and its resumption."""

import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading

import pytest
from PIL import Image

from conftest import ENV, NO_TENSORFLOW, ROOT, load_tool, run_saying_imports
from pix2pix_tf import outputs
from pix2pix_tf.data import demo
from pix2pix_tf.evaluation import fid_inception

TOOL = os.path.join(ROOT, "tools", "ablate.py")
PTH_DATA = os.path.join(ROOT, "tests", "models", "data")


def run_grid(data_dir, variants, out, steps=3, *extra, option="--study"):
  """The tool's run; its output ends by saying whether it imported
  TensorFlow (NO_TENSORFLOW)."""
  return run_saying_imports(
      TOOL, f"--data_dir={data_dir}", f"{option}={variants}",
      f"--steps={steps}", "--image_size=32", f"--out={out}",
      "--flags=--ngf=8 --ndf=8 --batch_size=2", "--num_samples=2", *extra)


@pytest.mark.slow
def test_grid_writes_tables_and_figures_and_resumes(tmp_path):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 6, 3, 32)
  variants = tmp_path / "grid.txt"
  variants.write_text("# receptive field, then loss\n"
                      "small_d: --d_layers=1\n"
                      "l1_only: --gan_mode=none --load_size=32"
                      " --max_steps=2\n")
  out = tmp_path / "out"
  # Photo -> labels on the demo data: scored with its palette too.
  palette = f"--label_palette={data_dir}/palette.json"
  first = run_grid(data_dir, variants, out, 3, palette)
  assert first.returncode == 0, first.stderr

  with open(out / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["variant"] for r in rows] == ["small_d", "l1_only"]
  assert [r["flags"] for r in rows] == [
      "--d_layers=1", "--gan_mode=none --load_size=32 --max_steps=2"]
  # l1_only trains its own steps.
  assert [r["steps"] for r in rows] == ["3", "2"]
  for row in rows:
    assert 0 < float(row["l1"]) < 2 and float(row["psnr"]) > 0
    assert -1 <= float(row["ssim"]) <= 1
  # The scores are the evaluate command's own, on the val split.
  from pix2pix_tf import evaluation
  for row in rows:
    result = evaluation.evaluate_saved_model(
        str(out / row["variant"] / "export"), data_dir, "val",
        evaluation.Options(label_palette=f"{data_dir}/palette.json",
                           verbose=False))
    for name in ("l1", "mse", "psnr", "ssim"):
      assert float(row[name]) == pytest.approx(result["metrics"][name],
                                               abs=1e-4), name
    scores = result["segmentation"]["photo_to_labels"]
    for name in ("per_pixel_accuracy", "per_class_accuracy", "class_iou"):
      assert float(row[f"photo_to_labels/{name}"]) == pytest.approx(
          scores[name], abs=1e-4), name
  # --load_size at the training size: no jitter for l1_only.
  used = [json.loads((out / name / "config.json").read_text())["load_size"]
          for name in ("small_d", "l1_only")]
  assert used == [36, 32]
  table = (out / "results.md").read_text()
  assert "labels per-pixel acc." in table and "labels class IoU" in table
  # The L1-only variant has no discriminator losses.
  assert rows[0]["train_disc_loss"] and not rows[1]["train_disc_loss"]
  table = (out / "results.md").read_text()
  assert "| small_d | `--d_layers=1` |" in table
  assert "| l1_only | `--gan_mode=none --load_size=32 --max_steps=2` | 2 |" \
      in table
  assert "| small_d | `--d_layers=1` | 3 |" in table
  assert "trained 2 to 3 steps (the steps column)" in table
  for figure in ("losses.png", "samples.png"):
    image = Image.open(out / figure)
    assert image.size[0] > 200 and image.size[1] > 100
  # samples.png: input, target and one row per variant.
  assert Image.open(out / "samples.png").size[1] > Image.open(
      out / "samples.png").size[0]

  # A stopped study resumes: a half-finished variant continues from its
  # checkpoint instead of restarting; finished ones are kept, or continued
  # when --steps grows.
  os.remove(out / "l1_only" / "metrics.json")
  kept = json.loads((out / "small_d" / "metrics.json").read_text())
  # --variants is the older name of --study.
  second = run_grid(data_dir, variants, out, 3, palette, option="--variants")
  assert second.returncode == 0, second.stderr
  assert "[small_d] done before" in second.stdout
  assert "[l1_only] training" in second.stdout
  assert "[l1_only] training 2 steps" in second.stdout
  assert "Resumed from" in second.stdout and "at step 2." in second.stdout
  assert json.loads((out / "small_d" / "metrics.json").read_text()) == kept
  third = run_grid(data_dir, variants, out, 5, palette)
  assert third.returncode == 0, third.stderr
  # small_d continued to 5; l1_only's own --max_steps=2 stays.
  assert "at step 3." in third.stdout
  assert "[l1_only] done before" in third.stdout
  with open(out / "results.csv") as f:
    assert [r["steps"] for r in csv.DictReader(f)] == ["5", "2"]
  assert "trained 2 to 5 steps" in (out / "results.md").read_text()
  # Rows of other settings or more steps are refused, not mixed in.
  before = {p: p.read_bytes() for p in out.glob("*/metrics.json")}
  for steps, extra, message in [
      (5, (), "trained or scored with other settings"),
      (4, (palette,), "more than the 4 steps it trains for at --steps=4")]:
    refused = run_grid(data_dir, variants, out, steps, *extra)
    assert refused.returncode != 0, refused.stdout
    assert f"{out}/small_d" in refused.stderr and message in refused.stderr
    assert NO_TENSORFLOW in refused.stdout  # Answered at once.
  assert {p: p.read_bytes() for p in out.glob("*/metrics.json")} == before
  # A half-trained variant (no row yet) is not continued under other flags.
  os.remove(out / "l1_only" / "metrics.json")
  only = tmp_path / "only.txt"
  only.write_text("l1_only: --gan_mode=none --load_size=32 "
                  "--max_steps=2\n")
  refused = run_grid(data_dir, only, out, 5, palette,
                     "--flags=--ngf=8 --ndf=8 --batch_size=2 --lambda_l1=50")
  assert refused.returncode != 0
  assert (f"{out}/l1_only holds variant l1_only trained with other settings"
          in refused.stderr)
  assert NO_TENSORFLOW in refused.stdout


@pytest.mark.slow
def test_a_stopped_variant_writes_no_row(tmp_path):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 6, 2, 32)
  out = tmp_path / "out"
  process = subprocess.Popen(
      [sys.executable, TOOL, f"--data_dir={data_dir}", "--study=batch_size",
       "--steps=100000", "--image_size=32", f"--out={out}",
       "--flags=--ngf=8 --ndf=8"], stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True, env=ENV)
  watchdog = threading.Timer(300, process.kill)  # Never hang the suite.
  watchdog.start()
  # Wait for training to run (its first training log line), then stop it.
  for line in process.stdout:
    if line.startswith("Epoch 1/"):
      break
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=300)
  watchdog.cancel()
  assert process.returncode != 0
  assert "[batch1] stopped at step" in stderr
  assert "run the same command again to continue" in stderr
  assert not (out / "batch1" / "metrics.json").exists()
  assert not (out / "batch32").exists()


@pytest.mark.slow
def test_bad_variants_are_rejected_before_training(tmp_path):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 2, 2, 32)
  variants = tmp_path / "grid.txt"
  variants.write_text("ok: --d_layers=1\ntoo_deep: --d_layers=5\n")
  result = run_grid(data_dir, variants, tmp_path / "out")
  assert result.returncode != 0
  assert "--d_layers=5 is too deep for --crop_size=32" in result.stderr
  assert not (tmp_path / "out").exists()
  assert NO_TENSORFLOW in result.stdout  # Answered at once.
  # A variant that empties --model_dir is refused before any trains.
  variants.write_text("ok: --d_layers=1\nmoved: --model_dir=\n")
  result = run_grid(data_dir, variants, tmp_path / "out")
  assert result.returncode != 0
  assert "The variant moved ('--model_dir=') sets --model_dir" in (
      result.stderr)
  assert not (tmp_path / "out").exists()
  assert NO_TENSORFLOW in result.stdout
  result = run_grid(data_dir, "no_such_set", tmp_path / "out")
  assert result.returncode != 0 and "neither a built-in study" in result.stderr
  assert NO_TENSORFLOW in result.stdout
  # Scoring that cannot work is refused before anything trains: a palette
  # whose label maps the pairs do not show, a segmenter or Inception
  # weights that are not there.
  for extra, message in [
      (["--label_palette=cityscapes"], "looks like its label maps"),
      ([f"--label_palette={data_dir}/palette.json",
        "--flags=--ngf=8 --direction=BtoA"],
       "labels -> photo is scored by an FCN"),
      (["--label_palette=facades", f"--segmenter={tmp_path}/none"],
       "is not a SavedModel"),
      ([f"--inception_weights={PTH_DATA}/state.pth"],
       "tensor Conv2d_1a_3x3.conv.weight is missing"),
      ([f"--inception_weights={tmp_path}/none.h5"], "is not a file")]:
    result = run_grid(data_dir, "batch_size", tmp_path / "out", 3, *extra)
    assert result.returncode != 0 and message in result.stderr, extra
    assert not (tmp_path / "out").exists()
  assert NO_TENSORFLOW in result.stdout  # Missing weights: at once.


def test_builtin_studies_are_the_studies_comparisons():
  ablate = load_tool("ablate")
  sets = ablate.STUDIES
  assert set(sets) == {"objective", "paper_table1", "loss", "receptive_field",
                       "batch_size", "augmentation", "colorization"}
  assert [n for n, _ in sets["objective"]] == [
      "L1", "GAN", "cGAN", "L1+GAN", "L1+cGAN", "L2", "L2+cGAN"]
  assert [n for n, _ in sets["receptive_field"]] == [
      "1x1", "16x16", "70x70", "142x142", "286x286"]
  assert [n for n, _ in sets["loss"]] == [
      "cGAN", "L1", "L2", "cGAN+L1", "cGAN+L2", "cGAN+L1+L2", "LSGAN+L1"]
  assert [n for n, _ in sets["paper_table1"]] == [
      "L1", "GAN", "cGAN", "L1+GAN", "L1+cGAN"]
  from pix2pix_tf import models
  for name, text in sets["receptive_field"]:
    config = ablate.base_config("d", 256, 10, "m").with_flags(text)
    discriminator = models.build_discriminators(config.with_flags("--ndf=4"))
    assert models.receptive_fields(discriminator) == [
        int(name.split("x")[0])]
  for name, text in sets["paper_table1"] + sets["loss"]:
    config = ablate.base_config("d", 128, 10, "m").with_flags(text)
    assert config.model.conditional_discriminator == (
        name not in ("GAN", "L1+GAN"))
    assert (config.objective.gan_mode == "none") == (name in ("L1", "L2"))
    assert (config.objective.lambda_l1 > 0) == ("L1" in name)
    assert (config.objective.lambda_l2 > 0) == ("L2" in name)

  def config_of(flags, size=128):
    return ablate.variant_config(flags, {"data_dir": "d", "image_size": size,
                                         "steps": 10, "flags": "",
                                         "out": "out"}, "v")[0]

  for name, text in sets["objective"]:
    config = config_of(text)
    assert (config.objective.gan_mode == "none") == (name in ("L1", "L2"))
    assert (config.objective.lambda_l2 > 0) == ("L2" in name)
  # Batch 32 for the same steps, and for the same images: a 32nd of them.
  args = {"data_dir": "d", "image_size": 64, "steps": 1500, "flags": "",
          "out": "out"}
  configs = [ablate.variant_config(t, args, name)[0]
             for name, t in sets["batch_size"]]
  assert [(c.optimisation.batch_size, c.optimisation.max_steps)
          for c in configs] == [(1, 1500), (32, 1500), (32, 47)]
  # Its periods follow its own steps (a loss curve, a final checkpoint).
  periods = configs[2].outputs
  assert (periods.log_every_steps, periods.eval_every_steps) == (1, 47)
  assert ablate.variant_config(sets["batch_size"][2][1], args, "v")[1] == (
      "--batch_size=32 --max_steps=47")
  # Augmentation: jitter is a resize above the crop size (then a random
  # crop back), mirroring the random flip; without jitter, --load_size is
  # the crop size.
  for size in (64, 128):
    data = [config_of(t, size).data for _, t in sets["augmentation"]]
    assert [(d.load_size > size, d.flip) for d in data] == [
        (True, True), (True, False), (False, True), (False, False)]
  assert [(config_of(t).data.input_channels, config_of(t).objective.gan_mode)
          for _, t in sets["colorization"]] == [(1, "none"), (1, "vanilla")]


def test_results_table_has_the_ground_truth_row_and_the_papers_numbers():
  ablate = load_tool("ablate")
  rows = []
  for i, name in enumerate(["L1", "L1+cGAN", "L2"]):
    row = {"variant": name, "flags": f"--x={i}", "l1": 0.1 + i, "mse": 0.2,
           "psnr": 20.0 + i, "ssim": 0.5}
    for task, base in (("fcn_generated", 0.1 * i),
                       ("fcn_ground_truth", 0.7)):
      for j, score in enumerate(ablate.SEGMENTATION_SCORES):
        row[f"{task}/{score}"] = base + 0.01 * j
    rows.append(row)
  lines = ablate.markdown_table(rows, "objective")
  assert lines[0] == ("| variant | flags | L1 | MSE | PSNR | SSIM | FCN "
                      "per-pixel acc. | FCN per-class acc. | FCN class IoU | "
                      "paper, Cityscapes labels → photo, 256x256: "
                      "per-pixel / per-class / IoU |")
  assert lines[2] == ("| L1 | `--x=0` | 0.1000 | 0.2000 | 20.00 | 0.5000 | "
                      "0.000 | 0.010 | 0.020 | 0.42 / 0.15 / 0.11 |")
  assert lines[3].endswith("| 0.100 | 0.110 | 0.120 | 0.66 / 0.23 / 0.17 |")
  assert lines[4].endswith("| 0.200 | 0.210 | 0.220 | - |")  # Not in it.
  assert lines[5] == ("| ground truth | (the real photos) | - | - | - | - | "
                      "0.700 | 0.710 | 0.720 | 0.80 / 0.26 / 0.21 |")
  # A study the paper has no FCN table for, and rows without FCN-scores:
  # no paper column, no ground-truth row.
  assert "paper" not in ablate.markdown_table(rows, "batch_size")[0]
  plain = [{k: v for k, v in r.items() if "/" not in k} for r in rows]
  assert len(ablate.markdown_table(plain, "objective")) == 5


def test_each_variant_keeps_its_colour_in_every_loss_panel(tmp_path):
  import tensorflow as tf
  ablate = load_tool("ablate")
  # An L1-only variant logs no GAN losses; the others must not shift
  # colours in the panels it is missing from.
  logged = {"L1": ("gen_l1_loss",),
            "GAN": ("gen_l1_loss", "gen_gan_loss", "disc_loss"),
            "L1+cGAN": ("gen_l1_loss", "gen_gan_loss", "disc_loss")}
  for name, tags in logged.items():
    writer = tf.summary.create_file_writer(
        str(tmp_path / name / "logs" / "train"))
    with writer.as_default():
      for step in range(3):
        for tag in tags:
          tf.summary.scalar(tag, 0.1 * step, step=step)
    writer.close()
  drawn = ablate.plot_losses(list(logged),
                             outputs.Folder(str(tmp_path), "out"))
  assert set(drawn) == {(tag, name) for name, tags in logged.items()
                        for tag in tags}
  for name in logged:
    assert len({c for (_, n), c in drawn.items() if n == name}) == 1, name
  assert len({c for c in drawn.values()}) == 3
  assert (tmp_path / "losses.png").stat().st_size > 0


def test_fid_and_kid_are_scored_exactly_when_given_the_weights(tmp_path,
                                                              monkeypatch):
  ablate = load_tool("ablate")
  args = {"data_dir": str(tmp_path), "image_size": 32, "steps": 50,
          "flags": "", "out": str(tmp_path), "label_palette": "",
          "segmenter": "", "inception_weights": ""}
  assert "fid" not in ablate.evaluation_options(args).metrics
  assert {"l1", "psnr", "ssim", "fid", "kid"} <= set(
      ablate.evaluation_options(dict(args, inception_weights="w.h5")).metrics)
  # The results say what the FID is comparable with.
  assert "FID" not in ablate.inception_text(args)
  assert "only between runs" in ablate.inception_text(
      dict(args, inception_weights="w.h5"))
  weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
  weights.write_bytes(b"not pytorch-fid's")
  assert "weights other than pytorch-fid's" in ablate.inception_text(
      dict(args, inception_weights=str(weights)))
  monkeypatch.setattr(fid_inception, "WEIGHTS_SHA256_PREFIX", hashlib.sha256(
      b"not pytorch-fid's").hexdigest()[:8])  # Taken for pytorch-fid's.
  assert "FID as pytorch-fid computes it" in ablate.inception_text(
      dict(args, inception_weights=str(weights)))


def test_a_variant_with_its_own_steps_is_kept_continued_or_refused(tmp_path):
  ablate = load_tool("ablate")
  args = {"data_dir": str(tmp_path), "image_size": 32, "steps": 50,
          "flags": "", "out": str(tmp_path), "label_palette": "",
          "segmenter": "", "inception_weights": ""}
  flags = ablate.same_images_at_batch_32
  config, text = ablate.variant_config(flags, args, "v")
  assert config.optimisation.max_steps == 2
  assert text == "--batch_size=32 --max_steps=2"
  (tmp_path / "v").mkdir()

  def row_of(steps):
    row = {"variant": "v", "flags": text, "steps": steps,
           "settings": ablate.settings(flags, args), "l1": 0.5}
    (tmp_path / "v" / "metrics.json").write_text(json.dumps(row))
    return row

  row = row_of(2)
  assert ablate.finished_row("v", flags, args,
                             config.optimisation.max_steps) == row
  row_of(1)  # Stopped short: continued.
  assert ablate.finished_row("v", flags, args,
                             config.optimisation.max_steps) is None
  row_of(3)
  with pytest.raises(ValueError,
                     match="trained 3 steps, more than the 2 steps"):
    ablate.finished_row("v", flags, args, config.optimisation.max_steps)
  # More --steps continue it: its flags are what the function writes.
  row_of(2)
  more = dict(args, steps=100)
  assert ablate.variant_config(flags, more, "v")[0].optimisation.max_steps == 4
  assert ablate.finished_row("v", flags, more, 4) is None
  # A finished row whose flags the function no longer writes is refused.
  (tmp_path / "v" / "metrics.json").write_text(json.dumps(
      dict(row_of(2), flags="--batch_size=16 --max_steps=2")))
  with pytest.raises(ValueError, match="trained with '--batch_size=16"):
    ablate.finished_row("v", flags, args, config.optimisation.max_steps)
  # The table names each variant's steps when they differ.
  rows = [dict(row, variant="a", steps=50), dict(row, steps=2)]
  table = ablate.markdown_table(rows, "batch_size")
  assert table[0].startswith("| variant | flags | steps | L1 |")
  assert table[2].startswith("| a | `--batch_size=32 --max_steps=2` | 50 |")
  assert table[3].startswith("| v | `--batch_size=32 --max_steps=2` | 2 |")
  assert "steps" not in ablate.markdown_table(rows[:1], "batch_size")[0]
  # A variant's flags written by a function see --flags applied.
  common = dict(args, flags="--max_steps=64")
  assert ablate.variant_config("", common, "v")[0].optimisation.max_steps == 64
  config, text = ablate.variant_config(ablate.same_images_at_batch_32, common,
                                       "v")
  assert (config.optimisation.batch_size, config.optimisation.max_steps,
          config.outputs.eval_every_steps,
          text) == (32, 2, 2, "--batch_size=32 --max_steps=2")
  config = ablate.variant_config(ablate.same_images_at_batch_32,
                                 dict(args, steps=10), "v")[0]
  assert config.optimisation.max_steps == 1
  # Flag text is flags only: a value that is not one is refused, naming
  # the flag; and so is training no steps.
  with pytest.raises(ValueError, match="max_steps"):
    ablate.variant_config("--max_steps={steps/2}", args, "v")
  old = tmp_path / "old.txt"
  old.write_text("half: --max_steps={steps/2}\n")
  with pytest.raises(ValueError, match=r"old\.txt:1: .* holds a placeholder"):
    ablate.load_variants(str(old))
  with pytest.raises(ValueError, match="at least one"):
    ablate.variant_config("--max_steps=0 --epochs=5", args, "v")
  # The folders are ablate's to choose: another is refused, naming its
  # source; the variant's own folder is what ablate chooses anyway.
  own = ablate.variant_config(f"--model_dir={tmp_path}/v", args, "v")[0]
  assert own.outputs.model_dir == os.path.join(args["out"], "v")
  for flag, value, rule in (
      ("model_dir", f"{tmp_path}/elsewhere", "writes each variant to"),
      ("model_dir", "", "writes each variant to"),
      ("data_dir", f"{tmp_path}/elsewhere", "trains every variant on")):
    text = f"--{flag}={value}"
    with pytest.raises(ValueError, match=re.escape(
        f"The variant v ({text!r}) sets --{flag}, but ablate {rule}") +
                       ".*remove it from the variant"):
      ablate.variant_config(text, args, "v")
    with pytest.raises(ValueError, match=re.escape(
        f"--flags={text!r} sets --{flag}, but ablate {rule}") +
                       ".*remove it from --flags"):
      ablate.variant_config("--gan_mode=none", dict(args, flags=text), "v")


def test_each_study_write_up_shows_the_studies_own_results():
  """Each study under docs/ is the runner's output, and the study's write-up
  (docs/ablation_*/README.md, the one doc that discusses it) shows its
  table unchanged: every row of results.md, and every score in it equal to
  results.csv's to the table's digits."""
  ablate = load_tool("ablate")
  folders = sorted(p for p in os.listdir(os.path.join(ROOT, "docs"))
                   if p.startswith("ablation_"))
  assert folders
  for name in folders:
    folder = os.path.join(ROOT, "docs", name)
    assert {"README.md", "results.md", "results.csv", "losses.png",
            "samples.png"} <= set(os.listdir(folder)), name
    write_up = open(os.path.join(folder, "README.md")).read()
    rows = [line for line in open(os.path.join(folder, "results.md"))
            if line.startswith("|")]
    # The whole table, in order, as one block of the write-up.
    assert "".join(rows) in write_up, (
        f"{name}: its table is not the one in {name}/README.md")
    with open(os.path.join(folder, "results.csv")) as f:
      values = [{k: v if k in ("variant", "flags") else float(v)
                 for k, v in row.items() if v or k == "flags"}
                for row in csv.DictReader(f)]
    # The table again from the CSV (without the paper's column, which
    # comes last): each line is the start of results.md's.
    table = ablate.markdown_table(values, "")
    assert len(table) == len(rows), name
    for made, line in zip(table, rows):
      assert line.startswith(made[:-1]), (name, made, line)
