"""Label maps: colour -> class, and the paper's segmentation scores.

A palette (`data.palettes`) maps class names to RGB colours. Label images
are usually JPEG-compressed, so each pixel is given the class of the nearest
palette colour. Pixels whose
true colour is nearest a "void" colour are not scored; a *predicted* void
pixel is scored as an error (see `confusion_matrix`).

Scores are those of the paper's FCN-score tables, computed as its
evaluation code (`get_scores` of the reference's `scripts/eval_cityscapes`)
computes them from a confusion matrix accumulated over the whole split:
per-pixel accuracy, per-class accuracy and class IoU, the last two means over
*all* the palette's classes, each denominator plus 1e-12, so that a class
absent from the ground truth counts 0. The means over the classes present
(in the ground truth for accuracy, in it or the prediction for IoU) are
reported too, under names that say so.
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
  matrix from `confusion_matrix`, as the paper's code computes them (see
  the module's docstring), their means over the classes present, and with
  `class_names` each class's accuracy and IoU (None for a class absent
  from the ground truth, and from the prediction too for IoU).

  Pixels predicted void count against their true class (and in no class's
  predictions), so an all-void prediction scores 0 everywhere.
  """
  confusion = confusion.astype(np.float64)
  num_classes = confusion.shape[0]
  if confusion.shape != (num_classes, num_classes + 1):
    raise ValueError(f"A confusion matrix from confusion_matrix has shape "
                     f"(n, n + 1), not {confusion.shape}.")
  true_totals = confusion.sum(1)
  correct = np.diag(confusion[:, :num_classes])
  union = true_totals + confusion[:, :num_classes].sum(0) - correct
  class_accuracy = correct / (true_totals + _EPSILON)
  class_iou = correct / (union + _EPSILON)
  present, seen = true_totals > 0, union > 0
  result = {
      "per_pixel_accuracy": float(correct.sum() /
                                  (confusion.sum() + _EPSILON)),
      "per_class_accuracy": float(class_accuracy.mean()),
      "class_iou": float(class_iou.mean()),
      "per_class_accuracy_over_present": float(
          class_accuracy[present].mean()) if present.any() else 0.0,
      "class_iou_over_present": float(class_iou[seen].mean())
                                if seen.any() else 0.0,
  }
  if class_names:
    result["classes"] = {
        name: {"accuracy": float(a) if p else None,
               "iou": float(i) if s else None}
        for name, a, i, p, s in zip(class_names, class_accuracy, class_iou,
                                    present, seen)}
  return result


# The reference's: added to every denominator, so that an absent class
# scores 0 (0 / 1e-12) rather than NaN.
_EPSILON = 1e-12


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
