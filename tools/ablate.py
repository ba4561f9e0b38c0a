r"""Trains and compares a grid of pix2pix variants: the studies' tables and figures.

    python tools/ablate.py --data_dir=datasets/facades --variants=receptive_field \
        --steps=2000 --image_size=128 --out=ablations/receptive_field
    python tools/ablate.py --data_dir=datasets/facades --variants=my_grid.txt ...

--variants is a built-in set (receptive_field, loss, paper_table1) or a file
with one variant per line, `name: --flag=value --flag=value` (training flags;
`#` starts a comment). Every variant trains for --steps steps at
--image_size (U-Net of depth log2(image_size), jitter from 1.12x the size),
then is evaluated on the val split (else test) through its exported
generator. Writes to --out:

    results.csv, results.md   one row per variant: flags, L1, MSE, PSNR, SSIM
    losses.png                training loss curves of every variant
    samples.png               one row per variant on the same inputs
    <variant>/                the variant's run (checkpoints, logs, export)

A grid that was stopped resumes where it stopped: finished variants are kept
(their metrics.json), a half-trained one continues from its checkpoint.
"""

import csv
import json
import math
import os
import sys
from typing import Dict, List, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import config as config_lib

# The studies' comparisons. Each variant: (name, training flags).
VARIANT_SETS = {
    # Paper Table 3 and the follow-up receptive-field study, cGAN + L1.
    "receptive_field": [
        ("1x1", "--discriminator=pixel"),
        ("16x16", "--d_layers=1"),
        ("70x70", "--d_layers=3"),
        ("142x142", "--d_layers=4"),
        ("286x286", "--d_layers=5"),
    ],
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
    # Paper Table 1.
    "paper_table1": [
        ("L1", "--gan_mode=none"),
        ("GAN", "--conditional_discriminator=false --lambda_l1=0"),
        ("cGAN", "--lambda_l1=0"),
        ("L1+GAN", "--conditional_discriminator=false"),
        ("L1+cGAN", ""),
    ],
}

FLAGS = flags.FLAGS


def load_variants(spec: str) -> List[Tuple[str, str]]:
  """(name, flags) pairs from a built-in set name or a variants file."""
  if spec in VARIANT_SETS:
    return VARIANT_SETS[spec]
  if not os.path.isfile(spec):
    raise ValueError(f"--variants={spec} is neither a built-in set "
                     f"({', '.join(VARIANT_SETS)}) nor a file.")
  variants = []
  with open(spec) as f:
    for number, line in enumerate(f, 1):
      line = line.split("#", 1)[0].strip()
      if not line:
        continue
      name, sep, flag_text = line.partition(":")
      if not sep or not name.strip():
        raise ValueError(f"{spec}:{number}: expected 'name: --flag=value "
                         f"...', got {line!r}.")
      variants.append((name.strip(), flag_text.strip()))
  if not variants:
    raise ValueError(f"{spec} lists no variants.")
  return variants


def apply_flags(config: config_lib.Config, flag_text: str) -> config_lib.Config:
  """`config` with `--name=value` flags applied."""
  return config.with_flags(flag_text)


def base_config(data_dir, image_size, steps, model_dir) -> config_lib.Config:
  depth = int(math.log2(image_size))
  load_size = 2 * round(image_size * 286 / 256 / 2)
  interval = max(1, steps // 50)
  return config_lib.Config(
      data_dir=data_dir, model_dir=model_dir, crop_size=image_size,
      load_size=load_size, generator="unet", unet_depth=depth,
      max_steps=steps, lr_policy="constant", log_every_steps=interval,
      sample_every_steps=steps, eval_every_steps=steps,
      checkpoint_every_steps=max(1, steps // 4))


def eval_split(data_dir: str) -> str:
  from pix2pix_tf import data as data_lib
  for split in ("val", "test"):
    if data_lib.has_split(data_dir, split):
      return split
  raise ValueError(f"{data_dir} has neither val/ nor test/ images to "
                   "evaluate on. Hold out part of train/ into val/.")


def evaluate_export(export_dir, config, files) -> Tuple[Dict[str, float],
                                                        list]:
  """Mean metrics of an exported generator on `files` (the evaluation loop
  of training and `evaluate`), and its outputs."""
  from pix2pix_tf import data as data_lib
  from pix2pix_tf import evaluation
  from pix2pix_tf import serving

  translate = serving.load(export_dir).signatures["serving_default"]
  generated_images = []

  def generate(images):
    generated = translate(images=images)["generated_image"]
    generated_images.extend(generated.numpy())
    return generated

  batches = data_lib.make_dataset(files, config, 8, training=False,
                                  with_names=True)
  result = evaluation.evaluate(generate, batches, evaluation.Accumulator(
      ("l1", "mse", "psnr", "ssim")))
  return result["metrics"], generated_images


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


def run_variant(name, flag_text, args, strategy, files):
  """Trains (or resumes) and evaluates one variant; returns its result row."""
  from pix2pix_tf import training

  model_dir = os.path.join(args["out"], name)
  result_path = os.path.join(model_dir, "metrics.json")
  if os.path.exists(result_path):
    print(f"[{name}] done before; keeping its results.", flush=True)
    with open(result_path) as f:
      return json.load(f)
  config = base_config(args["data_dir"], args["image_size"], args["steps"],
                       model_dir)
  config = apply_flags(config, args["flags"])
  config = apply_flags(config, flag_text).validate(
      strategy.num_replicas_in_sync)
  print(f"[{name}] training {args['steps']} steps: {flag_text or 'defaults'}",
        flush=True)
  final = training.train_and_evaluate(config, strategy)
  values, _ = evaluate_export(os.path.join(model_dir, "export"), config, files)
  row = {"variant": name, "flags": flag_text, "steps": final["step"],
         **{k: round(v, 5) for k, v in values.items()},
         **{f"train_{k}": round(v, 5) for k, v in final.items()
            if k.startswith(("gen_", "disc_"))}}
  with open(result_path + ".tmp", "w") as f:
    json.dump(row, f, indent=2)
  os.replace(result_path + ".tmp", result_path)
  return row


def write_tables(rows: Sequence[dict], out: str, split: str, args) -> None:
  columns = ["variant", "flags", "steps", "l1", "mse", "psnr", "ssim"]
  extra = sorted({k for row in rows for k in row if k.startswith("train_")})
  with open(os.path.join(out, "results.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, columns + extra, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
  lines = [
      f"Variants trained {args['steps']} steps at {args['image_size']}x"
      f"{args['image_size']} on {args['data_dir']}, evaluated on its {split} "
      "split (L1 and MSE on the [-1, 1] scale, lower is better; PSNR in dB "
      "and SSIM, higher is better).", "",
      "| variant | flags | L1 | MSE | PSNR | SSIM |",
      "|---|---|---|---|---|---|"]
  for row in rows:
    lines.append(f"| {row['variant']} | `{row['flags'] or '(paper)'}` | "
                 f"{row['l1']:.4f} | {row['mse']:.4f} | {row['psnr']:.2f} | "
                 f"{row['ssim']:.4f} |")
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


def plot_losses(names: Sequence[str], out: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  panels = [("gen_l1_loss", "generator L1"), ("gen_gan_loss", "generator GAN"),
            ("disc_loss", "discriminator")]
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
  for name in names:
    curves = read_scalars(os.path.join(out, name, "logs", "train"))
    for axis, (tag, _) in zip(axes, panels):
      if tag in curves:
        steps, values = zip(*curves[tag])
        axis.plot(steps, values, label=name, linewidth=1.2)
  for axis, (_, title) in zip(axes, panels):
    axis.set_title(title)
    axis.set_xlabel("step")
    axis.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(out, "losses.png"), dpi=100)
  plt.close(fig)


def plot_samples(names, out, config, files, num_samples) -> None:
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
    _, generated = evaluate_export(os.path.join(out, name, "export"), config,
                                   files)
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
  fig.savefig(os.path.join(out, "samples.png"), dpi=100)
  plt.close(fig)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  if not FLAGS.data_dir:
    raise app.UsageError("--data_dir is required.")
  import keras
  from pix2pix_tf import data as data_lib
  from pix2pix_tf import training

  try:
    variants = load_variants(FLAGS.variants)
    split = eval_split(FLAGS.data_dir)
    args = {"data_dir": FLAGS.data_dir, "image_size": FLAGS.image_size,
            "steps": FLAGS.steps, "out": FLAGS.out, "flags": FLAGS.flags}
    # Check every variant's flags before training any.
    configs = [apply_flags(apply_flags(base_config(
        FLAGS.data_dir, FLAGS.image_size, FLAGS.steps, FLAGS.out),
        FLAGS.flags), text).validate() for _, text in variants]
  except (ValueError, config_lib.ConfigError) as e:
    sys.exit(f"ablate: error: {e}")
  files = data_lib.list_split(FLAGS.data_dir, split)
  os.makedirs(FLAGS.out, exist_ok=True)
  # One strategy for the whole grid: a process should not create several.
  strategy = training.make_strategy(configs[0].strategy)
  rows = []
  for name, flag_text in variants:
    rows.append(run_variant(name, flag_text, args, strategy, files))
    keras.backend.clear_session()
  names = [name for name, _ in variants]
  write_tables(rows, FLAGS.out, split, args)
  plot_losses(names, FLAGS.out)
  plot_samples(names, FLAGS.out, configs[0], files, FLAGS.num_samples)
  print(open(os.path.join(FLAGS.out, "results.md")).read())
  print(f"Wrote {FLAGS.out}/results.csv, results.md, losses.png, samples.png")


def define_flags():
  """Defines this tool's flags when it runs (importing it, as the tests do,
  defines none: --data_dir and --num_samples are also training flags)."""
  flags.DEFINE_string("data_dir", None, "Dataset with train/ and val/ (or "
                      "test/) folders of A|B pairs.")
  flags.DEFINE_string("variants", "receptive_field",
                      f"A built-in set ({', '.join(VARIANT_SETS)}) or a file of "
                      "'name: --flag=value ...' lines.")
  flags.DEFINE_integer("steps", 2000, "Training steps per variant.")
  flags.DEFINE_integer("image_size", 128, "Training and evaluation size.")
  flags.DEFINE_string("out", "ablations", "Output folder.")
  flags.DEFINE_string("flags", "", "Training flags for every variant, before "
                      "the variant's own, e.g. '--direction=BtoA --ngf=32'.")
  flags.DEFINE_integer("num_samples", 4, "Inputs in samples.png.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
