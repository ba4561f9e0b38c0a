r"""Trains and compares the studies' variants of pix2pix: tables and figures.

    python tools/ablate.py --data_dir=datasets/facades --study=objective \
        --steps=2000 --image_size=128 --out=ablations/objective
    python tools/ablate.py --data_dir=cityscapes --study=paper_table1 \
        --label_palette=cityscapes --segmenter=segmenter/export ...
    python tools/ablate.py --data_dir=datasets/facades --study=my_grid.txt ...

--study (or --variants) is a built-in study (objective, paper_table1, loss,
receptive_field, batch_size, augmentation, colorization) or a file with one
variant per line, `name: --flag=value --flag=value` (training flags; `#`
starts a comment). Every variant trains for --steps steps (or its own
--max_steps) at --image_size (U-Net of depth log2(image_size),
jitter from 1.12x the size) with the same seed and data, then its export is
scored on the val split (else test) by `evaluate`'s own code. Writes to
--out:

    results.csv, results.md   one row per variant: flags, L1, MSE, PSNR,
                              SSIM; FID and KID with --inception_weights;
                              with --label_palette the segmentation scores
                              (labels -> photo: the FCN-score, which needs
                              --segmenter; photo -> labels: of the output)
    losses.png                training loss curves of every variant
    samples.png               one row per variant on the same inputs
    <variant>/                the variant's run (checkpoints, logs, export)

A study that was stopped resumes where it stopped: finished variants are
kept (their metrics.json), a half-trained one continues from its checkpoint.
"""

import csv
import io
import json
import math
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import architectures
from pix2pix_tf import config as config_lib
from pix2pix_tf import errors
from pix2pix_tf import outputs

# A variant's own training flags: text, or a function of the base config
# that writes them.
Flags = Union[str, Callable[[config_lib.Config], str]]


def same_images_at_batch_32(base: config_lib.Config) -> str:
  """Batch 32 for a 32nd of the base's steps: the images batch 1 sees."""
  steps = math.ceil(base.optimisation.max_steps / 32)
  return f"--batch_size=32 --max_steps={steps}"


def without_jitter(base: config_lib.Config) -> str:
  """No random resize-and-crop: each half is loaded at the training size."""
  return f"--load_size={base.data.crop_size}"


def without_jitter_or_mirroring(base: config_lib.Config) -> str:
  """Neither the random resize-and-crop nor the random flip."""
  return without_jitter(base) + " --flip=false"


def field_variant(field: int) -> Tuple[str, str]:
  """The variant whose discriminator sees `field` x `field` pixels, by
  architectures.RECEPTIVE_FIELDS: the PixelGAN, or a PatchGAN's layers."""
  layers = architectures.RECEPTIVE_FIELDS[field]
  return (f"{field}x{field}",
          f"--d_layers={layers}" if layers else "--discriminator=pixel")


# The studies' comparisons. Each variant: (name, training flags), the flags
# as text or, where they depend on --steps or --image_size, a function of
# the base config (--image_size, --steps and --flags applied) that writes
# them.
PAPER_TABLE1 = [
    ("L1", "--gan_mode=none"),
    ("GAN", "--conditional_discriminator=false --lambda_l1=0"),
    ("cGAN", "--lambda_l1=0"),
    ("L1+GAN", "--conditional_discriminator=false"),
    ("L1+cGAN", ""),
]
STUDIES = {
    # The paper's Table 1 (the objective, scored on Cityscapes labels ->
    # photo by an FCN), and with the follow-up studies' L2 terms.
    "paper_table1": PAPER_TABLE1,
    "objective": PAPER_TABLE1 + [
        ("L2", "--gan_mode=none --lambda_l1=0 --lambda_l2=100"),
        ("L2+cGAN", "--lambda_l1=0 --lambda_l2=100"),
    ],
    # Paper Table 3 and the follow-up receptive-field study, cGAN + L1.
    "receptive_field": [field_variant(field)
                        for field in (1, 16, 70, 142, 286)],
    # The loss study at 70x70.
    "loss": [
        ("cGAN", "--lambda_l1=0"),
        ("L1", "--gan_mode=none"),
        ("L2", "--gan_mode=none --lambda_l1=0 --lambda_l2=100"),
        ("cGAN+L1", ""),
        ("cGAN+L2", "--lambda_l1=0 --lambda_l2=100"),
        ("cGAN+L1+L2", "--lambda_l2=100"),
        ("LSGAN+L1", "--gan_mode=lsgan"),
    ],
    # Batch 1 (the paper's, batch norm acting as instance norm) against 32,
    # for the same number of steps (32 times the images) and for the same
    # images (the same epochs, a 32nd of the steps).
    "batch_size": [
        ("batch1", "--batch_size=1"),
        ("batch32", "--batch_size=32"),
        ("batch32_same_images", same_images_at_batch_32),
    ],
    # Random jitter (resize to 1.12x, random crop back) and mirroring.
    "augmentation": [
        ("jitter+mirror", ""),
        ("jitter", "--flip=false"),
        ("mirror", without_jitter),
        ("none", without_jitter_or_mirroring),
    ],
    # Grayscale -> colour (on `datasets colorize` pairs): L1 alone against
    # L1+cGAN, the paper's Figure 15 comparison.
    "colorization": [
        ("L1", "--input_channels=1 --gan_mode=none"),
        ("L1+cGAN", "--input_channels=1"),
    ],
}

# The paper's FCN-scores on Cityscapes labels -> photo at 256x256 (Tables 1
# and 3): per-pixel accuracy, per-class accuracy, class IoU.
PAPER_FCN_SCORES = {
    "paper_table1": {"L1": (0.42, 0.15, 0.11), "GAN": (0.22, 0.05, 0.01),
                     "cGAN": (0.57, 0.22, 0.16), "L1+GAN": (0.64, 0.20, 0.15),
                     "L1+cGAN": (0.66, 0.23, 0.17),
                     "ground truth": (0.80, 0.26, 0.21)},
    "receptive_field": {"1x1": (0.39, 0.15, 0.10), "16x16": (0.65, 0.21, 0.17),
                        "70x70": (0.66, 0.23, 0.17),
                        "286x286": (0.42, 0.16, 0.11),
                        "ground truth": (0.80, 0.26, 0.21)},
}
PAPER_FCN_SCORES["objective"] = PAPER_FCN_SCORES["paper_table1"]

# The table's columns: (result key, header, digits). Segmentation scores are
# "<task>/<score>" keys, as the val pass logs them.
SCORE_COLUMNS = [("l1", "L1", 4), ("mse", "MSE", 4), ("psnr", "PSNR", 2),
                 ("ssim", "SSIM", 4), ("fid", "FID", 2), ("kid", "KID", 4)]
SEGMENTATION_TASKS = ("fcn_generated", "photo_to_labels")
SEGMENTATION_SCORES = ("per_pixel_accuracy", "per_class_accuracy",
                       "class_iou")
SEGMENTATION_HEADERS = ("per-pixel acc.", "per-class acc.", "class IoU")

FLAGS = flags.FLAGS
# What the study writes in --out, and beside each variant's run.
RESULTS = ("results.csv", "results.md", "losses.png", "samples.png")
VARIANT_FILES = ("settings.json", "metrics.json")


def variant_folder(model_dir: str) -> outputs.Folder:
  """A variant's run folder, as the study writes its own files there."""
  return outputs.Folder(model_dir, "out", kind="ablation")


def load_variants(spec: str) -> List[Tuple[str, Flags]]:
  """(name, flags) pairs from a built-in study's name or a variants file."""
  if spec in STUDIES:
    return STUDIES[spec]
  if not os.path.isfile(spec):
    raise errors.CommandError(
        f"--study={spec} is neither a built-in study "
        f"({', '.join(STUDIES)}) nor a file.")
  variants = []
  with open(spec) as f:
    for number, line in enumerate(f, 1):
      line = line.split("#", 1)[0].strip()
      if not line:
        continue
      name, sep, flag_text = line.partition(":")
      if not sep or not name.strip():
        raise errors.CommandError(
            f"{spec}:{number}: expected 'name: --flag=value "
            f"...', got {line!r}.")
      if "{" in flag_text:
        raise errors.CommandError(
            f"{spec}:{number}: {flag_text.strip()!r} holds a placeholder; "
            "a variant's flags are plain values (give its own --max_steps "
            "or --load_size as numbers).")
      variants.append((name.strip(), flag_text.strip()))
  if not variants:
    raise errors.CommandError(
        f"{spec} lists no variants.")
  return variants


def base_config(data_dir: str, image_size: int, steps: int,
                model_dir: str) -> config_lib.Config:
  """Every variant's starting point: a U-Net of depth log2(image_size),
  jitter from 1.12x the size, a constant learning rate."""
  depth = int(math.log2(image_size))
  load_size = 2 * round(image_size * 286 / 256 / 2)
  interval = max(1, steps // 50)
  return config_lib.Config().replace(
      data_dir=data_dir, model_dir=model_dir, crop_size=image_size,
      load_size=load_size, generator="unet", unet_depth=depth,
      # max_steps alone sets the length (not capped at --epochs).
      epochs=0, epochs_decay=0,
      max_steps=steps, lr_policy="constant", log_every_steps=interval,
      sample_every_steps=steps, eval_every_steps=steps,
      checkpoint_every_steps=max(1, steps // 4))


def variant_config(flags: Flags, args: dict, name: str
                   ) -> Tuple[config_lib.Config, str]:
  """Variant `name`'s training config (the base in --out/NAME, then
  --flags, then its own flags; periods from its own steps) and its own
  flags as text (`flags`, or what the function `flags` writes for the base
  with --flags).

  Raises:
    ValueError: the variant would train less than one step, or it or
      --flags sets --model_dir or --data_dir.
  """
  def base(steps):
    return base_config(args["data_dir"], args["image_size"], steps,
                       os.path.join(args["out"], name))
  common = args["flags"]
  with_common = base(args["steps"]).with_flags(common)
  text = flags(with_common) if callable(flags) else flags
  steps = with_common.with_flags(text).optimisation.max_steps
  if steps < 1:
    raise errors.CommandError(
        f"--steps={args['steps']} with {text!r} trains "
        f"{steps} steps: ablate trains by steps, at least one.")
  chosen = base(steps)
  config = chosen.with_flags(common)
  _refuse_folders(chosen, config, f"--flags={common!r}", "--flags")
  config, chosen = config.with_flags(text), config
  _refuse_folders(chosen, config, f"The variant {name} ({text!r})",
                  "the variant")
  return config, text


def _refuse_folders(chosen: config_lib.Config, config: config_lib.Config,
                    source: str, place: str) -> None:
  """A CommandError if `source` (the flags in `place`) moved config's
  folders from `chosen`'s, which ablate chooses."""
  for flag, value, ablate_value, rule in (
      ("model_dir", config.outputs.model_dir, chosen.outputs.model_dir,
       "ablate writes each variant to --out/NAME"),
      ("data_dir", config.data.data_dir, chosen.data.data_dir,
       "ablate trains every variant on its own --data_dir")):
    if value != ablate_value:
      raise errors.CommandError(f"{source} sets --{flag}, but {rule}: "
                                f"remove it from {place}.")


def eval_split(data_dir: str) -> str:
  """The split the variants are scored on: val, else test."""
  from pix2pix_tf import data as data_lib
  for split in ("val", "test"):
    if data_lib.has_split(data_dir, split):
      return split
  raise errors.CommandError(
      f"{data_dir} has neither val/ nor test/ images to "
      "evaluate on. Hold out part of train/ into val/.")


def evaluation_options(args: dict) -> object:
  """What the variants are scored with: `evaluate`'s options."""
  from pix2pix_tf import evaluation
  metrics = ("l1", "mse", "psnr", "ssim") + (
      ("fid", "kid") if args["inception_weights"] else ())
  return evaluation.Options(
      metrics=metrics, label_palette=args["label_palette"],
      segmenter=args["segmenter"],
      inception_weights=args["inception_weights"], verbose=False)


def check_scoring(args: dict, split: str) -> None:
  """Refuses, before anything trains, scoring files that do not load, a
  palette whose label maps are on neither side of the evaluated pairs, and
  labels -> photo with a palette but no segmenter (no FCN-score)."""
  from pix2pix_tf import data as data_lib
  from pix2pix_tf import evaluation
  config = config_lib.Config().replace(label_palette=args["label_palette"],
                                       segmenter=args["segmenter"])
  evaluation.check_evaluation_files(config)
  if args["segmenter"]:
    evaluation.load_segmenter(args["segmenter"])
  if args["inception_weights"]:
    from pix2pix_tf.evaluation import metrics
    metrics.inception_model(args["inception_weights"])
  if not args["label_palette"]:
    return
  files = data_lib.list_split(args["data_dir"], split)[:8]
  batch = next(iter(data_lib.make_dataset(
      files, base_config(args["data_dir"], args["image_size"], 1,
                         "").with_flags(args["flags"]),
      len(files), training=False)))
  side = evaluation.detect_labels_side(
      *batch, data_lib.load_palette(args["label_palette"]))
  if side is None:
    raise errors.CommandError(
        f"--label_palette={args['label_palette']}: neither side of "
        f"{args['data_dir']}/{split}'s pairs looks like its label maps.")
  if side == "input" and not args["segmenter"]:
    raise errors.CommandError(
        "labels -> photo is scored by an FCN: give --segmenter (train one "
        "with python -m pix2pix_tf.segmenter), or leave out "
        "--label_palette.")


def score_export(export_dir: str, args: dict, split: str
                 ) -> Dict[str, float]:
  """An export's scores on the evaluated split, by `evaluate`'s own code:
  the metrics, and "<task>/<score>" for each segmentation score."""
  from pix2pix_tf import evaluation
  result = evaluation.evaluate_saved_model(
      export_dir, args["data_dir"], split, evaluation_options(args))
  scores = dict(result["metrics"])
  for task, values in result.get("segmentation", {}).items():
    for name in SEGMENTATION_SCORES:
      scores[f"{task}/{name}"] = values[name]
  return scores


def generate_export(export_dir: str, config: config_lib.Config,
                    files: Sequence[str]) -> list:
  """An exported generator's outputs on `files`, in [-1, 1]."""
  from pix2pix_tf import data as data_lib
  from pix2pix_tf import serving

  translate = serving.load_export(export_dir).signatures["serving_default"]
  dataset = data_lib.make_dataset(files, config, 8, training=False)
  return [image for input_image, _ in dataset
          for image in translate(images=input_image)[
              "generated_image"].numpy()]


def read_scalars(log_dir: str) -> Dict[str, List[Tuple[int, float]]]:
  """Scalar curves from a TensorBoard log folder: tag -> [(step, value)]."""
  import tensorflow as tf
  curves = {}
  for name in sorted(os.listdir(log_dir)):
    if not name.startswith("events.out.tfevents"):
      continue
    for record in tf.data.TFRecordDataset(os.path.join(log_dir, name)):
      event = tf.compat.v1.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "scalars":
          curves.setdefault(value.tag, []).append(
              (event.step, float(tf.make_ndarray(value.tensor))))
  return {tag: sorted(points) for tag, points in curves.items()}


def settings(flags: Flags, args: dict) -> dict:
  """What a variant's row depends on, besides its steps: how it trains
  (also kept in <variant>/settings.json from its start) and is scored. A
  variant whose flags a function writes is named by the function: what it
  writes for more --steps continues the same variant."""
  return {"training": {"data_dir": os.path.realpath(args["data_dir"]),
                       "image_size": args["image_size"],
                       "flags": args["flags"], "variant_flags": (
                           flags if isinstance(flags, str)
                           else f"{flags.__name__}()")},
          "scoring": {k: args[k] for k in ("label_palette", "segmenter",
                                           "inception_weights")}}


def read_json(path: str) -> Optional[dict]:
  """The JSON file at `path`; None when there is none."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def finished_row(name: str, flags: Flags, args: dict, steps: int
                 ) -> Optional[dict]:
  """The row of a variant finished before with these settings and `steps`
  (its own: --steps unless its flags set --max_steps); None when it is to
  train (or to continue to more steps).

  Raises:
    ValueError: its folder holds the variant trained or scored otherwise,
      or for more steps: its row would not be what the table says.
  """
  folder = os.path.join(args["out"], name)
  wanted = settings(flags, args)
  started = read_json(os.path.join(folder, "settings.json"))
  row = read_json(os.path.join(folder, "metrics.json"))
  if row is not None and "settings" not in row:
    raise errors.CommandError(
        f"{folder} was written by an earlier version of this "
        "tool, which did not record its settings; give another "
        f"--out, or remove {folder} to train it again.")
  for kind, found in (("trained", started and {"training": started}),
                      ("trained or scored", row and row["settings"])):
    if found and {k: wanted.get(k) for k in found} != found:
      raise errors.CommandError(
          f"{folder} holds variant {name} {kind} with other settings than "
          f"these ({found}); give another --out, or remove {folder} to "
          "train it again.")
  if row is None:
    return None
  if row["steps"] > steps:
    raise errors.CommandError(
        f"{folder} was trained {row['steps']} steps, more than "
        f"the {steps} steps it trains for at --steps="
        f"{args['steps']}; give another --out.")
  if row["steps"] < steps:
    return None
  # Settings name a function variant by its name: its flags must still be
  # what it writes.
  text = variant_config(flags, args, name)[1]
  if row["flags"] != text:
    raise errors.CommandError(
        f"{folder} holds variant {name} trained with {row['flags']!r}, not "
        f"{text!r}; give another --out, or remove {folder} to train it "
        "again.")
  return row


def run_variant(name: str, flags: Flags, args: dict, strategy: object,
                split: str) -> dict:
  """Trains (or continues) and scores one variant; returns its result row.
  Exits, writing no row, when SIGTERM stops the training."""
  from pix2pix_tf import training
  from pix2pix_tf.training import losses

  config, text = variant_config(flags, args, name)
  model_dir = config.outputs.model_dir  # --out/NAME, as variant_config chose.
  training.check_run(config, strategy)  # Before its folder is written.
  print(f"[{name}] training {config.optimisation.max_steps} steps: "
        f"{text or 'defaults'}", flush=True)
  run_folder = variant_folder(model_dir)
  run_folder.write_text("settings.json", json.dumps(
      settings(flags, args)["training"], indent=2))
  final = training.train_and_evaluate(config, strategy)
  if final.get("stopped"):
    sys.exit(f"ablate: [{name}] stopped at step {final['step']}; run the "
             "same command again to continue.")
  values = score_export(os.path.join(model_dir, "export"), args, split)
  row = {"variant": name, "flags": text,
         "steps": final["step"], "settings": settings(flags, args),
         **{k: round(v, 5) for k, v in values.items()},
         # The last logged losses (none when the run had no step left).
         **{f"train_{k}": round(final[k], 5)
            for k in losses.build_objective(config).metric_names
            if k in final}}
  run_folder.write_text("metrics.json", json.dumps(row, indent=2))
  return row


def table_columns(rows: Sequence[dict]) -> List[Tuple[str, str, int]]:
  """The score columns some row has: (key, header, digits)."""
  columns = [c for c in SCORE_COLUMNS if any(c[0] in row for row in rows)]
  for task in SEGMENTATION_TASKS:
    for name, header in zip(SEGMENTATION_SCORES, SEGMENTATION_HEADERS):
      if any(f"{task}/{name}" in row for row in rows):
        label = "FCN " if task == "fcn_generated" else "labels "
        columns.append((f"{task}/{name}", label + header, 3))
  return columns


def markdown_table(rows: Sequence[dict], study: str) -> List[str]:
  """The rows as a markdown table; with FCN-scores, the ground-truth
  photos' row and, for the paper's studies, its published numbers."""
  columns = table_columns(rows)
  if len({row.get("steps") for row in rows}) > 1:  # Some set their own.
    columns.insert(0, ("steps", "steps", 0))
  paper = PAPER_FCN_SCORES.get(study) if any(
      "fcn_generated/class_iou" in row for row in rows) else None
  headers = ["variant", "flags"] + [h for _, h, _ in columns] + (
      ["paper, Cityscapes labels → photo, 256x256: per-pixel / per-class / "
       "IoU"] if paper else [])
  lines = ["| " + " | ".join(headers) + " |",
           "|" + "---|" * len(headers)]

  def line(name, flag_text, values, digits):
    cells = [name, flag_text] + [
        "-" if values.get(key) is None else f"{values[key]:.{d}f}"
        for (key, _, _), d in zip(columns, digits)]
    if paper:
      cells.append(" / ".join(f"{v:.2f}" for v in paper[name])
                   if name in paper else "-")
    return "| " + " | ".join(cells) + " |"

  for row in rows:
    lines.append(line(row["variant"], f"`{row['flags'] or '(defaults)'}`",
                      row, [d for _, _, d in columns]))
  truth = next((row for row in rows if "fcn_ground_truth/class_iou" in row),
               None)
  if truth:  # The same real photos for every variant: one row.
    values = {f"fcn_generated/{n}": truth[f"fcn_ground_truth/{n}"]
              for n in SEGMENTATION_SCORES}
    lines.append(line("ground truth", "(the real photos)", values,
                      [d for _, _, d in columns]))
  return lines


def write_tables(rows: Sequence[dict], out: outputs.Folder, split: str,
                 args: dict) -> None:
  """results.csv (every score and final training loss) and results.md."""
  columns = ["variant", "flags", "steps"] + [k for k, _, _ in
                                             table_columns(rows)]
  extra = sorted({k for row in rows for k in row
                  if k.startswith(("train_", "fcn_ground_truth/"))})
  table = io.StringIO(newline="")
  writer = csv.DictWriter(table, columns + extra, extrasaction="ignore")
  writer.writeheader()
  writer.writerows(rows)
  out.write_text("results.csv", table.getvalue())
  steps = sorted({row["steps"] for row in rows})
  trained = (f"{steps[0]} steps" if len(steps) == 1 else
             f"{steps[0]} to {steps[-1]} steps (the steps column)")
  lines = [
      f"Variants trained {trained}"
      f" at {args['image_size']}x"
      f"{args['image_size']} on {args['data_dir']}, evaluated on its {split} "
      "split (L1 and MSE on the [-1, 1] scale, lower is better; PSNR in dB "
      f"and SSIM, higher is better;{inception_text(args)} segmentation "
      "scores in [0, 1], higher is better).", ""]
  lines += markdown_table(rows, args["study"])
  out.write_text("results.md", "\n".join(lines) + "\n")


def inception_text(args: Dict[str, object]) -> str:
  """What the results' FID and KID are comparable with ("" without them)."""
  from pix2pix_tf.evaluation import metrics
  weights = str(args.get("inception_weights") or "")
  if not weights:
    return ""
  return f" {metrics.what_fid_compares_with(weights)[0]}, lower is better;"


def plot_losses(names: Sequence[str], out: outputs.Folder
                ) -> Dict[Tuple[str, str], str]:
  """losses.png: each variant's training losses, one panel per loss, each
  variant in one colour in every panel (a variant without a loss, e.g. L1
  alone without GAN losses, leaves no gap in the colours of the others).
  Returns the colour of each (panel's loss, variant) curve drawn."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.lines import Line2D

  from pix2pix_tf.training import losses

  panels = [(losses.GENERATOR_L1, "generator L1"),
            (losses.GENERATOR_GAN, "generator GAN"),
            (losses.DISCRIMINATOR_TOTAL, "discriminator")]
  colors = {name: f"C{i % 10}" for i, name in enumerate(names)}
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
  drawn = {}
  for name in names:
    curves = read_scalars(os.path.join(out.path, name, "logs", "train"))
    for axis, (tag, _) in zip(axes, panels):
      if tag in curves:
        steps, values = zip(*curves[tag])
        line, = axis.plot(steps, values, color=colors[name], linewidth=1.2)
        drawn[(tag, name)] = line.get_color()
  for axis, (_, title) in zip(axes, panels):
    axis.set_title(title)
    axis.set_xlabel("step")
    axis.grid(alpha=0.3)
  axes[0].legend(handles=[Line2D([], [], color=c, label=n)
                          for n, c in colors.items()], fontsize=8)
  fig.tight_layout()
  out.write("losses.png", lambda path: fig.savefig(path, dpi=100))
  plt.close(fig)
  return drawn


def plot_samples(names: Sequence[str], out: outputs.Folder,
                 config: config_lib.Config,
                 files: Sequence[str], num_samples: int) -> None:
  """Rows: input, target, then each variant's output on the same inputs."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np
  from pix2pix_tf import data as data_lib

  files = files[:num_samples]
  dataset = data_lib.make_dataset(files, config, len(files),
                                        training=False)
  input_image, target_image = next(iter(dataset))
  rows = [("input", input_image.numpy()), ("target", target_image.numpy())]
  for name in names:
    generated = generate_export(os.path.join(out.path, name, "export"),
                                config, files)
    rows.append((name, np.stack(generated)))
  fig, axes = plt.subplots(len(rows), len(files), squeeze=False,
                           figsize=(1.6 * len(files) + 0.8, 1.6 * len(rows)))
  for r, (label, images) in enumerate(rows):
    for c in range(len(files)):
      axis = axes[r][c]
      image = np.clip((images[c] + 1) / 2, 0, 1)
      axis.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else
                  None)
      axis.set_xticks([])
      axis.set_yticks([])
      if c == 0:
        axis.set_ylabel(label, fontsize=9)
  fig.tight_layout()
  out.write("samples.png", lambda path: fig.savefig(path, dpi=100))
  plt.close(fig)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  if not FLAGS.data_dir:
    raise app.UsageError("--data_dir is required.")
  args = {"data_dir": FLAGS.data_dir, "image_size": FLAGS.image_size,
          "steps": FLAGS.steps, "out": FLAGS.out, "flags": FLAGS.flags,
          "study": FLAGS.study, "label_palette": FLAGS.label_palette,
          "segmenter": FLAGS.segmenter,
          "inception_weights": FLAGS.inception_weights}
  # Check every variant's flags, what it left before and what scores
  # them before training; the first checks before TensorFlow's import.
  variants = load_variants(FLAGS.study)
  configs = [variant_config(flags, args, name)[0]
             for name, flags in variants]
  finished = {
      name: finished_row(name, flags, args, config.optimisation.max_steps)
      for (name, flags), config in zip(variants, configs)
  }
  if args["inception_weights"] and not os.path.isfile(
      args["inception_weights"]):
    raise errors.CommandError(
        f"--inception_weights={args['inception_weights']} "
        "is not a file.")
  split = eval_split(FLAGS.data_dir)
  check_scoring(args, split)
  out = outputs.Folder(FLAGS.out, "out",
                       [outputs.Input(FLAGS.data_dir, "data_dir")],
                       kind="ablation")
  out.check(RESULTS)
  import keras  # Imported here: it loads TensorFlow (seconds).
  from pix2pix_tf import training

  # Every variant's folder, before the first is trained.
  for name, _ in variants:  # The run's files, then the study's beside them.
    training.open_run_folder(os.path.join(FLAGS.out, name), FLAGS.data_dir)
    variant_folder(os.path.join(FLAGS.out, name)).check(VARIANT_FILES)
  if any(config.run.deterministic for config in configs):
    print(training.make_deterministic(), flush=True)  # Before TensorFlow.
  # One strategy for the whole study: a process should not create several.
  strategy = training.make_strategy(configs[0].run.strategy)
  for config in configs:  # The replicas and weights files, before any trains.
    training.check_run(config, strategy)
  rows = []
  for name, variant_flags in variants:
    if finished[name]:
      print(f"[{name}] done before; keeping its results.", flush=True)
      rows.append(finished[name])
      continue
    rows.append(run_variant(name, variant_flags, args, strategy, split))
    keras.backend.clear_session()
  names = [name for name, _ in variants]
  write_tables(rows, out, split, args)
  plot_losses(names, out)
  from pix2pix_tf import data as data_lib
  plot_samples(names, out, configs[0],
               data_lib.list_split(FLAGS.data_dir, split), FLAGS.num_samples)
  print(open(os.path.join(FLAGS.out, "results.md")).read())
  print(f"Wrote {FLAGS.out}/results.csv, results.md, losses.png, samples.png")


def define_flags():
  """Defines this tool's flags when it runs (importing it, as the tests do,
  defines none: --data_dir and --num_samples are also training flags)."""
  flags.DEFINE_string("data_dir", None, "Dataset with train/ and val/ (or "
                      "test/) folders of A|B pairs.")
  flags.DEFINE_string("study", "receptive_field",
                      f"A built-in study ({', '.join(STUDIES)}) or a file "
                      "of 'name: --flag=value ...' lines.")
  flags.DEFINE_alias("variants", "study")
  flags.DEFINE_integer("steps", 2000, "Training steps per variant.")
  flags.DEFINE_integer("image_size", 128, "Training and evaluation size.")
  flags.DEFINE_string("out", "ablations", "Output folder.")
  flags.DEFINE_string("flags", "", "Training flags for every variant, before "
                      "the variant's own, e.g. '--direction=BtoA --ngf=32'.")
  flags.DEFINE_integer("num_samples", 4, "Inputs in samples.png.")
  flags.DEFINE_string("label_palette", "", "cityscapes, facades or a "
                      "palette file: segmentation scores (photo -> labels; "
                      "labels -> photo with --segmenter).")
  flags.DEFINE_string("segmenter", "", "A python -m pix2pix_tf.segmenter "
                      "SavedModel: the FCN-score of labels -> photo.")
  flags.DEFINE_string("inception_weights", "", "FID and KID network: "
                      "pytorch-fid's pt_inception .pth (FID as pytorch-fid's) "
                      "or Keras's InceptionV3 notop .h5 (comparable between "
                      "runs only).")


if __name__ == "__main__":
  define_flags()
  app.run(errors.guarded("ablate", main))
