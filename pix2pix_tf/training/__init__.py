"""Training: the paper's update under a tf.distribute strategy, and the loop.

* `losses`: the cGAN, L1 and variant objectives.
* `step`: `TrainStep`, the per-replica update in the paper's order.
* `state`: `TrainState` (G, D, optimizers, step, random states) and the one
  checkpoint that holds it.
* `schedules`, `precision`: --lr_policy and --mixed_precision.
* `distribution`: the strategy, the chief, the one distributed step.
* `run`: run set-up used by every caller (`build`, `setup`), the checks
  before anything is written, the run's files.
* `keras_model`: `Pix2Pix`, the model as a keras.Model whose `train_step`
  is `step`'s update, for Keras's `fit` (`pix2pix_tf.Pix2Pix`).
* `actions`, `loop`: the periodic actions and the loop;
  `train_and_evaluate` is the job behind `python -m pix2pix_tf.train`.
"""

from pix2pix_tf.training.distribution import (is_chief, make_deterministic,
                                              make_distributed_step,
                                              make_strategy, weights_digest)
from pix2pix_tf.training.keras_model import Pix2Pix
from pix2pix_tf.training.loop import StopSignal, train_and_evaluate
from pix2pix_tf.training.precision import (POLICIES, dtype_policy,
                                           resolve_mixed_precision)
from pix2pix_tf.training.run import (BAD_IMAGE, RUN, RUN_FILES, RUN_FOLDERS,
                                     Built, NumericalError, Run, RunPaths,
                                     build, check_run, total_steps,
                                     open_run_folder, setup, train_iterator,
                                     write_run_config)
from pix2pix_tf.training.schedules import LinearDecay, learning_rate_schedule
from pix2pix_tf.training.state import TrainState, create_state
from pix2pix_tf.training.step import TrainStep, make_train_step

__all__ = [
    "BAD_IMAGE", "Built", "LinearDecay", "NumericalError", "POLICIES",
    "Pix2Pix", "RUN",
    "RUN_FILES", "RUN_FOLDERS", "Run", "RunPaths", "StopSignal", "TrainState",
    "TrainStep", "build", "check_run", "create_state", "dtype_policy",
    "is_chief",
    "learning_rate_schedule", "make_deterministic", "make_distributed_step",
    "make_strategy",
    "make_train_step", "open_run_folder",
    "resolve_mixed_precision", "setup", "total_steps", "train_and_evaluate",
    "train_iterator",
    "weights_digest", "write_run_config"]
