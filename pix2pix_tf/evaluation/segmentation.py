"""Label maps: colour -> class, and the paper's segmentation scores.

A palette (`data.palettes`) maps class names to RGB colours. Label images
are usually JPEG-compressed, so each pixel is given the class of the nearest
palette colour. Pixels whose
true colour is nearest a "void" colour are not scored; a *predicted* void
pixel is scored as an error (see `confusion_matrix`).

Scores follow the paper's FCN-score tables: per-pixel accuracy, per-class
accuracy (mean over classes present in the ground truth) and class IoU (mean
intersection over union over classes present in the ground truth or the
prediction), from a confusion matrix accumulated over the whole split.
"""

from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from pix2pix_tf.data.palettes import Palette

IGNORE = -1


def colors_to_classes(images: tf.Tensor, palette: Palette) -> tf.Tensor:
  """Class index of each pixel's nearest palette colour; IGNORE for void.

  Args:
    images: (..., h, w, 3), uint8 or float in [-1, 1].
  Returns:
    int32 (..., h, w).
  """
  images = tf.convert_to_tensor(images)
  if images.dtype != tf.uint8:
    images = (tf.cast(images, tf.float32) + 1.0) * 127.5
  images = tf.cast(images, tf.float32)
  colors = tf.constant(np.concatenate([palette.colors, palette.void_colors]),
                       tf.float32)
  distances = tf.reduce_sum(tf.square(images[..., None, :] - colors), -1)
  nearest = tf.cast(tf.argmin(distances, axis=-1), tf.int32)
  return tf.where(nearest >= palette.num_classes, IGNORE, nearest)


def confusion_matrix(true_classes: tf.Tensor, predicted_classes: tf.Tensor,
                     num_classes: int) -> np.ndarray:
  """(num_classes, num_classes + 1) pixel counts: rows true, columns
  predicted, the last column the pixels predicted void (IGNORE).

  Only pixels whose *true* class is void are left out. A void prediction is
  an error like any wrong class: were such pixels dropped too, a segmenter
  that answered "void" wherever unsure would score higher.
  """
  true = np.asarray(true_classes).reshape(-1)
  predicted = np.asarray(predicted_classes).reshape(-1)
  keep = true != IGNORE
  true, predicted = true[keep], predicted[keep]
  predicted = np.where(predicted == IGNORE, num_classes, predicted)
  columns = num_classes + 1
  return np.bincount(true * columns + predicted,
                     minlength=num_classes * columns).reshape(num_classes,
                                                              columns)


def scores(confusion: np.ndarray,
           class_names: Sequence[str] = ()) -> Dict[str, object]:
  """Per-pixel accuracy, per-class accuracy and class IoU of a confusion
  matrix from `confusion_matrix`, plus each class's accuracy and IoU.

  Pixels predicted void count against their true class (and in no class's
  predictions), so an all-void prediction scores 0 everywhere.
  """
  confusion = confusion.astype(np.float64)
  num_classes = confusion.shape[0]
  if confusion.shape != (num_classes, num_classes + 1):
    raise ValueError(f"A confusion matrix from confusion_matrix has shape "
                     f"(n, n + 1), not {confusion.shape}.")
  true_totals = confusion.sum(1)
  predicted_totals = confusion[:, :num_classes].sum(0)
  correct = np.diag(confusion[:, :num_classes])
  present = true_totals > 0
  union = true_totals + predicted_totals - correct
  with np.errstate(divide="ignore", invalid="ignore"):
    class_accuracy = np.where(present, correct / true_totals, np.nan)
    class_iou = np.where(union > 0, correct / union, np.nan)
  total = confusion.sum()
  result = {
      "per_pixel_accuracy": float(correct.sum() / total) if total else 0.0,
      "per_class_accuracy": float(np.nanmean(class_accuracy))
                            if present.any() else 0.0,
      "class_iou": float(np.nanmean(class_iou)) if (union > 0).any() else 0.0,
  }
  if class_names:
    result["classes"] = {
        name: {"accuracy": None if np.isnan(a) else float(a),
               "iou": None if np.isnan(i) else float(i)}
        for name, a, i in zip(class_names, class_accuracy, class_iou)}
  return result


def labels_fraction(images: tf.Tensor, palette: Palette,
                    tolerance: float = 40.0) -> float:
  """Share of pixels within `tolerance` (RGB distance) of a palette colour:
  near 1 for label maps, low for photos."""
  images = tf.cast((tf.cast(images, tf.float32) + 1.0) * 127.5, tf.float32)
  colors = tf.constant(np.concatenate([palette.colors, palette.void_colors]),
                       tf.float32)
  distances = tf.reduce_min(tf.reduce_sum(
      tf.square(images[..., None, :] - colors), -1), -1)
  return float(tf.reduce_mean(tf.cast(distances <= tolerance ** 2,
                                      tf.float32)))
