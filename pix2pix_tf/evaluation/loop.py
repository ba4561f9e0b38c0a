"""The one evaluation loop, and what is built on it: the val pass of
training (`Validator`) and the evaluation of an exported generator
(`evaluate_saved_model`, behind `python -m pix2pix_tf.evaluate`).

A generator runs on each batch exactly as `predict` runs it (paper mode: each
image with its own batch statistics), so every number describes the images
users get.
"""

import dataclasses
import json
import os
import sys
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import keras
import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf import errors
from pix2pix_tf import data as data_lib
from pix2pix_tf import temporaries
from pix2pix_tf.evaluation import fid_inception
from pix2pix_tf.evaluation import metrics as metrics_lib
from pix2pix_tf.evaluation import segmentation
from pix2pix_tf.evaluation.accumulator import Accumulator
from pix2pix_tf.serving import saved_model as saved_model_lib

VALIDATION_METRICS = ("l1", "mse", "psnr", "ssim")


def _check_segmenter(path: str) -> None:
  """A ConfigError unless --segmenter names a SavedModel."""
  if not saved_model_lib.is_saved_model(path):
    raise config_lib.ConfigError(
        f"--segmenter={path} is not a SavedModel. Train one with python -m "
        "pix2pix_tf.segmenter.")


def load_segmenter(path: str) -> Callable[[tf.Tensor], tf.Tensor]:
  """A SavedModel mapping [-1, 1] photos to per-pixel class logits."""
  _check_segmenter(path)
  try:
    signature = tf.saved_model.load(path).signatures["serving_default"]
  except Exception as e:  # pylint: disable=broad-except
    # TensorFlow's own message runs to pages; one line names the problem.
    first_line = (str(e).strip().splitlines() or [""])[0][:200]
    raise errors.CommandError(
        f"--segmenter={path} could not be loaded ({type(e).__name__}: "
        f"{first_line}). Train it again with python -m "
        "pix2pix_tf.segmenter.") from None
  output = list(signature.structured_outputs)[0]
  name = list(signature.structured_input_signature[1])[0]
  return lambda photos: signature(**{name: tf.cast(photos, tf.float32)})[
      output]


def detect_labels_side(input_image: tf.Tensor, target_image: tf.Tensor,
                       palette: data_lib.Palette) -> Optional[str]:
  """Which side of the pairs is the label map ("input" or "target"), by
  colours near the palette; None when neither looks like one."""
  fractions = {"input": segmentation.labels_fraction(input_image, palette),
               "target": segmentation.labels_fraction(target_image, palette)}
  side = max(fractions, key=fractions.get)
  return side if fractions[side] > 0.5 else None


def evaluate(generate: Callable, batches: Iterable, accumulator: Accumulator,
             labels: str = "auto", description: str = "the pairs",
             strict_labels: bool = True,
             progress: Optional[Callable[[int], None]] = None
             ) -> Dict[str, object]:
  """The evaluation loop: each batch of (names, input_image, target_image)
  is translated by `generate` and scored into `accumulator`.

  Args:
    generate: input images in [-1, 1] -> generated images in [-1, 1].
    batches: (names, input_image, target_image) batches, names as bytes or
      str (`make_dataset(..., with_names=True)`).
    accumulator: collects the metrics; with a palette, its `labels_side` is
      detected from the first batch when `labels` is "auto".
    labels: "auto", "input" or "target": which side is the label map.
    description: the data, for the error message.
    strict_labels: raise when "auto" finds no label map (else the
      segmentation scores are left out).
    progress: called with the number of images done after each batch.

  Returns:
    `accumulator.result()`.

  Raises:
    ValueError: with `strict_labels`, a palette is given, `labels` is
      "auto", and neither side of the first batch looks like a label map.
  """
  done = 0
  for names, input_image, target_image in batches:
    if accumulator.palette is not None and accumulator.labels_side is None:
      accumulator.labels_side = (detect_labels_side(
          input_image, target_image, accumulator.palette)
                                 if labels == "auto" else labels)
      if accumulator.labels_side is None and strict_labels:
        raise errors.CommandError(
            f"Neither side of {description} looks like a "
            f"{accumulator.palette.name} label map; set --labels=input or "
            "--labels=target.")
    names = [n.decode() if isinstance(n, bytes) else n
             for n in (names.numpy() if hasattr(names, "numpy") else names)]
    accumulator.add(names, input_image, generate(input_image), target_image)
    done += len(names)
    if progress is not None:
      progress(done)
  return accumulator.result()


class Validator:
  """Training's val pass: the val split's metrics, as TensorBoard scalars.

  l1 is L1 in [-1, 1] units, as the training loss gen_l1_loss (a tag of
  its own, so that TensorBoard does not draw the two as one); mse, psnr and
  ssim as `metrics`; with --label_palette also the segmentation scores
  (e.g. fcn_generated/class_iou), with --segmenter the FCN-score.
  """

  def __init__(self, config: config_lib.Config, generate: Callable,
               split: data_lib.Split):
    self.config = config
    self.generate = generate
    self.split = split
    self.palette = (data_lib.load_palette(config.outputs.label_palette)
                    if config.outputs.label_palette else None)
    self.segmenter = (load_segmenter(config.outputs.segmenter)
                      if config.outputs.segmenter else None)
    self.labels_side = None
    # Built once: each val pass iterates it again (the same files, read
    # afresh), without tracing the pipeline again.
    self.batches = data_lib.make_dataset(
        split, config, config.optimisation.batch_size, training=False,
        with_names=True,
        # At the resolution the run's export will translate at by default.
        resolution=data_lib.implied_resolution(config.data.preprocess))

  def __call__(self) -> Dict[str, float]:
    multiple = 2 ** self.config.model.generator_depth
    accumulator = Accumulator(VALIDATION_METRICS, palette=self.palette,
                              labels_side=self.labels_side,
                              segmenter=self.segmenter)
    # A palette whose colours the val pairs do not show: no segmentation
    # scores, rather than a run stopped at its first val pass.
    result = evaluate(
        lambda images: data_lib.through_padding(self.generate, images,
                                                multiple),
        self.batches, accumulator, strict_labels=False)
    self.labels_side = accumulator.labels_side
    values = dict(result["metrics"])
    for task, scores in result.get("segmentation", {}).items():
      for name in ("per_pixel_accuracy", "per_class_accuracy", "class_iou"):
        values[f"{task}/{name}"] = scores[name]
    return values


def check_evaluation_files(config: config_lib.Config) -> None:
  """--label_palette and --segmenter name readable files, or ConfigError."""
  if config.outputs.label_palette:
    try:
      data_lib.load_palette(config.outputs.label_palette)
    except ValueError as e:
      raise config_lib.ConfigError(str(e)) from e
  if config.outputs.segmenter:
    _check_segmenter(config.outputs.segmenter)


@dataclasses.dataclass(frozen=True)
class Options:
  """What `evaluate_saved_model` computes, from the evaluate command's
  flags."""
  metrics: Sequence[str] = config_lib.METRICS
  batch_size: int = 8
  pixel_tolerance: float = 25.0
  label_palette: str = ""
  labels: str = "auto"
  segmenter: str = ""
  inception_weights: str = ""
  max_pixels: int = config_lib.DEFAULT_MAX_PIXELS
  verbose: bool = True
  resolution: Optional[str] = None  # Default: the export's.


def evaluate_saved_model(saved_model: str, data_dir: str, split: str,
                         options: Options = Options()) -> Dict[str, object]:
  """Evaluates an exported generator on `<data_dir>/<split>`.

  Raises:
    serving.ExportError: a SavedModel that cannot be loaded.
    data.DatasetError: a file that is not an image.
    data.TooLargeError: an image that declares more than
      `options.max_pixels` pixels.
    ValueError: a bad palette or segmenter, or undetectable labels.
    All but the last before anything is decoded or translated.
  """
  loaded = saved_model_lib.load_export(saved_model)
  metadata = json.loads(loaded.metadata_json.numpy())
  config = config_lib.Config.from_json(
      json.dumps(metadata["flags"]), data_dir=data_dir,
      max_pixels=options.max_pixels)
  translate = loaded.signatures["serving_default"]
  resolution = saved_model_lib.resolution_of(metadata, options.resolution)
  files = data_lib.list_split(data_dir, split)
  data_lib.check_headers(files, options.max_pixels)
  accumulator, notes = _accumulator(options)
  progbar = keras.utils.Progbar(
      len(files), unit_name="image",
      verbose=(1 if sys.stdout.isatty() else 2) if options.verbose else 0)
  batches = data_lib.make_dataset(files, config, options.batch_size,
                                  training=False, with_names=True,
                                  resolution=resolution)
  result = evaluate(
      lambda images: data_lib.through_padding(
          lambda padded: translate(images=padded)["generated_image"], images,
          metadata["size_multiple"]),
      batches, accumulator, options.labels, f"{data_dir}/{split}",
      progress=progbar.update)
  if accumulator.palette is not None and (
      accumulator.labels_side == "input" and not options.segmenter):
    notes.append("FCN-score skipped: labels -> photo needs --segmenter (train "
                 "one with python -m pix2pix_tf.segmenter).")
  result.update({"saved_model": saved_model, "data_dir": data_dir,
                 "split": split, "step": metadata["step"],
                 "inference_mode": metadata["inference_mode"],
                 "resolution": resolution,
                 "pixel_tolerance": options.pixel_tolerance, "notes": notes,
                 "per_image": accumulator.per_image})
  if accumulator.palette is not None:
    result["label_palette"] = accumulator.palette.name
    result["labels_side"] = accumulator.labels_side
  return result


def _accumulator(options: Options):
  """The accumulator `options` ask for, and notes on what is skipped."""
  notes = []
  metrics = [m for m in options.metrics
             if m not in ("fid", "kid") or options.inception_weights]
  notes += _inception_notes(options)
  accumulator = Accumulator(
      metrics, options.pixel_tolerance,
      data_lib.load_palette(options.label_palette)
      if options.label_palette else None,
      segmenter=(load_segmenter(options.segmenter) if options.segmenter
                 else None),
      inception=(metrics_lib.inception_model(options.inception_weights)
                 if options.inception_weights else None))
  return accumulator, notes


def _inception_notes(options: Options) -> List[str]:
  """What FID and KID are comparable with, by the network they use."""
  if not {"fid", "kid"} & set(options.metrics):
    return []
  weights = options.inception_weights
  url = fid_inception.WEIGHTS_URL
  fid_weights = (f"--inception_weights={os.path.basename(url)} "
                 f"(pytorch-fid's, {url})")
  if not weights:
    return [f"FID and KID skipped: give {fid_weights}."]
  compares, published = metrics_lib.what_fid_compares_with(weights)
  if published:
    return [f"{compares}, on images rounded to 8 bits at the evaluated "
            "resolution."]
  return [f"{compares}. For FID comparable with published figures, give "
          f"{fid_weights}."]


def format_evaluation(result: Dict[str, object]) -> str:
  """`evaluate_saved_model`'s result as the table the command prints."""
  lines = [f"{result['num_images']} images of {result['data_dir']}/"
           f"{result['split']}, step {result['step']}, "
           f"{result['inference_mode']} inference, {result['resolution']} "
           "resolution", ""]
  width = max(len(name) for name in result["metrics"]) + 2
  for name, value in result["metrics"].items():
    lines.append(f"{name:<{width}}{value:>12.4f}")
  for name, scores in result.get("segmentation", {}).items():
    lines.append("")
    classes = len(scores.get("classes", ())) or "the"
    lines.append(f"{name}: per-pixel acc {scores['per_pixel_accuracy']:.3f}, "
                 f"per-class acc {scores['per_class_accuracy']:.3f}, class "
                 f"IoU {scores['class_iou']:.3f} (means over all {classes} "
                 "classes, as the paper's code; over the classes present: "
                 f"{scores['per_class_accuracy_over_present']:.3f} and "
                 f"{scores['class_iou_over_present']:.3f})")
  lines += [""] + list(result["notes"]) if result["notes"] else []
  return "\n".join(lines)


def evaluate_checkpoint(model_dir: str, checkpoint: str, data_dir: str,
                        split: str, options: Options = Options()
                        ) -> Dict[str, object]:
  """`evaluate_saved_model` of a run's checkpoint, exported to a temporary
  folder (removed afterwards) the way `export` writes it."""
  with temporaries.scratch("evaluate") as staging:
    saved_model = saved_model_lib.export(
        model_dir, os.path.join(staging, "export"), checkpoint)
    result = evaluate_saved_model(saved_model, data_dir, split, options)
  result["checkpoint"] = checkpoint
  return result
