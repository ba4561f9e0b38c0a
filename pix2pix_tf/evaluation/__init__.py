"""Evaluation: the metrics, the segmentation scores (and FCN-score), FID and
KID, and the one evaluation loop that training's val pass, the evaluate
command and the ablation runner use.

* `metrics`: L1, MSE, PSNR, SSIM, pixel accuracy, colour distributions,
  Inception features, FID and KID.
* `fid_inception`: the Inception network of published FID figures, read
  from pytorch-fid's weights.
* `segmentation`: colour -> class, confusion matrices and the paper's
  scores.
* `accumulator`: `Accumulator`, a split's metrics batch by batch.
* `loop`: `evaluate` (the loop), `Validator` (training's val pass),
  `evaluate_saved_model` (an export on a split).
"""

from pix2pix_tf.evaluation.accumulator import PER_IMAGE, Accumulator
from pix2pix_tf.evaluation.loop import (Options, Validator,
                                        check_evaluation_files,
                                        detect_labels_side, evaluate,
                                        evaluate_checkpoint,
                                        evaluate_saved_model, format_evaluation,
                                        load_segmenter)

__all__ = [
    "Accumulator", "Options", "PER_IMAGE", "Validator",
    "check_evaluation_files", "detect_labels_side", "evaluate",
    "evaluate_checkpoint",
    "evaluate_saved_model", "format_evaluation", "load_segmenter"]
