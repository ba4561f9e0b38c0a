r"""Measures translation quality on a split: the studies' metrics, one command.

    python -m pix2pix_tf.evaluate --model_dir=runs/facades \
        --data_dir=datasets/facades --split=test --output=facades_test.json
    python -m pix2pix_tf.evaluate --saved_model=runs/cityscapes/export \
        --data_dir=datasets/cityscapes --split=val --label_palette=cityscapes \
        --segmenter=segmenters/cityscapes --inception_weights=inception_notop.h5

Reports, averaged over the split and per image in the JSON: L1, MSE, PSNR,
SSIM and pixel accuracy; over the whole set: colour-distribution distances,
and FID and KID when --inception_weights is given. With --label_palette,
the paper's segmentation scores: for photo -> labels, the generated label
colours mapped to the nearest class against the true label map; for
labels -> photo, the FCN-score: --segmenter turns generated photos back into
classes, scored against the input labels, and the real photos give the
"ground truth" row.
"""

import json
import os
import sys
from typing import Dict, List, Optional, Sequence

from absl import app
from absl import flags
from absl import logging

import numpy as np

ALL_METRICS = ("l1", "mse", "psnr", "ssim", "pixel_accuracy", "color", "fid",
               "kid")
PER_IMAGE = ("l1", "mse", "psnr", "ssim", "pixel_accuracy")


class Accumulator:
  """Collects a split's metrics batch by batch.

  Args:
    metrics: names from ALL_METRICS to compute.
    pixel_tolerance: intensity levels (of 255) for pixel accuracy.
    palette: a `segmentation.Palette` for label-map tasks, or None.
    labels_side: "input" (labels -> photo) or "target" (photo -> labels).
    segmenter: a callable from [-1, 1] photos to per-pixel class logits, for
      the FCN-score of labels -> photo.
    inception: an InceptionV3 feature model, for FID and KID.
  """

  def __init__(self, metrics: Sequence[str] = PER_IMAGE,
               pixel_tolerance: float = 25.0, palette=None,
               labels_side: Optional[str] = None, segmenter=None,
               inception=None):
    self.metrics = tuple(metrics)
    self.pixel_tolerance = pixel_tolerance
    self.palette = palette
    self.labels_side = labels_side
    self.segmenter = segmenter
    self.inception = inception
    self.per_image: List[Dict[str, object]] = []
    self.histograms = {"generated": 0, "target": 0}
    self.features = {"generated": [], "target": []}
    self.confusions: Dict[str, np.ndarray] = {}

  def add(self, files: Sequence[str], input_image, generated_image,
          target_image) -> None:
    import tensorflow as tf
    from pix2pix_tf import metrics as metrics_lib

    values = metrics_lib.image_metrics(generated_image, target_image)
    values["pixel_accuracy"] = metrics_lib.pixel_accuracy(
        generated_image, target_image, self.pixel_tolerance)
    # PSNR is infinite for identical images; capped at 100 dB so that the
    # means and the JSON stay finite.
    values["psnr"] = tf.minimum(values["psnr"], 100.0)
    for i, path in enumerate(files):
      self.per_image.append(
          {"file": os.path.basename(path),
           **{name: float(values[name][i]) for name in PER_IMAGE
              if name in self.metrics}})
    if "color" in self.metrics:
      self.histograms["generated"] += metrics_lib.color_histograms(
          generated_image)
      self.histograms["target"] += metrics_lib.color_histograms(target_image)
    if self.inception is not None:
      self.features["generated"].append(
          metrics_lib.inception_features(self.inception, generated_image))
      self.features["target"].append(
          metrics_lib.inception_features(self.inception, target_image))
    if self.palette is not None:
      self._add_segmentation(input_image, generated_image, target_image, tf)

  def _add_segmentation(self, input_image, generated_image, target_image, tf):
    from pix2pix_tf import segmentation

    def add(name, true, predicted):
      confusion = segmentation.confusion_matrix(
          true, predicted, self.palette.num_classes)
      self.confusions[name] = self.confusions.get(name, 0) + confusion

    if self.labels_side == "target":  # photo -> labels
      add("photo_to_labels",
          segmentation.colors_to_classes(target_image, self.palette),
          segmentation.colors_to_classes(generated_image, self.palette))
    elif self.labels_side == "input" and self.segmenter is not None:
      # labels -> photo: the FCN-score.
      true = segmentation.colors_to_classes(input_image, self.palette)
      for name, photos in (("fcn_generated", generated_image),
                           ("fcn_ground_truth", target_image)):
        logits = self.segmenter(photos)
        logits = tf.image.resize(logits, tf.shape(true)[1:3],
                                 method="nearest")
        add(name, true, tf.argmax(logits, axis=-1, output_type=tf.int32))

  def result(self) -> Dict[str, object]:
    from pix2pix_tf import metrics as metrics_lib
    from pix2pix_tf import segmentation

    means = {name: float(np.mean([row[name] for row in self.per_image]))
             for name in PER_IMAGE if name in self.metrics}
    if "color" in self.metrics:
      means.update(metrics_lib.color_distribution_distance(
          self.histograms["generated"], self.histograms["target"]))
    if self.inception is not None:
      generated = np.concatenate(self.features["generated"])
      target = np.concatenate(self.features["target"])
      if "fid" in self.metrics:
        means["fid"] = metrics_lib.frechet_distance(generated, target)
      if "kid" in self.metrics:
        means["kid"] = metrics_lib.kernel_inception_distance(generated,
                                                             target)
    result = {"num_images": len(self.per_image), "metrics": means}
    if self.confusions:
      result["segmentation"] = {
          name: segmentation.scores(confusion, self.palette.class_names)
          for name, confusion in self.confusions.items()}
    return result


def load_segmenter(path: str):
  """A SavedModel mapping [-1, 1] photos to per-pixel class logits."""
  import tensorflow as tf
  if not os.path.exists(os.path.join(path, "saved_model.pb")):
    raise ValueError(f"--segmenter={path} is not a SavedModel. Train one with "
                     "python tools/train_segmenter.py.")
  try:
    signature = tf.saved_model.load(path).signatures["serving_default"]
  except Exception as e:  # pylint: disable=broad-except
    # TensorFlow's own message runs to pages; one line names the problem.
    first_line = (str(e).strip().splitlines() or [""])[0][:200]
    raise ValueError(f"--segmenter={path} could not be loaded "
                     f"({type(e).__name__}: {first_line}). Train it again "
                     "with python tools/train_segmenter.py.") from None
  output = list(signature.structured_outputs)[0]
  name = list(signature.structured_input_signature[1])[0]
  return lambda photos: signature(**{name: tf.cast(photos, tf.float32)})[
      output]


def detect_labels_side(input_image, target_image, palette) -> Optional[str]:
  """Which side of the pairs is the label map, by colours near the palette."""
  from pix2pix_tf import segmentation
  fractions = {"input": segmentation.labels_fraction(input_image, palette),
               "target": segmentation.labels_fraction(target_image, palette)}
  side = max(fractions, key=fractions.get)
  return side if fractions[side] > 0.5 else None


def evaluate_saved_model(saved_model: str, data_dir: str, split: str,
                         metrics: Sequence[str] = ALL_METRICS,
                         batch_size: int = 8, pixel_tolerance: float = 25.0,
                         label_palette: str = "", labels: str = "auto",
                         segmenter: str = "", inception_weights: str = "",
                         verbose: bool = True,
                         max_pixels: Optional[int] = None
                         ) -> Dict[str, object]:
  """Evaluates an exported generator on `<data_dir>/<split>`.

  Raises export.ExportError for a SavedModel that cannot be loaded,
  data_lib.DatasetError for a file that is not an image, and
  data_lib.TooLargeError for one that declares more than `max_pixels`
  (default: config_lib.DEFAULT_MAX_PIXELS) pixels, all before anything is
  decoded or translated.
  """
  from keras.utils import Progbar
  from pix2pix_tf import config as config_lib
  from pix2pix_tf import data as data_lib
  from pix2pix_tf import export
  from pix2pix_tf import metrics as metrics_lib
  from pix2pix_tf import segmentation

  loaded = export.load(saved_model)
  metadata = json.loads(loaded.metadata_json.numpy())
  config = config_lib.Config.from_json(json.dumps(metadata["flags"]))
  config = config_lib.dataclasses.replace(config, data_dir=data_dir)
  translate = loaded.signatures["serving_default"]
  files = data_lib.list_split(data_dir, split)
  data_lib.check_headers(files)
  for path in files:
    data_lib.check_pixels(path, max_pixels or config_lib.DEFAULT_MAX_PIXELS)

  metrics = [m for m in metrics if m not in ("fid", "kid") or
             inception_weights]
  palette = segmentation.load_palette(label_palette) if label_palette else None
  notes = []
  if not inception_weights:
    notes.append("FID and KID skipped: give --inception_weights (the Keras "
                 f"InceptionV3 notop file, {metrics_lib.INCEPTION_WEIGHTS_URL}).")
  dataset = data_lib.make_dataset(files, config, batch_size,
                                        training=False)
  accumulator = Accumulator(
      metrics, pixel_tolerance, palette,
      segmenter=load_segmenter(segmenter) if segmenter else None,
      inception=(metrics_lib.inception_model(inception_weights)
                 if inception_weights else None))
  progbar = Progbar(len(files), unit_name="image",
                    verbose=(1 if sys.stdout.isatty() else 2) if verbose
                    else 0)
  done = 0
  for input_image, target_image in dataset:
    if palette is not None and accumulator.labels_side is None:
      accumulator.labels_side = (detect_labels_side(
          input_image, target_image, palette) if labels == "auto" else labels)
      if accumulator.labels_side is None:
        raise ValueError(f"Neither side of {data_dir}/{split} looks like a "
                         f"{palette.name} label map; set --labels=input or "
                         "--labels=target.")
    generated = translate(images=input_image)["generated_image"]
    batch_files = files[done:done + int(input_image.shape[0])]
    accumulator.add(batch_files, input_image, generated, target_image)
    done += len(batch_files)
    progbar.update(done)
  if palette is not None and accumulator.labels_side == "input" and (
      not segmenter):
    notes.append("FCN-score skipped: labels -> photo needs --segmenter (train "
                 "one with python tools/train_segmenter.py).")
  result = accumulator.result()
  result.update({"saved_model": saved_model, "data_dir": data_dir,
                 "split": split, "step": metadata["step"],
                 "inference_mode": metadata["inference_mode"],
                 "pixel_tolerance": pixel_tolerance, "notes": notes,
                 "per_image": accumulator.per_image})
  if palette is not None:
    result["label_palette"] = palette.name
    result["labels_side"] = accumulator.labels_side
  return result


def format_table(result: Dict[str, object]) -> str:
  lines = [f"{result['num_images']} images of {result['data_dir']}/"
           f"{result['split']}, step {result['step']}, "
           f"{result['inference_mode']} inference", ""]
  width = max(len(name) for name in result["metrics"]) + 2
  for name, value in result["metrics"].items():
    lines.append(f"{name:<{width}}{value:>12.4f}")
  for name, scores in result.get("segmentation", {}).items():
    lines.append("")
    lines.append(f"{name}: per-pixel acc {scores['per_pixel_accuracy']:.3f}, "
                 f"per-class acc {scores['per_class_accuracy']:.3f}, class "
                 f"IoU {scores['class_iou']:.3f}")
  lines += [""] + list(result["notes"]) if result["notes"] else []
  return "\n".join(lines)


def define_flags():
  """Defines this command's flags (at start-up, like export's)."""
  from pix2pix_tf import config as config_lib
  flags.DEFINE_string("saved_model", None, "An exported SavedModel folder.")
  flags.DEFINE_string("model_dir", None,
                      "A training run: uses its export (<model_dir>/export), "
                      "or with --checkpoint that checkpoint.")
  flags.DEFINE_string("checkpoint", None,
                      "With --model_dir: evaluate this checkpoint (e.g. "
                      "RUN/checkpoints/ckpt-4000) instead of the export.")
  flags.DEFINE_string("data_dir", None, "The dataset folder.")
  flags.DEFINE_string("split", "test", "The split to evaluate (a subfolder).")
  flags.DEFINE_list("metrics", list(ALL_METRICS),
                    "Metrics to compute (fid and kid need "
                    "--inception_weights).")
  flags.DEFINE_string("output", None, "Write the results as JSON here.")
  flags.DEFINE_integer("batch_size", 8, "Images per batch.")
  flags.DEFINE_float("pixel_tolerance", 25.0,
                     "Pixel accuracy counts pixels whose largest channel "
                     "error is at most this many intensity levels (of 255).")
  flags.DEFINE_string("label_palette", "",
                      "cityscapes, facades, or a palette JSON file: score "
                      "label maps (photo -> labels, or labels -> photo with "
                      "--segmenter).")
  flags.DEFINE_enum("labels", "auto", ["auto", "input", "target"],
                    "Which side of the pairs is the label map.")
  flags.DEFINE_string("segmenter", "",
                      "A SavedModel from photos in [-1, 1] to per-pixel class "
                      "logits (tools/train_segmenter.py), for the FCN-score.")
  flags.DEFINE_string("inception_weights", "",
                      "Keras's InceptionV3 ImageNet notop weights file, for "
                      "FID and KID.")
  flags.DEFINE_integer("max_pixels", config_lib.DEFAULT_MAX_PIXELS,
                       "Refuse (before decoding) an image whose header "
                       "declares more pixels (width x height) than this.")


def check_output_file(path: str) -> None:
  """Exits with a sentence, before any work, if the results could not be
  written to `path` at the end."""
  folder = os.path.dirname(os.path.abspath(path))
  if os.path.isdir(path):
    sys.exit(f"pix2pix_tf.evaluate: error: --output={path} is a folder; give "
             f"a file name, such as {os.path.join(path, 'results.json')}.")
  if not os.path.isdir(folder):
    sys.exit(f"pix2pix_tf.evaluate: error: --output={path}: the folder "
             f"{folder} does not exist. Create it first.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  FLAGS = flags.FLAGS
  if bool(FLAGS.saved_model) == bool(FLAGS.model_dir):
    raise app.UsageError("Give one of --saved_model or --model_dir.")
  if not FLAGS.data_dir:
    raise app.UsageError("--data_dir is required.")
  unknown = set(FLAGS.metrics) - set(ALL_METRICS)
  if unknown:
    raise app.UsageError(f"Unknown --metrics {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(ALL_METRICS)}.")
  if FLAGS.checkpoint and not FLAGS.model_dir:
    raise app.UsageError("--checkpoint goes with --model_dir.")
  if FLAGS.output:
    check_output_file(FLAGS.output)
  saved_model = FLAGS.saved_model or os.path.join(FLAGS.model_dir, "export")
  staging = None
  if FLAGS.checkpoint:
    # Export the checkpoint to a temporary folder and evaluate that.
    import tempfile
    from pix2pix_tf import export
    staging = tempfile.mkdtemp(prefix="pix2pix-evaluate-")
    try:
      saved_model = export.export(FLAGS.model_dir,
                                  os.path.join(staging, "export"),
                                  FLAGS.checkpoint)
    except (export.ExportError, ValueError) as e:
      sys.exit(f"pix2pix_tf.evaluate: error: {e}")
  if FLAGS.inception_weights and not os.path.isfile(FLAGS.inception_weights):
    sys.exit(f"pix2pix_tf.evaluate: error: --inception_weights="
             f"{FLAGS.inception_weights} does not exist.")
  from pix2pix_tf import export
  from pix2pix_tf import data as data_lib
  try:
    result = evaluate_saved_model(
        saved_model, FLAGS.data_dir, FLAGS.split, FLAGS.metrics,
        FLAGS.batch_size, FLAGS.pixel_tolerance, FLAGS.label_palette,
        FLAGS.labels, FLAGS.segmenter, FLAGS.inception_weights,
        max_pixels=FLAGS.max_pixels)
  except (ValueError, data_lib.DatasetError, export.ExportError) as e:
    sys.exit(f"pix2pix_tf.evaluate: error: {e}")
  finally:
    if staging:
      import shutil
      shutil.rmtree(staging, ignore_errors=True)
  if FLAGS.checkpoint:
    result["checkpoint"] = FLAGS.checkpoint
  print(format_table(result))
  if FLAGS.output:
    with open(FLAGS.output + ".tmp", "w") as f:
      json.dump(result, f, indent=2)
    os.replace(FLAGS.output + ".tmp", FLAGS.output)
    print(f"Wrote {FLAGS.output}")


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
