"""The training loop, and `train_and_evaluate`, the job behind `python -m
pix2pix_tf.train`.

The loop runs steps in blocks (up to --steps_per_execution, ending where an
action is due) and after each block the periodic actions that are due, in
order: log, sample, validate, checkpoint, preemption (`actions`). A SIGTERM
saves a checkpoint and stops.
"""

import shutil
import signal
import threading
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf import data as data_lib
from pix2pix_tf import models
from pix2pix_tf.evaluation import loop as evaluation_loop
from pix2pix_tf.serving import saved_model
from pix2pix_tf.training import actions as actions_lib
from pix2pix_tf.training import distribution
from pix2pix_tf.training import run as run_lib


class StopSignal:
  """Turns SIGTERM (preemption, `kill`) into a request to save and stop.

  The loop checks `requested` after every step, saves a checkpoint and
  returns. Multi-worker runs use TensorFlow's PreemptionCheckpointHandler
  instead, which agrees on the step with every worker: there (enabled=False)
  SIGTERM is left to the handler it installed, since replacing it would make
  only the signalled worker stop while the others wait in the collective.
  """

  def __init__(self, enabled: bool = True):
    self.enabled = enabled
    self.requested = False
    self._previous = None

  def __enter__(self):
    if self.enabled and threading_is_main():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def threading_is_main() -> bool:
  """Whether this is the main thread (only it may install a handler)."""
  return threading.current_thread() is threading.main_thread()


def next_block(step: int, total_steps: int, steps_per_execution: int,
               periods: Sequence[int], stops: Sequence[int] = ()) -> int:
  """Steps for the next call: up to --steps_per_execution, ending at the
  next step where an action is due (or the epoch or run ends, or at one of
  `stops`), so that actions fire on time."""
  block = min(steps_per_execution, total_steps - step)
  for every in periods:
    block = min(block, every - step % every)
  for stop in stops:
    if stop > step:
      block = min(block, stop - step)
  return block


def run_block(run: run_lib.Run, block: int) -> Dict[str, float]:
  """`block` steps in one call; their mean losses.

  Raises:
    data_lib.DatasetError: a training image that fails to decode, named.
    run_lib.NumericalError: a loss that is not finite, checked before
      anything is saved, so a checkpoint never holds such weights.
  """
  try:
    metrics = run.built.distributed_step(run.iterator, block)
  except (tf.errors.InvalidArgumentError, tf.errors.DataLossError):
    bad = data_lib.find_undecodable(run.data.train,
                                     run.config.data.max_pixels)
    if not bad:
      raise
    raise data_lib.DatasetError(
        f"{bad[0]} is not a usable image pair ({run_lib.BAD_IMAGE}). "
        "Remove or replace it, or pass --on_bad_image=skip, then run "
        "the same command again to resume.") from None
  metrics = {k: float(v) for k, v in metrics.items()}
  broken = [k for k, v in metrics.items() if not np.isfinite(v)]
  if broken:
    raise run_lib.NumericalError(
        f"{', '.join(broken)} became {metrics[broken[0]]} at step "
        f"{run.step}. The latest checkpoint "
        f"({run.manager.latest_checkpoint}) holds the last good weights; "
        "lower --learning_rate or check the data, then run again to resume "
        "from it.")
  return metrics


def train_loop(run: run_lib.Run, actions: actions_lib.Actions) -> bool:
  """Trains from the run's step to its last, with the periodic actions.

  Returns:
    Whether a SIGTERM (or a worker's preemption) stopped the run early,
    after saving a checkpoint.
  """
  config, data = run.config, run.data
  total, per_epoch = data.total_steps, data.steps_per_epoch
  progress = actions_lib.EpochProgress(total, per_epoch, actions.window,
                                       config.optimisation.batch_size)
  periods = [a.every for a in actions.periodic] + [per_epoch]
  profile = actions.profile
  step = run.step
  with StopSignal(enabled=actions.preemption is None) as stop:
    while step < total:
      block = next_block(step, total, config.run.steps_per_execution, periods,
                         profile.stops if profile else ())
      progress.begin(step)
      if profile:
        profile.before(step)
      metrics = run_block(run, block)
      step += block
      if profile:
        profile.after(step)
      actions.window.add(metrics, block)
      progress.update(step, metrics)
      for action in actions.periodic:
        if action.due(step, total):
          action(step)
      if actions.preemption is not None and actions.preemption(step):
        return True
      if stop.requested:
        actions.checkpoints.save(step)
        print(f"\nStopped by SIGTERM at step {step}; saved "
              f"{run.manager.latest_checkpoint}. Run the same command to "
              "resume.", flush=True)
        return True
  return False


def train_and_evaluate(config: config_lib.Config,
                       strategy: Optional[tf.distribute.Strategy] = None
                       ) -> Dict[str, float]:
  """Trains (or resumes) a pix2pix model as `config` says: validates on the
  val split, writes samples and checkpoints, and exports the generator to
  <model_dir>/export at the end.

  Returns:
    the final metrics: the last logged training losses, and when a val split
    exists `val_l1_start` (for a fresh run) and the val metrics at
    the end; `step`, `weights_digest`, and `stopped` when SIGTERM ended the
    run early.

  Raises:
    config_lib.ConfigError, data_lib.DatasetError: bad flags or data,
      raised before anything is written (or, for an image that only fails to
      decode during training, before any checkpoint is written after it).
    run_lib.NumericalError: a NaN or Inf loss.
  """
  if config.run.deterministic:  # Before the strategy starts TensorFlow.
    print(distribution.make_deterministic(), flush=True)
  strategy = strategy or distribution.make_strategy(config.run.strategy)
  evaluation_loop.check_evaluation_files(config)
  saved_model.check_export_dir(config.outputs.model_dir)
  run = run_lib.setup(config, strategy)
  with strategy.scope():
    generate = models.make_generate(run.state.generator,
                                    config.outputs.inference_mode)
  validator = (evaluation_loop.Validator(config, generate, run.data.val)
               if run.data.val else None)
  actions = actions_lib.standard_actions(run, generate, validator)
  results = actions.start(run.step)
  try:
    stopped = train_loop(run, actions)
  finally:
    if actions.profile:  # A run that stops early writes what it traced.
      actions.profile.close()
  results.update(actions.finish(run.step))
  if stopped:
    results["stopped"] = True
  return _finish(run, results)


def _finish(run: run_lib.Run, results: Dict[str, float]) -> Dict[str, float]:
  """After the last step: the export (by the chief of a finished run), the
  scratch folder of other workers removed, the weights' digest."""
  step = run.step
  if run.chief and step == run.data.total_steps:
    export_dir = saved_model.export_generator(
        run.state.generator, run.config, step, run.paths.model_dir)
    print(f"Checkpoints: {run.paths.checkpoints}\n"
          f"SavedModel: {export_dir}\n"
          f"Samples (input | generated | target): {run.paths.samples}\n"
          f"TensorBoard: tensorboard --logdir {run.paths.logs('')}",
          flush=True)
  if not run.chief:
    shutil.rmtree(run.paths.model_dir, ignore_errors=True)
  results["step"] = step
  results["weights_digest"] = distribution.weights_digest(
      run.state.generator)
  print(f"Generator trainable weights digest at step {step}: "
        f"{results['weights_digest']}", flush=True)
  return results
