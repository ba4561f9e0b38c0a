"""What the training loop does besides steps: the progress bar, and the
periodic actions (log, sample, validate, checkpoint, preemption), each a
named object that knows when it is due."""

import dataclasses
import os
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import keras
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from pix2pix_tf import config as config_lib
from pix2pix_tf import data as data_lib
from pix2pix_tf import outputs
from pix2pix_tf.kernels import machines
from pix2pix_tf.training import precision
from pix2pix_tf.training import run as run_lib


def image_grid(input_image: tf.Tensor, generated_image: tf.Tensor,
               target_image: tf.Tensor) -> tf.Tensor:
  """Rows of input | generated | target, as one uint8 image (H, W, 3)."""
  columns = [data_lib.to_uint8(x) for x in
             (input_image, generated_image, target_image)]
  columns = [tf.image.grayscale_to_rgb(x) if x.shape[-1] == 1 else x
             for x in columns]
  rows = tf.concat(columns, axis=2)  # (n, h, 3w, 3)
  return tf.reshape(rows, [-1, rows.shape[2], 3])  # (n*h, 3w, 3)


def hparams_of(config: config_lib.Config) -> Dict[str, object]:
  """The options as TensorBoard hparams, auto and unset kernel options as
  this machine resolves them: the HParams tab compares what ran
  (config.json keeps them as given, for a resume elsewhere)."""
  return {**config.flat(), **machines.kernels_used(config.kernels),
          "mixed_precision": precision.resolve_mixed_precision(
              config.run.mixed_precision)}


def format_metrics(values: Dict[str, float]) -> str:
  """`name value, ...` with four decimals, for the log lines."""
  return ", ".join(f"{name} {value:.4f}" for name, value in values.items())


class Window:
  """The losses and the throughput since the last log."""

  def __init__(self, names: Sequence[str]):
    self.names = tuple(names)
    self.reset()

  def reset(self) -> None:
    """Starts a new window now."""
    self.sums = {name: 0.0 for name in self.names}
    self.steps = 0
    self.start = time.perf_counter()

  def add(self, metrics: Dict[str, float], steps: int) -> None:
    """Adds a call's metrics (means over its `steps` steps)."""
    for name in self.names:
      self.sums[name] += metrics[name] * steps
    self.steps += steps

  def means(self) -> Dict[str, float]:
    """Each metric's mean over the window's steps."""
    return {name: total / self.steps for name, total in self.sums.items()}

  def images_per_second(self, batch_size: int) -> float:
    """Training images per second since the window began."""
    elapsed = time.perf_counter() - self.start
    return self.steps * batch_size / max(elapsed, 1e-9)


class EpochProgress:
  """An "Epoch e/E" line and a Keras progress bar per epoch, showing the
  losses and images/s. (The dataset tools' `data.building.Progress` is
  another thing: a line of files done, without TensorFlow's import.)"""

  def __init__(self, total_steps: int, steps_per_epoch: int, window: Window,
               batch_size: int):
    self.total_steps = total_steps
    self.steps_per_epoch = steps_per_epoch
    self.window = window
    self.batch_size = batch_size
    self.bar = None
    self.verbose = 1 if sys.stdout.isatty() else 2

  def begin(self, step: int) -> None:
    """Before the block that starts at `step`."""
    if self.bar is not None and step % self.steps_per_epoch:
      return
    epoch = step // self.steps_per_epoch
    print(f"Epoch {epoch + 1}/{-(-self.total_steps // self.steps_per_epoch)}",
          flush=True)
    self.bar = keras.utils.Progbar(
        min(self.steps_per_epoch,
            self.total_steps - epoch * self.steps_per_epoch),
        verbose=self.verbose, stateful_metrics=("images/s",))

  def update(self, step: int, metrics: Dict[str, float]) -> None:
    """After the block that ended at `step`."""
    in_epoch = step - (step - 1) // self.steps_per_epoch * self.steps_per_epoch
    self.bar.update(in_epoch, [(k, metrics[k]) for k in self.window.names] +
                    [("images/s",
                      self.window.images_per_second(self.batch_size))])


class PeriodicAction:
  """Something the loop does after the step that reaches a multiple of
  `every` (and after the last step when `at_end`)."""

  every: int = 1
  at_end: bool = False

  def due(self, step: int, total_steps: int) -> bool:
    """Whether the action runs after `step` of `total_steps`."""
    if step == total_steps:
      return self.at_end
    return step % self.every == 0

  def __call__(self, step: int) -> None:
    raise NotImplementedError


class LogScalars(PeriodicAction):
  """The window's mean losses, the learning rate of the last update and
  images/s, to TensorBoard; the latest means are kept in `results`."""

  at_end = True

  def __init__(self, every: int, writer: tf.summary.SummaryWriter,
               window: Window,
               schedule: keras.optimizers.schedules.LearningRateSchedule,
               batch_size: int, results: Dict[str, float]):
    self.every = every
    self.writer = writer
    self.window = window
    self.schedule = schedule
    self.batch_size = batch_size
    self.results = results

  def __call__(self, step: int) -> None:
    means = self.window.means()
    with self.writer.as_default(step=step):
      for name, value in means.items():
        tf.summary.scalar(name, value)
      # The rate of the update this step applied.
      tf.summary.scalar("learning_rate", float(self.schedule(step - 1)))
      tf.summary.scalar("images_per_second",
                        self.window.images_per_second(self.batch_size))
    self.results.update(means)
    self.window.reset()


class WriteSample(PeriodicAction):
  """The input | generated | target grid of fixed examples, to TensorBoard
  and to <model_dir>/samples/step_NNNNNNN.png."""

  at_end = True

  def __init__(self, every: int, writer: tf.summary.SummaryWriter,
               folder: outputs.Folder,
               generate: Callable[[tf.Tensor], tf.Tensor],
               batch: Tuple[tf.Tensor, tf.Tensor]):
    self.every = every
    self.writer = writer
    self.folder = folder
    self.generate = generate
    self.batch = batch

  def __call__(self, step: int) -> None:
    input_image, target_image = self.batch
    grid = image_grid(input_image, self.generate(input_image), target_image)
    with self.writer.as_default(step=step):
      tf.summary.image("input_generated_target", grid[None], max_outputs=1)
    self.folder.write_bytes(f"samples/step_{step:07d}.png",
                            tf.io.encode_png(grid).numpy())


class Validate(PeriodicAction):
  """The val metrics, to TensorBoard (the last step's pass runs after the
  loop, in `Actions.finish`)."""

  def __init__(self, every: int, writer: tf.summary.SummaryWriter,
               validator: Callable[[], Dict]):
    self.every = every
    self.writer = writer
    self.validator = validator

  def __call__(self, step: int) -> Dict[str, float]:
    values = self.validator()
    with self.writer.as_default(step=step):
      for name, value in values.items():
        tf.summary.scalar(name, value)
    return values


class SaveCheckpoint(PeriodicAction):
  """A checkpoint numbered by its step."""

  at_end = True

  def __init__(self, every: int, manager: tf.train.CheckpointManager,
               saved_step: int):
    self.every = every
    self.manager = manager
    self.saved_step = saved_step

  def __call__(self, step: int) -> None:
    self.save(step)

  def save(self, step: int) -> None:
    """Saves at `step` unless that step is saved already."""
    if self.saved_step != step:
      try:
        self.manager.save(checkpoint_number=step)
      except Exception:
        # A full disk or a file-size limit: the earlier checkpoints stand,
        # and the parts of this one go.
        for partial in tf.io.gfile.glob(os.path.join(
            self.manager.directory, run_lib.PARTIAL_SAVES)):
          tf.io.gfile.rmtree(partial)
        raise
      self.saved_step = step


class ProfilerTrace:
  """--profile_steps=FIRST,LAST: TensorFlow's profiler traces the updates
  that take the step counter from FIRST - 1 to LAST, into `logdir`."""

  def __init__(self, first: int, last: int, logdir: str):
    self.first, self.last, self.logdir = first, last, logdir
    self.tracing = False
    self.reached = first - 1

  @property
  def stops(self) -> Tuple[int, int]:
    """The steps where a block of steps must end for the trace to start and
    stop on time."""
    return (self.first - 1, self.last)

  def before(self, step: int) -> None:
    """Starts the trace when the next update is step FIRST."""
    if step == self.first - 1:
      tf.profiler.experimental.start(self.logdir)
      self.tracing = True

  def after(self, step: int) -> None:
    """Notes the step reached; ends the trace once step LAST is done."""
    self.reached = step
    if step >= self.last:
      self.close()

  def close(self) -> None:
    """Ends and writes the trace, if one is running (a run stopped early
    ends it where it stopped)."""
    if self.tracing:
      tf.profiler.experimental.stop()
      self.tracing = False
      print(f"Profiled steps {self.first} to {self.reached} into "
            f"{self.logdir}.", flush=True)


class PreemptionCheckpointSaved(Exception):
  """A multi-worker run saved its checkpoint after a worker got SIGTERM."""


def _stop_after_preemption_checkpoint():
  raise PreemptionCheckpointSaved()


class Preemption:
  """Multi-worker: TensorFlow's PreemptionCheckpointHandler, which agrees
  with every worker on the step to save at when one gets SIGTERM; then the
  run stops as a single-process run does (not TensorFlow's default exit)."""

  def __init__(self, run: run_lib.Run):
    self.manager = run.manager
    self.handler = tf.distribute.experimental.PreemptionCheckpointHandler(
        run.strategy.cluster_resolver, run.manager,
        termination_config=tf.distribute.experimental.TerminationConfig(
            exit_fn=_stop_after_preemption_checkpoint))

  def __call__(self, step: int) -> bool:
    """Whether the run must stop (its checkpoint is saved)."""
    try:
      self.handler.save_checkpoint_if_preempted(checkpoint_number=step)
    except PreemptionCheckpointSaved:
      print(f"\nStopped by SIGTERM to a worker at step {step}; saved "
            f"{self.manager.latest_checkpoint}. Run the same command on "
            "every worker to resume.", flush=True)
      return True
    return False


@dataclasses.dataclass
class Actions:
  """A run's actions: the periodic ones in order, with the window they log,
  the checkpoint action (which a SIGTERM also calls) and the preemption
  handler of a multi-worker run."""
  run: run_lib.Run
  window: Window
  periodic: List[PeriodicAction]
  checkpoints: SaveCheckpoint
  preemption: Optional[Preemption]
  validate: Optional[Validate]
  writers: Dict[str, object]
  results: Dict[str, float]
  profile: Optional[ProfilerTrace] = None

  def start(self, step: int) -> Dict[str, float]:
    """Before the first step: the skipped-images count; for a fresh run,
    what describes it (`describe`) and the val metrics at step 0."""
    skipped = self.run.data.skipped
    if skipped:
      with self.writers["train"].as_default(step=step):
        tf.summary.scalar("skipped_images", len(skipped))
    if step == 0:
      self.describe()
    if self.validate is not None and step == 0:
      start = self.validate(0)
      self.results["val_l1_start"] = start["l1"]
      print(f"val at step 0: {format_metrics(start)}", flush=True)
    return self.results

  def describe(self) -> None:
    """A fresh run's step 0 in TensorBoard: its flags as text, its options
    as hparams (written to logs/, so that the HParams tab lists each run's
    options beside the metrics of its train/ and val/ scalars), and the
    sample grid before training."""
    config = self.run.config
    with self.writers["train"].as_default(step=0):
      tf.summary.text("flags", "<pre>" + run_lib.flagfile_text(config) +
                      "</pre>")
    with self.writers["hparams"].as_default(step=0):
      hparams_api.hparams(hparams_of(config),
                          trial_id=os.path.basename(
                              os.path.abspath(config.outputs.model_dir)))
    for action in self.periodic:
      if isinstance(action, WriteSample):
        action(0)

  def finish(self, step: int) -> Dict[str, float]:
    """After the last step: the val metrics of a finished run; the logs
    flushed."""
    if self.validate is not None and step == self.run.data.total_steps:
      end = self.validate(step)
      self.results.update({f"val_{name}": value
                           for name, value in end.items()})
      print(f"val at step {step}: {format_metrics(end)}", flush=True)
    for writer in self.writers.values():
      writer.flush()
    return self.results


def standard_actions(run: run_lib.Run, generate: Callable,
                     validator: Optional[Callable[[], Dict]]) -> Actions:
  """The actions --log_every_steps, --sample_every_steps, --eval_every_steps
  and --checkpoint_every_steps ask for, in that order."""
  config, data, paths = run.config, run.data, run.paths
  writers = {"train": tf.summary.create_file_writer(paths.logs("train")),
             "hparams": tf.summary.create_file_writer(paths.logs(""))}
  if validator is not None:
    writers["val"] = tf.summary.create_file_writer(paths.logs("val"))
  window = Window(run.built.train_step.metric_names)
  results: Dict[str, float] = {}
  periodic: List[PeriodicAction] = [LogScalars(
      config.outputs.log_every_steps, writers["train"], window, run.schedule,
      config.optimisation.batch_size, results)]
  sample_split = data.val or data.train
  if config.outputs.num_samples:
    batch = next(iter(data_lib.make_dataset(
        sample_split, config,
        min(config.outputs.num_samples, sample_split.count), training=False)))
    # (At --preprocess=scale_width* the samples keep their aspect: sizes
    # the generator may take only padded.)
    multiple = 2 ** config.model.generator_depth
    periodic.append(WriteSample(
        config.outputs.sample_every_steps, writers["train"], run.folder,
        lambda images: data_lib.through_padding(generate, images, multiple),
        batch))
  validate = None
  if validator is not None:
    validate = Validate(config.outputs.eval_every_steps, writers["val"],
                        validator)
    periodic.append(validate)
  checkpoints = SaveCheckpoint(config.outputs.checkpoint_every_steps,
                               run.manager, run.step)
  periodic.append(checkpoints)
  preemption = (Preemption(run) if config.run.strategy == "multi_worker"
                else None)
  profile = (ProfilerTrace(*config.outputs.profiled_steps, paths.logs("train"))
             if config.outputs.profiled_steps else None)
  return Actions(run, window, periodic, checkpoints, preemption, validate,
                 writers, results, profile)
