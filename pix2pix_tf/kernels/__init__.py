"""Faster training kernels for the paper's networks, opt-in per option.

`models` builds the networks from Keras's layers only. On some machines
Keras's and TensorFlow's own kernels train them slowly; the classes here
train the same layers on other kernels, computing the same values with the
same variables (their tests compare outputs, gradients and second
derivatives with Keras's). `for_training` applies them to a run's networks
and optimizer when the run is built (`training.state.create_state`); the
`segmenter` command trains its U-Net on them too (`with_kernels`). Nowhere
else: the exports of a run, `predict`, `evaluate` and the checkpoints hold
Keras's layers only. (A run's own networks, e.g. `Pix2Pix.generator`, and
the segmenter's SavedModel hold the kernel classes, which infer as Keras's
layers do; importing `pix2pix_tf.kernels` registers them for loading.)

Each kernel option (the "kernels" group of the training flags; all false
is Keras's and TensorFlow's own kernels; unset, this kind of machine's
default, from the table in `machines`, as `--mixed_precision=auto` is):

* `--fused_batch_norm`: batch norm trained with TensorFlow's fused
  FusedBatchNormV3 (`batch_norm.FusedBatchNormalization`).
* `--matmul_small_convs`: strided convolutions over small maps trained as
  matrix multiplies over image patches, and their transposes as a product
  and a fold (`convolutions`), on machines without a GPU.
* `--compiled_activations`: bfloat16 LeakyReLU and ReLU trained as
  XLA-compiled programs (`activations`), on machines without a GPU.
* `--fused_updates`: Adam's update as TensorFlow's `ResourceApplyAdam`, one
  kernel per variable (`adam`).

What each one gains on each kind of machine, measured by
`tools/benchmark.py --kernels_in_turn`, is in docs/performance.md.
"""

from pix2pix_tf.kernels.activations import LeakyReLU, ReLU
from pix2pix_tf.kernels.adam import FusedUpdates, fused_adam
from pix2pix_tf.kernels.apply import (LAYER_OPTIONS, SWAPS, for_training,
                                      with_kernels)
from pix2pix_tf.kernels.batch_norm import FusedBatchNormalization
from pix2pix_tf.kernels.convolutions import (Conv2D, Conv2DTranspose,
                                             used_here)
from pix2pix_tf.kernels import machines

__all__ = [
    "Conv2D", "Conv2DTranspose", "FusedBatchNormalization", "FusedUpdates",
    "LAYER_OPTIONS", "LeakyReLU", "ReLU", "SWAPS", "for_training",
    "fused_adam", "machines", "used_here", "with_kernels"]
