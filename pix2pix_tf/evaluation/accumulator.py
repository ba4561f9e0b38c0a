"""`Accumulator`: a split's metrics, collected batch by batch."""

import os
from typing import Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from pix2pix_tf import data as data_lib
from pix2pix_tf.evaluation import metrics as metrics_lib
from pix2pix_tf.evaluation import segmentation


PER_IMAGE = ("l1", "mse", "psnr", "ssim", "pixel_accuracy")


class Accumulator:
  """Collects a split's metrics batch by batch.

  Args:
    metrics: names from config.METRICS to compute.
    pixel_tolerance: intensity levels (of 255) for pixel accuracy.
    palette: a `data.Palette` for label-map tasks, or None.
    labels_side: "input" (labels -> photo) or "target" (photo -> labels).
    segmenter: a callable from [-1, 1] photos to per-pixel class logits, for
      the FCN-score of labels -> photo.
    inception: an Inception feature model (`metrics.inception_model`), for
      FID and KID.
  """

  def __init__(self, metrics: Sequence[str] = PER_IMAGE,
               pixel_tolerance: float = 25.0,
               palette: Optional[data_lib.Palette] = None,
               labels_side: Optional[str] = None,
               segmenter: Optional[keras.Model] = None,
               inception: Optional[keras.Model] = None):
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

  def add(self, files: Sequence[str], input_image: tf.Tensor,
          generated_image: tf.Tensor, target_image: tf.Tensor) -> None:
    """Adds one batch: the files it was read from and its images in
    [-1, 1]."""
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
      self._add_segmentation(input_image, generated_image, target_image)

  def _add_segmentation(self, input_image, generated_image, target_image):
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
    """The means over every image added, and the set-level metrics."""
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
