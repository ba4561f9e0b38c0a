"""Run set-up, the one every caller uses: checks, data, state and step.

`build` gives the state and the distributed step for a configuration (the
benchmark and tests time and check steps with it); `setup` does everything
a training run does before its first step: check the flags, the data and
--model_dir before anything is written, build, restore the latest
checkpoint, record the flags, and open the training stream.
"""

import dataclasses
import os
from typing import Callable, Iterator, List, Optional

import keras
import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf import data as data_lib
from pix2pix_tf import errors
from pix2pix_tf import models
from pix2pix_tf import outputs
from pix2pix_tf import temporaries
from pix2pix_tf.training import distribution
from pix2pix_tf.training import losses
from pix2pix_tf.training import precision
from pix2pix_tf.training import schedules
from pix2pix_tf.training import state as state_lib
from pix2pix_tf.training import step as step_lib


@dataclasses.dataclass
class RunPaths:
  """Where a run writes. Non-chief workers write to a temporary folder."""
  model_dir: str

  @property
  def checkpoints(self) -> str:
    """<model_dir>/checkpoints."""
    return os.path.join(self.model_dir, "checkpoints")

  @property
  def samples(self) -> str:
    """<model_dir>/samples: the sample grids."""
    return os.path.join(self.model_dir, "samples")

  def logs(self, split: str) -> str:
    """<model_dir>/logs/<split>: TensorBoard's events of a split."""
    return os.path.join(self.model_dir, "logs", split)


@dataclasses.dataclass
class RunData:
  """A run's data, checked before anything is written."""
  train: data_lib.Split
  val: Optional[data_lib.Split]
  steps_per_epoch: int
  total_steps: int
  skipped: List[str]


BAD_IMAGE = ("corrupt, truncated, of a kind that is not read (such as a "
             "BMP of 1 or 4 bits), narrower than 2 pixels or larger than "
             "--max_pixels")


def prepare_data(config: config_lib.Config) -> RunData:
  """Opens the train and val splits and plans the run's steps.

  Raises:
    data_lib.DatasetError: naming the missing, empty or bad data.
  """
  train = data_lib.open_split(config.data.data_dir, "train")
  val = (data_lib.open_split(config.data.data_dir, "val")
         if data_lib.split_exists(config.data.data_dir, "val") else None)
  skipped = []
  if config.data.on_bad_image == "skip":
    # Name each bad image once, then train on the rest.
    skipped = data_lib.find_undecodable(train, config.data.max_pixels)
    for name in skipped:
      print(f"Skipping {name}: it is {BAD_IMAGE}.", flush=True)
    train = train.without(skipped)
    if val is not None:
      bad_val = data_lib.find_undecodable(val, config.data.max_pixels)
      for name in bad_val:
        print(f"Skipping {name}: it is {BAD_IMAGE}.", flush=True)
      val = val.without(bad_val)
      skipped += bad_val
  else:
    for split in (train, val):
      if split is not None and not split.tfrecord:
        data_lib.check_headers(split.paths, config.data.max_pixels)
    if val is not None:
      # The val split is small and read whole at every val pass: decoded
      # once here, so that a bad file is named now, not hours into the run.
      bad_val = data_lib.find_undecodable(val, config.data.max_pixels)
      if bad_val:
        raise data_lib.DatasetError(
            f"{bad_val[0]} (val) is not a usable image pair ({BAD_IMAGE}). "
            "Remove or replace it, or pass --on_bad_image=skip.")
  if not train.tfrecord:
    # The sizes --preprocess cannot take, named before training.
    data_lib.check_pair_sizes(train.paths, config)
  count = train.count - (len(skipped) if train.tfrecord else 0)
  steps_per_epoch = count // config.optimisation.batch_size
  if steps_per_epoch == 0:
    raise data_lib.DatasetError(
        f"{train.description} has {count} readable pairs, fewer than "
        f"--batch_size={config.optimisation.batch_size}. Lower the batch size.")
  return RunData(train, val, steps_per_epoch,
                 total_steps(config, steps_per_epoch), skipped)


def total_steps(config: config_lib.Config, steps_per_epoch: int) -> int:
  """The run's steps: its epochs (constant, then decaying), at most
  --max_steps."""
  optimisation = config.optimisation
  steps = (optimisation.epochs + optimisation.epochs_decay) * steps_per_epoch
  if not optimisation.max_steps:
    return steps
  return min(steps, optimisation.max_steps) if steps else optimisation.max_steps


class NumericalError(errors.CommandError):
  """A NaN or Inf loss; the last good checkpoint stays the latest."""


@dataclasses.dataclass
class Built:
  """A configuration's state and its one distributed step."""
  state: state_lib.TrainState
  train_step: step_lib.TrainStep
  distributed_step: Callable


def build(config: config_lib.Config, strategy: tf.distribute.Strategy,
          steps_per_epoch: int, total_steps: int = 0) -> Built:
  """The state (under the strategy's scope) and the distributed step for
  `config`, whose --batch_size is the global batch."""
  state = state_lib.create_state(config, steps_per_epoch, strategy,
                                 total_steps)
  train_step = step_lib.make_train_step(state, config,
                                        config.optimisation.batch_size)
  return Built(state, train_step, distribution.make_distributed_step(
      strategy, train_step, state.step,
      loop=config.run.steps_per_execution > 1))


def train_iterator(strategy: tf.distribute.Strategy,
                   config: config_lib.Config, split: data_lib.Split,
                   skip_steps: int = 0) -> Iterator:
  """The distributed training stream of `split`, `skip_steps` steps in (a
  resumed run skips what the earlier run consumed, so that, with fixed
  seeds, it sees the same data in the same order)."""
  global_batch_size = config.optimisation.batch_size

  def make_dataset(context):
    per_pipeline = global_batch_size // context.num_input_pipelines
    return data_lib.make_dataset(
        split, config, context.get_per_replica_batch_size(global_batch_size),
        training=True, input_context=context,
        skip=skip_steps * per_pipeline, cache=config.data.cache)

  return iter(strategy.distribute_datasets_from_function(make_dataset))


@dataclasses.dataclass
class Run:
  """A training run, set up: what the loop and its actions need."""
  config: config_lib.Config
  strategy: tf.distribute.Strategy
  data: RunData
  paths: RunPaths
  folder: outputs.Folder
  chief: bool
  built: Built
  checkpoint: tf.train.Checkpoint
  manager: tf.train.CheckpointManager
  schedule: keras.optimizers.schedules.LearningRateSchedule
  iterator: Iterator

  @property
  def state(self) -> state_lib.TrainState:
    """The models, optimizers and step being trained."""
    return self.built.state

  @property
  def step(self) -> int:
    """The number of steps taken so far."""
    return int(self.built.state.step.numpy())


def setup(config: config_lib.Config,
          strategy: tf.distribute.Strategy) -> Run:
  """Everything before a run's first step; nothing is written before the
  flags, the data and the checkpoint have been checked.

  Raises:
    config_lib.ConfigError, data_lib.DatasetError: naming the flag or file.
  """
  check_run(config, strategy)
  folder = open_run_folder(config.outputs.model_dir, config.data.data_dir)
  check_cache_folder(config)
  check_resumed_config(config)
  data = prepare_data(config)
  print(f"Training on {strategy.num_replicas_in_sync} replica(s) "
        f"({', '.join(strategy.extended.worker_devices)}), "
        f"{precision.describe(config)}; {data.train.count} training pairs, "
        f"{data.steps_per_epoch} steps per epoch, {data.total_steps} steps.",
        flush=True)
  keras.utils.set_random_seed(config.optimisation.seed)
  chief = distribution.is_chief(strategy)
  # Non-chief workers write to a scratch folder, removed at the end.
  if not chief:
    folder = outputs.Folder(temporaries.scratch_folder("worker"), "model_dir",
                            kind=RUN)
  paths = RunPaths(folder.path)
  built = build(config, strategy, data.steps_per_epoch, data.total_steps)
  checkpoint = built.state.checkpoint()
  manager = tf.train.CheckpointManager(
      checkpoint,
      paths.checkpoints,
      max_to_keep=config.outputs.keep_checkpoints,
      step_counter=built.state.step)
  # Every worker resumes from the chief's checkpoints.
  latest = tf.train.latest_checkpoint(
      RunPaths(config.outputs.model_dir).checkpoints)
  if latest:
    models.restore(checkpoint, latest)
    print(f"Resumed from {latest} at step {int(built.state.step.numpy())}.",
          flush=True)
  elif config.outputs.init_from:
    init_weights(built.state, config.outputs.init_from)
  # Written once the flags, the data and the checkpoint have been checked.
  for name in RUN_FOLDERS:
    folder.claim(name, PARTIAL_SAVES if name == "checkpoints" else None)
  write_run_config(config, folder)
  schedule = schedules.learning_rate_schedule(config, data.steps_per_epoch,
                                              data.total_steps)
  iterator = train_iterator(strategy, config, data.train,
                            int(built.state.step.numpy()))
  return Run(config, strategy, data, paths, folder, chief, built,
             checkpoint, manager, schedule, iterator)


def init_weights(state: state_lib.TrainState, init_from: str) -> None:
  """--init_from: the generator's weights (every one) and, where the
  checkpoint holds a discriminator of this architecture, the
  discriminator's, from a run folder's latest checkpoint or a checkpoint
  path; the optimizers and the step stay fresh."""
  path = (tf.train.latest_checkpoint(RunPaths(init_from).checkpoints)
          if os.path.isdir(init_from) else init_from)
  if not path or not tf.io.gfile.exists(path + ".index"):
    raise config_lib.ConfigError(
        f"--init_from={init_from} is neither a run with checkpoints nor a "
        "checkpoint (PATH.index): name a run folder or a checkpoint such "
        "as RUN/checkpoints/ckpt-4000.")
  models.restore(tf.train.Checkpoint(generator=state.generator), path,
                 "the generator these flags build",
                 "Pass the model flags of the run it comes from.")
  what = ("generator and discriminator"
          if restore_discriminator(path, state.discriminator)
          else "generator (its discriminator does not fit these flags)")
  print(f"Initialised the {what} from {path}; fresh optimizers, step 0.",
        flush=True)


# Where a checkpoint holds the discriminator's trainable weights: Keras 3
# does not track the Discriminators model's list of sub-models for
# TensorFlow checkpoints, so they are saved (and resumed) through the list
# of variables that the discriminator's optimizer updates.
DISCRIMINATOR_WEIGHT = ("discriminator_optimizer/_trainable_variables/{}/"
                        ".ATTRIBUTES/VARIABLE_VALUE")


def restore_discriminator(path: str, discriminator: keras.Model) -> bool:
  """The discriminator's trainable weights from checkpoint `path`, when it
  holds exactly as many, of the same shapes (checked before any is
  assigned); False, changing nothing, otherwise."""
  variables = discriminator.trainable_variables
  stored = dict(tf.train.list_variables(path))
  shapes = [stored.get(DISCRIMINATOR_WEIGHT.format(i))
            for i in range(len(variables) + 1)]
  if shapes[-1] is not None or shapes[:-1] != [
      list(v.shape) for v in variables]:
    return False
  reader = tf.train.load_checkpoint(path)
  for i, variable in enumerate(variables):
    variable.assign(reader.get_tensor(DISCRIMINATOR_WEIGHT.format(i)))
  return True


# What a run writes in --model_dir: files, and folders TensorFlow fills.
RUN_FILES = ("flags.txt", "config.json")
RUN_FOLDERS = ("checkpoints", "logs", "samples")
# What train, convert and ablate's variants write: a run, which each of
# them may continue (the writer's kind of these files).
RUN = "run"
# What a killed or failed sharded checkpoint save leaves: ckpt-N_temp.
PARTIAL_SAVES = "*_temp"


def open_run_folder(model_dir: str, data_dir: str = "") -> outputs.Folder:
  """--model_dir, checked before anything is written: writable, not the
  data's folder, and holding nothing of the user's where a run writes
  (outputs.OutputError naming the file)."""
  folder = outputs.Folder(model_dir, "model_dir",
                          [outputs.Input(data_dir, "data_dir")], kind=RUN)
  folder.check(RUN_FILES + RUN_FOLDERS)
  return folder


def check_run(config: config_lib.Config,
              strategy: tf.distribute.Strategy) -> None:
  """What a config's own check cannot know, before a run writes anything:
  this CPU computes the precision, --batch_size (the global batch) splits
  evenly across the strategy's replicas, and the files the objective's
  terms read are files (a config is also read back from runs and exports
  on machines without them).

  Raises:
    config_lib.ConfigError: naming the flag.
  """
  precision.check_precision(config.run.mixed_precision)
  replicas = strategy.num_replicas_in_sync
  if config.optimisation.batch_size % replicas:
    raise config_lib.ConfigError(
        f"--batch_size={config.optimisation.batch_size} is not divisible by "
        f"the {replicas} replicas of the strategy: it is the global batch, "
        "split evenly across replicas.")
  for term, flag, path in losses.build_objective(config).files:
    if not os.path.isfile(path):
      raise config_lib.ConfigError(
          f"--{flag}={path!r} is not a file; the {term} term reads it.")


def check_cache_folder(config: config_lib.Config) -> None:
  """A disk --cache's folder, checked as the writer checks any output's:
  writable, and neither in nor under --data_dir (TensorFlow writes the
  cache's files, PREFIX-<digest>.*, whose names no user file has)."""
  if config.data.cache and config.data.cache != "memory":
    outputs.Folder(os.path.dirname(os.path.abspath(config.data.cache)), "cache",
                   [outputs.Input(config.data.data_dir, "data_dir")],
                   given=config.data.cache)


def check_resumed_config(config: config_lib.Config) -> None:
  """A --model_dir that already holds a run is resumed only with the model
  flags it was trained with (`config_lib.MODEL_FIELDS`), unless
  --force_config.

  Raises:
    config_lib.ConfigError: listing the differing flags, or naming an
      unreadable config.json.
  """
  path = os.path.join(config.outputs.model_dir, "config.json")
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      recorded = config_lib.Config.from_json(f.read())
  except (OSError, ValueError, TypeError) as e:
    raise config_lib.ConfigError(
        f"{path} is not readable ({e}). It records the flags of the run in "
        f"{config.outputs.model_dir}: restore it, or choose another "
        "--model_dir.") from None
  differences = config.model_differences(recorded)
  if differences and not config.outputs.force_config:
    raise config_lib.ConfigError(
        f"{config.outputs.model_dir} holds a run trained with other model "
        f"flags: {'; '.join(differences)}. Resume it with the flags it was "
        f"trained with (--flagfile="
        f"{os.path.join(config.outputs.model_dir, 'flags.txt')}), choose "
        "another --model_dir, or pass --force_config to go on with the new "
        "ones.")


def write_run_config(config: config_lib.Config,
                     folder: outputs.Folder) -> None:
  """Saves the flags in the run's folder (unset kernel options unset):
  flags.txt (a flagfile) and config.json, each replaced whole.

  --force_config is a one-time permission, not part of the run's flags.
  """
  config = config.replace(force_config=False)
  folder.write_text("flags.txt", flagfile_text(config))
  folder.write_text("config.json", config.to_json())


def flagfile_text(config: config_lib.Config) -> str:
  """`config` as a flagfile: one `--name=value` line per option, an unset
  kernel option as a comment (absl has no value for unset)."""
  lines = []
  for name, value in config.flat().items():
    if isinstance(value, bool):
      value = str(value).lower()
    lines.append(f"# --{name}: unset, this kind of machine's default\n"
                 if value is None else f"--{name}={value}\n")
  return "".join(lines)
