r"""Measures translation quality on a split: the studies' metrics, one command.

    python -m pix2pix_tf.evaluate --model_dir=runs/facades \
        --data_dir=datasets/facades --split=test --output=facades_test.json
    python -m pix2pix_tf.evaluate --saved_model=runs/cityscapes/export \
        --data_dir=datasets/cityscapes --split=val --label_palette=cityscapes \
        --segmenter=segmenters/cityscapes \
        --inception_weights=pt_inception-2015-12-05-6726825d.pth

Reports, averaged over the split and per image in the JSON: L1, MSE, PSNR,
SSIM and pixel accuracy; over the whole set: colour-distribution distances,
and FID and KID when --inception_weights is given (pytorch-fid's weights:
FID as pytorch-fid computes it; Keras's InceptionV3: comparable only
between runs). With --label_palette,
the paper's segmentation scores: for photo -> labels, the generated label
colours mapped to the nearest class against the true label map; for
labels -> photo, the FCN-score: --segmenter turns generated photos back into
classes, scored against the input labels, and the real photos give the
"ground truth" row.
"""

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import config as config_lib
from pix2pix_tf import options as options_lib
from pix2pix_tf import outputs
from pix2pix_tf.config import METRICS
from pix2pix_tf.options import (CHECKPOINT, MAX_PIXELS, Option, RESOLUTION,
                                RUN_DIR, SAVED_MODEL)

# This command's flags (an option several commands take is defined once, in
# options).
OPTIONS = (
    SAVED_MODEL,
    RUN_DIR.but(help="A training run: uses its export "
                "(<model_dir>/export), or with --checkpoint that "
                "checkpoint."),
    CHECKPOINT,
    Option("data_dir", str, None, "The dataset folder."),
    Option("split", str, "test", "The split to evaluate (a subfolder)."),
    Option("metrics", list, list(METRICS), "Metrics to compute (fid and "
           "kid need --inception_weights)."),
    Option("output", str, None, "Write the results as JSON here."),
    Option("batch_size", int, 8, "Images per batch."),
    Option("pixel_tolerance", float, 25.0, "Pixel accuracy counts pixels "
           "whose largest channel error is at most this many intensity "
           "levels (of 255)."),
    Option("label_palette", str, "", "cityscapes, facades, or a palette "
           "JSON file: score label maps (photo -> labels, or labels -> "
           "photo with --segmenter)."),
    Option("labels", str, "auto", "Which side of the pairs is the label "
           "map.", choices=("auto", "input", "target")),
    Option("segmenter", str, "", "A SavedModel from photos in [-1, 1] to "
           "per-pixel class logits (python -m pix2pix_tf.segmenter), for the "
           "FCN-score."),
    Option("inception_weights", str, "", "FID and KID network: pytorch-"
           "fid's pt_inception .pth (FID as pytorch-fid's) or Keras's "
           "InceptionV3 notop .h5 (comparable between runs only)."),
    RESOLUTION, MAX_PIXELS)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  FLAGS = flags.FLAGS
  if bool(FLAGS.saved_model) == bool(FLAGS.model_dir):
    raise app.UsageError("Give one of --saved_model or --model_dir.")
  if not FLAGS.data_dir:
    raise app.UsageError("--data_dir is required.")
  unknown = set(FLAGS.metrics) - set(config_lib.METRICS)
  if unknown:
    raise app.UsageError(f"Unknown --metrics {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(config_lib.METRICS)}.")
  if FLAGS.checkpoint and not FLAGS.model_dir:
    raise app.UsageError("--checkpoint goes with --model_dir.")
  if FLAGS.inception_weights and not os.path.isfile(FLAGS.inception_weights):
    sys.exit(f"pix2pix_tf.evaluate: error: --inception_weights="
             f"{FLAGS.inception_weights} does not exist.")
  if FLAGS.output:  # Before any work: the results are written at the end.
    folder, name = outputs.file_output(FLAGS.output, "output", [
        outputs.Input(os.path.join(FLAGS.data_dir, FLAGS.split),
                      "data_dir")], kind="evaluate")
  # After the flags: a fast --help.
  from pix2pix_tf import evaluation
  options = evaluation.Options(
      FLAGS.metrics, FLAGS.batch_size, FLAGS.pixel_tolerance,
      FLAGS.label_palette, FLAGS.labels, FLAGS.segmenter,
      FLAGS.inception_weights, FLAGS.max_pixels,
      resolution=FLAGS.resolution)
  if FLAGS.checkpoint:
    result = evaluation.evaluate_checkpoint(
        FLAGS.model_dir, FLAGS.checkpoint, FLAGS.data_dir, FLAGS.split,
        options)
  else:
    result = evaluation.evaluate_saved_model(
        FLAGS.saved_model or os.path.join(FLAGS.model_dir, "export"),
        FLAGS.data_dir, FLAGS.split, options)
  print(evaluation.format_evaluation(result))
  if FLAGS.output:
    folder.write_text(name, json.dumps(result, indent=2))
    print(f"Wrote {FLAGS.output}")


def run():
  options_lib.run_command("evaluate", main, OPTIONS)


if __name__ == "__main__":
  run()
