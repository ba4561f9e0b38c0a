"""Training: the paper's update under a tf.distribute strategy, and the loop.

`train_and_evaluate(config)` is the whole job behind `python -m
pix2pix_tf.train`. The pieces:

* `create_state` builds G, D, both Adam optimizers and the step counter under
  the strategy's scope, held by one `tf.train.Checkpoint`.
* `make_train_step` is the per-replica update, in the paper's order.
* `make_distributed_step` applies the strategy once, where the step is called.
* The loop is step-based with named periodic actions: log, sample, evaluate,
  checkpoint.
"""

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf import data as data_lib
from pix2pix_tf import losses
from pix2pix_tf import models

SCALARS = ("gen_total_loss", "gen_gan_loss", "gen_l1_loss", "disc_loss",
           "disc_real_loss", "disc_generated_loss")


def metric_names(config: config_lib.Config) -> Sequence[str]:
  """The losses a run's step reports (and logs): the paper's six, less the
  GAN terms without a GAN, plus whichever variant terms are switched on."""
  names = ["gen_total_loss"]
  if config.gan_mode != "none":
    names.append("gen_gan_loss")
  names.append("gen_l1_loss")
  if config.lambda_l2:
    names.append("gen_l2_loss")
  if config.lambda_feature_matching:
    names.append("gen_feature_matching_loss")
  if config.gan_mode != "none":
    names += ["disc_loss", "disc_real_loss", "disc_generated_loss"]
  if config.gan_mode == "wgangp":
    names.append("disc_gradient_penalty")
  return tuple(names)


def make_strategy(name: str) -> tf.distribute.Strategy:
  """The tf.distribute strategy for `--strategy`.

  mirrored: every local GPU, else the CPU. one_device: the first GPU, else
  the CPU. multi_worker: MultiWorkerMirroredStrategy, configured by TF_CONFIG.
  """
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices("GPU")
  if name == "one_device":
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else
                                           "/cpu:0")
  if name == "mirrored":
    # With no GPU, MirroredStrategy() runs one replica on the CPU.
    return tf.distribute.MirroredStrategy()
  raise ValueError(f"Unknown strategy {name!r}.")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes checkpoints, logs, samples and exports.

  The chief is the "chief" task of TF_CONFIG, else worker 0; a single
  process is always the chief.
  """
  resolver = strategy.cluster_resolver
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  if resolver.task_type == "chief":
    return True
  return (resolver.task_type == "worker" and resolver.task_id == 0 and
          "chief" not in resolver.cluster_spec().jobs)


class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
  """The reference's policy: constant, then linear decay to zero."""

  def __init__(self, initial_learning_rate, constant_steps, decay_steps):
    self.initial_learning_rate = initial_learning_rate
    self.constant_steps = constant_steps
    self.decay_steps = decay_steps

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    if self.decay_steps <= 0:
      return tf.constant(self.initial_learning_rate, tf.float32)
    fraction = (step - self.constant_steps) / float(self.decay_steps)
    return self.initial_learning_rate * tf.clip_by_value(1.0 - fraction, 0.0,
                                                         1.0)

  def get_config(self):
    return {"initial_learning_rate": self.initial_learning_rate,
            "constant_steps": self.constant_steps,
            "decay_steps": self.decay_steps}


@dataclasses.dataclass
class TrainState:
  """Everything a checkpoint holds."""
  generator: keras.Model
  discriminator: keras.Model
  generator_optimizer: keras.optimizers.Optimizer
  discriminator_optimizer: keras.optimizers.Optimizer
  step: tf.Variable
  # Random state of the step's own noise (the gradient penalty's mixing).
  noise: keras.random.SeedGenerator

  def random_states(self) -> List[tf.Variable]:
    """The random-number states of dropout and of `noise`. Saved with the
    weights, so that a resumed --deterministic run draws what an
    uninterrupted one would have."""
    generators = [self.noise] + [
        layer.seed_generator for layer in self.generator.layers
        if isinstance(getattr(layer, "seed_generator", None),
                      keras.random.SeedGenerator)]
    return [g.state for g in generators]

  def checkpoint(self) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(
        generator=self.generator, discriminator=self.discriminator,
        generator_optimizer=self.generator_optimizer,
        discriminator_optimizer=self.discriminator_optimizer, step=self.step,
        random_states=self.random_states())


def learning_rate_schedule(config: config_lib.Config, steps_per_epoch: int,
                           total_steps: int):
  """The learning rate per optimizer step, for `--lr_policy`.

  linear: the reference's default, constant for --epochs then linearly to
  zero over --epochs_decay. step: times 0.1 every --lr_decay_epochs.
  cosine: cosine decay to zero over the whole run. constant.
  """
  lr = config.learning_rate
  if config.lr_policy == "linear":
    return LinearDecay(lr, config.epochs * steps_per_epoch,
                       config.epochs_decay * steps_per_epoch)
  if config.lr_policy == "step":
    return keras.optimizers.schedules.ExponentialDecay(
        lr, config.lr_decay_epochs * steps_per_epoch, 0.1, staircase=True)
  if config.lr_policy == "cosine":
    return keras.optimizers.schedules.CosineDecay(lr, max(total_steps, 1))
  if config.lr_policy == "constant":
    return LinearDecay(lr, 0, 0)
  raise ValueError(f"Unknown lr_policy {config.lr_policy!r}.")


POLICIES = {"none": "float32", "bf16": "mixed_bfloat16",
            "fp16": "mixed_float16"}


def fast_bfloat16() -> bool:
  """Whether this machine computes bfloat16 faster than float32: GPUs of
  compute capability 8.0 or newer (A100, H100, ...), or CPUs with AMX."""
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    return all(tf.config.experimental.get_device_details(gpu).get(
        "compute_capability", (0, 0)) >= (8, 0) for gpu in gpus)
  try:
    with open("/proc/cpuinfo") as f:
      return "amx_bf16" in f.read().split()
  except OSError:
    return False


def resolve_mixed_precision(mixed_precision: str) -> str:
  """--mixed_precision, with auto resolved to bf16 where it is fast."""
  if mixed_precision == "auto":
    return "bf16" if fast_bfloat16() else "none"
  return mixed_precision


@contextlib.contextmanager
def dtype_policy(mixed_precision: str):
  """Builds layers under `--mixed_precision`'s Keras dtype policy.

  Variables stay float32; bf16/fp16 set the layers' compute dtype. The
  models' last layers (tanh output, discriminator logits) are float32 in any
  policy, and the losses are computed in float32.
  """
  previous = keras.mixed_precision.dtype_policy()
  keras.mixed_precision.set_dtype_policy(
      POLICIES[resolve_mixed_precision(mixed_precision)])
  try:
    yield
  finally:
    keras.mixed_precision.set_dtype_policy(previous)


def create_state(config: config_lib.Config, steps_per_epoch: int,
                 strategy: tf.distribute.Strategy,
                 total_steps: int = 0) -> TrainState:
  """Builds models, optimizers and step counter under the strategy's scope."""
  with strategy.scope(), dtype_policy(config.mixed_precision):
    generator = models.build_generator(config)
    discriminator = models.build_discriminator(config)

    def adam():
      schedule = learning_rate_schedule(config, steps_per_epoch, total_steps)
      optimizer = keras.optimizers.Adam(schedule, beta_1=config.beta_1,
                                        beta_2=config.beta_2)
      if resolve_mixed_precision(config.mixed_precision) == "fp16":
        # float16 gradients underflow: scale the loss, unscale the gradients,
        # and skip steps whose gradients overflow (Keras's dynamic scaling).
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
      return optimizer

    state = TrainState(generator, discriminator, adam(), adam(),
                       tf.Variable(0, dtype=tf.int64, trainable=False,
                                   name="step"),
                       keras.random.SeedGenerator(config.seed, name="noise"))
    # Create the optimizer slots now so a checkpoint restores into them.
    state.generator_optimizer.build(generator.trainable_variables)
    state.discriminator_optimizer.build(discriminator.trainable_variables)
  return state


def make_train_step(state: TrainState, config: config_lib.Config,
                    global_batch_size: int) -> Callable:
  """The per-replica pix2pix update for one batch.

  alternating (the default, the paper's and the reference's order):
  generate; one D step on the real pair and the generated pair (G's output
  held fixed); then one G step whose adversarial loss comes from the
  *updated* D. simultaneous: both gradients from one forward pass against
  the old D, then both applied (cheaper by one D forward; for comparison).

  Per-example losses are averaged over the global batch, so that summing
  the replicas' gradients gives the gradient of the global mean.
  """
  generator, discriminator = state.generator, state.discriminator
  train_discriminator = config.gan_mode != "none"
  names = metric_names(config)
  gen_names = [n for n in names if n.startswith("gen_")]
  disc_names = [n for n in names if n.startswith("disc_")]

  def scale(optimizer, loss):
    # fp16: the LossScaleOptimizer unscales the gradients it applies.
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
      return optimizer.scale_loss(loss)
    return loss

  def average(per_example):
    return tf.nn.compute_average_loss(per_example,
                                      global_batch_size=global_batch_size)

  def gradient_penalty(input_image, target_image, generated_image):
    """WGAN-GP: D's gradient norm at random points between real and fake."""
    batch = tf.shape(target_image)[0]
    alpha = keras.random.uniform([batch, 1, 1, 1], seed=state.noise)
    interpolated = (alpha * target_image +
                    (1.0 - alpha) * tf.stop_gradient(generated_image))
    with tf.GradientTape() as tape:
      tape.watch(interpolated)
      outputs = discriminator([input_image, interpolated], training=True)
      score = tf.add_n([tf.reduce_sum(d[0]) for d in outputs])
    return losses.gradient_penalty(tape.gradient(score, interpolated))

  def discriminator_losses(input_image, target_image, generated_image,
                           disc_real_outputs, disc_generated_outputs):
    """D's losses (means over the global batch), the penalty included."""
    per_example = losses.discriminator_loss(
        disc_real_outputs, disc_generated_outputs, config.gan_mode)
    if config.gan_mode == "wgangp":
      penalty = gradient_penalty(input_image, target_image, generated_image)
      per_example["disc_gradient_penalty"] = penalty
      per_example["disc_loss"] += config.lambda_gp * penalty
    return {name: average(per_example[name]) for name in disc_names}

  def generator_losses(generated_image, target_image, disc_real_outputs,
                       disc_generated_outputs):
    """G's losses (means over the global batch)."""
    per_example = losses.generator_loss(
        disc_real_outputs, disc_generated_outputs, generated_image,
        target_image, config.gan_mode, config.lambda_l1, config.lambda_l2,
        config.lambda_feature_matching)
    return {name: average(per_example[name]) for name in gen_names}

  def discriminator_gradients(input_image, target_image, generated_image):
    """The D step's gradients on the real and the (fixed) generated pair."""
    generated_image = tf.stop_gradient(generated_image)
    with tf.GradientTape() as disc_tape:
      disc_real_outputs = discriminator([input_image, target_image],
                                        training=True)
      disc_generated_outputs = discriminator([input_image, generated_image],
                                             training=True)
      metrics = discriminator_losses(input_image, target_image,
                                     generated_image, disc_real_outputs,
                                     disc_generated_outputs)
      disc_loss = scale(state.discriminator_optimizer, metrics["disc_loss"])
    return disc_tape.gradient(disc_loss,
                              discriminator.trainable_variables), metrics

  def generator_objective(input_image, target_image, generated_image):
    """G's losses against the discriminator as it is now."""
    disc_real_outputs = disc_generated_outputs = None
    if train_discriminator:
      disc_generated_outputs = discriminator([input_image, generated_image],
                                             training=True)
      if config.lambda_feature_matching:
        # Feature matching compares with D's features of the real pair.
        disc_real_outputs = discriminator([input_image, target_image],
                                          training=True)
    return generator_losses(generated_image, target_image, disc_real_outputs,
                            disc_generated_outputs)

  def simultaneous_gradients(input_image, target_image):
    """Both gradients from one forward pass against the current D."""
    with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
      generated_image = generator(input_image, training=True)
      disc_real_outputs = disc_generated_outputs = None
      if train_discriminator:
        disc_real_outputs = discriminator([input_image, target_image],
                                          training=True)
        disc_generated_outputs = discriminator([input_image, generated_image],
                                               training=True)
      metrics = generator_losses(generated_image, target_image,
                                 disc_real_outputs, disc_generated_outputs)
      if train_discriminator:
        metrics.update(discriminator_losses(
            input_image, target_image, generated_image, disc_real_outputs,
            disc_generated_outputs))
      # Scaled inside the tapes, so that the scaling is differentiated.
      gen_loss = scale(state.generator_optimizer, metrics["gen_total_loss"])
      disc_loss = (scale(state.discriminator_optimizer, metrics["disc_loss"])
                   if train_discriminator else None)
    gen_gradients = gen_tape.gradient(gen_loss,
                                      generator.trainable_variables)
    disc_gradients = (disc_tape.gradient(disc_loss,
                                         discriminator.trainable_variables)
                      if train_discriminator else None)
    return gen_gradients, disc_gradients, metrics

  def generate(input_image):
    return generator(input_image, training=True)

  if config.jit_compile:
    # XLA compiles the forward and backward passes; applying the gradients
    # stays outside, where the strategy all-reduces them across replicas.
    # (The tape below differentiates through the compiled functions.)
    simultaneous_gradients = tf.function(simultaneous_gradients,
                                         jit_compile=True)
    discriminator_gradients = tf.function(discriminator_gradients,
                                          jit_compile=True)
    generator_objective = tf.function(generator_objective, jit_compile=True)
    generate = tf.function(generate, jit_compile=True)

  def apply_discriminator(gradients):
    state.discriminator_optimizer.apply_gradients(
        list(zip(gradients, discriminator.trainable_variables)))

  def apply_generator(gradients):
    state.generator_optimizer.apply_gradients(
        list(zip(gradients, generator.trainable_variables)))

  def alternating_step(input_image, target_image):
    """The paper's order: D step, then G step against the updated D."""
    with tf.GradientTape() as gen_tape:
      generated_image = generate(input_image)
      metrics = {}
      if train_discriminator:
        with gen_tape.stop_recording():
          disc_gradients, metrics = discriminator_gradients(
              input_image, target_image, generated_image)
          apply_discriminator(disc_gradients)
      # Read after D's update: its variables are read anew from here on.
      metrics.update(generator_objective(input_image, target_image,
                                         generated_image))
      gen_loss = scale(state.generator_optimizer, metrics["gen_total_loss"])
    apply_generator(gen_tape.gradient(gen_loss,
                                      generator.trainable_variables))
    return metrics

  def simultaneous_step(input_image, target_image):
    gen_gradients, disc_gradients, metrics = simultaneous_gradients(
        input_image, target_image)
    apply_generator(gen_gradients)
    if train_discriminator:
      apply_discriminator(disc_gradients)
    return metrics

  step = (alternating_step if config.update_order == "alternating" else
          simultaneous_step)

  def train_step(batch):
    input_image, target_image = batch
    metrics = step(input_image, target_image)
    return {name: metrics[name] for name in names}

  train_step.metric_names = names
  return train_step


def make_distributed_step(strategy: tf.distribute.Strategy,
                          train_step: Callable,
                          step: tf.Variable) -> Callable:
  """One tf.function: `num_steps` x (next batch, `strategy.run`), reduced.

  Running several steps per call (--steps_per_execution) saves the Python
  round trip between steps. Returns each loss's mean over the steps.
  """

  names = train_step.metric_names

  @tf.function
  def distributed_step(iterator, num_steps=tf.constant(1)):
    totals = {name: tf.constant(0.0) for name in names}
    for _ in tf.range(num_steps):
      per_replica = strategy.run(train_step, args=(next(iterator),))
      # Each replica's losses are already divided by the global batch: the
      # sum over replicas is the global mean.
      metrics = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                 for k, v in per_replica.items()}
      totals = {k: totals[k] + tf.cast(metrics[k], tf.float32) for k in names}
      step.assign_add(1)
    count = tf.cast(num_steps, tf.float32)
    return {k: v / count for k, v in totals.items()}

  return distributed_step


def make_generate(generator: keras.Model, inference_mode: str) -> Callable:
  """A tf.function that runs the generator for samples and evaluation.

  paper: as the paper and the reference test: dropout on and batch norm with
  each image's own statistics (`models.paper_mode`, which shares the
  generator's weights and updates nothing), so a batch gives what one call
  per image gives. eval: the usual inference mode,
  moving statistics and no dropout.
  """
  model = models.paper_mode(generator) if inference_mode == "paper" else (
      generator)

  @tf.function
  def generate(input_image):
    return model(input_image, training=False)

  return generate


def image_grid(input_image, generated_image, target_image) -> tf.Tensor:
  """Rows of input | generated | target, as one uint8 image (H, W, 3)."""
  columns = [data_lib.to_uint8(x) for x in
             (input_image, generated_image, target_image)]
  columns = [tf.image.grayscale_to_rgb(x) if x.shape[-1] == 1 else x
             for x in columns]
  rows = tf.concat(columns, axis=2)  # (n, h, 3w, 3)
  return tf.reshape(rows, [-1, rows.shape[2], 3])  # (n*h, 3w, 3)


@dataclasses.dataclass
class RunPaths:
  """Where a run writes. Non-chief workers write to a temporary folder."""
  model_dir: str

  @property
  def checkpoints(self):
    return os.path.join(self.model_dir, "checkpoints")

  @property
  def samples(self):
    return os.path.join(self.model_dir, "samples")

  def logs(self, split):
    return os.path.join(self.model_dir, "logs", split)


class Evaluator:
  """Val-split metrics and the fixed sample grid."""

  def __init__(self, config, generate, eval_split, sample_batch):
    from pix2pix_tf import evaluate  # Its flags are defined only by its run().
    from pix2pix_tf import segmentation

    self.config = config
    self.generate = generate
    self.eval_split = eval_split
    self.sample_batch = sample_batch
    self.palette = (segmentation.load_palette(config.label_palette)
                    if config.label_palette else None)
    self.segmenter = (evaluate.load_segmenter(config.segmenter)
                      if config.segmenter else None)
    self.labels_side = None

  def evaluate(self) -> Dict[str, float]:
    """Means over the val split: gen_l1_loss (L1 in [-1, 1] units, as the
    training loss), mse, psnr and ssim (see `metrics`); with a label palette
    also the segmentation scores, e.g. fcn_generated/class_iou."""
    from pix2pix_tf import evaluate

    dataset = data_lib.make_dataset(self.eval_split, self.config,
                                          self.config.batch_size,
                                          training=False, with_names=True)
    accumulator = evaluate.Accumulator(
        ("l1", "mse", "psnr", "ssim"), palette=self.palette,
        labels_side=self.labels_side, segmenter=self.segmenter)
    for names, input_image, target_image in dataset:
      if self.palette is not None and accumulator.labels_side is None:
        self.labels_side = accumulator.labels_side = (
            evaluate.detect_labels_side(input_image, target_image,
                                        self.palette))
      accumulator.add([n.decode() for n in names.numpy()], input_image,
                      self.generate(input_image), target_image)
    result = accumulator.result()
    values = {("gen_l1_loss" if name == "l1" else name): value
              for name, value in result["metrics"].items()}
    for task, scores in result.get("segmentation", {}).items():
      for name in ("per_pixel_accuracy", "per_class_accuracy", "class_iou"):
        values[f"{task}/{name}"] = scores[name]
    return values

  def sample(self) -> tf.Tensor:
    input_image, target_image = self.sample_batch
    return image_grid(input_image, self.generate(input_image), target_image)


def _format_metrics(values: Dict[str, float]) -> str:
  return ", ".join(f"{name} {value:.4f}" for name, value in values.items())


def _first_examples(split, config, n):
  dataset = data_lib.make_dataset(split, config, n, training=False)
  return next(iter(dataset))


def check_resumed_config(config: config_lib.Config) -> None:
  """A --model_dir that already holds a run is resumed only with the model
  flags it was trained with (`config_lib.MODEL_FIELDS`), unless
  --force_config.

  Raises:
    config_lib.ConfigError: listing the differing flags, or naming an
      unreadable config.json.
  """
  path = os.path.join(config.model_dir, "config.json")
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      recorded = config_lib.Config.from_json(f.read())
  except (OSError, ValueError, TypeError) as e:
    raise config_lib.ConfigError(
        f"{path} is not readable ({e}). It records the flags of the run in "
        f"{config.model_dir}: restore it, or choose another --model_dir."
    ) from None
  differences = config.model_differences(recorded)
  if differences and not config.force_config:
    raise config_lib.ConfigError(
        f"{config.model_dir} holds a run trained with other model flags: "
        f"{'; '.join(differences)}. Resume it with the flags it was "
        f"trained with (--flagfile={os.path.join(config.model_dir, 'flags.txt')}"
        "), choose another --model_dir, or pass --force_config to go on "
        "with the new ones.")


def restore(checkpoint: tf.train.Checkpoint, path: str,
            models: str = "the models these flags build",
            advice: str = ("Resume with the flags the run was trained with, "
                           "or choose another --model_dir.")) -> None:
  """Restores every variable that `checkpoint` tracks from `path`, or
  ConfigError naming `models` and giving `advice`: a variable missing from
  the file, or of another shape, must never be left at its initial value.
  Values in the file that `checkpoint` does not track (an export restores
  the generator alone) are ignored."""
  status = None
  try:
    status = checkpoint.restore(path)
    status.assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    first_line = str(e).strip().splitlines()[0][:300] if str(e) else ""
    raise config_lib.ConfigError(
        f"{path} does not fit {models} ({first_line}). {advice}") from None
  finally:
    if status is not None:
      status.expect_partial()  # Reported here, not again when collected.


def write_run_config(config: config_lib.Config, model_dir: str) -> None:
  """Saves the resolved flags: flags.txt (a flagfile) and config.json.

  --force_config is a one-time permission, not part of the run's flags.
  """
  config = dataclasses.replace(config, force_config=False)
  os.makedirs(model_dir, exist_ok=True)
  flag_lines = []
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if isinstance(value, bool):
      value = str(value).lower()
    flag_lines.append(f"--{field.name}={value}\n")
  _write_atomically(os.path.join(model_dir, "flags.txt"), "".join(flag_lines))
  _write_atomically(os.path.join(model_dir, "config.json"), config.to_json())


def _write_atomically(path: str, text: str) -> None:
  """Writes `text` under a temporary name and renames it into place, so that
  a kill mid-write never leaves a truncated file where a good one was."""
  directory, name = os.path.split(path)
  handle, staging = tempfile.mkstemp(prefix=f".{name}-", dir=directory)
  try:
    with os.fdopen(handle, "w") as f:
      f.write(text)
    os.replace(staging, path)
  except BaseException:
    if os.path.exists(staging):
      os.remove(staging)
    raise


def export_generator(generator: keras.Model, config: config_lib.Config,
                     step: int, model_dir: str) -> str:
  """Exports the generator's current weights to <model_dir>/export."""
  from pix2pix_tf import export  # The export module defines its own flags.

  # A fresh copy outside any strategy, so the SavedModel holds plain
  # variables whatever the training strategy was.
  fresh = models.build_generator(config)
  fresh.set_weights(generator.get_weights())
  return export.save(fresh, config, step, os.path.join(model_dir, "export"),
                     config.inference_mode)


def check_evaluation_files(config: config_lib.Config) -> None:
  """The palette and segmenter flags name readable files, or ConfigError."""
  from pix2pix_tf import segmentation
  if config.label_palette:
    try:
      segmentation.load_palette(config.label_palette)
    except ValueError as e:
      raise config_lib.ConfigError(str(e)) from e
  if config.segmenter and not os.path.exists(
      os.path.join(config.segmenter, "saved_model.pb")):
    raise config_lib.ConfigError(
        f"--segmenter={config.segmenter} is not a SavedModel. Train one with "
        "python tools/train_segmenter.py.")


@dataclasses.dataclass
class RunData:
  """A run's data, checked before anything is written."""
  train: data_lib.Split
  val: Optional[data_lib.Split]
  steps_per_epoch: int
  total_steps: int
  skipped: List[str]


BAD_IMAGE = "corrupt, truncated, or narrower than 2 pixels"


def prepare_data(config: config_lib.Config) -> RunData:
  """Opens the train and val splits and plans the run's steps.

  Raises:
    data_lib.DatasetError: naming the missing, empty or bad data.
  """
  train = data_lib.open_split(config.data_dir, "train")
  val = (data_lib.open_split(config.data_dir, "val")
         if data_lib.split_exists(config.data_dir, "val") else None)
  skipped = []
  if config.on_bad_image == "skip":
    # Name each bad image once, then train on the rest.
    skipped = data_lib.find_undecodable(train)
    for name in skipped:
      print(f"Skipping {name}: it is not a readable image.", flush=True)
    train = train.without(skipped)
    if val is not None:
      bad_val = data_lib.find_undecodable(val)
      for name in bad_val:
        print(f"Skipping {name}: it is not a readable image.", flush=True)
      val = val.without(bad_val)
      skipped += bad_val
  else:
    for split in (train, val):
      if split is not None and not split.tfrecord:
        data_lib.check_headers(split.paths)
    if val is not None:
      # The val split is small and read whole at every val pass: decoded
      # once here, so that a bad file is named now, not hours into the run.
      bad_val = data_lib.find_undecodable(val)
      if bad_val:
        raise data_lib.DatasetError(
            f"{bad_val[0]} (val) is not a usable image pair ({BAD_IMAGE}). "
            "Remove or replace it, or pass --on_bad_image=skip.")
  count = train.count - (len(skipped) if train.tfrecord else 0)
  steps_per_epoch = count // config.batch_size
  if steps_per_epoch == 0:
    raise data_lib.DatasetError(
        f"{train.description} has {count} readable pairs, fewer than "
        f"--batch_size={config.batch_size}. Lower the batch size.")
  total_steps = (config.epochs + config.epochs_decay) * steps_per_epoch
  if config.max_steps:
    total_steps = min(total_steps, config.max_steps) if total_steps else (
        config.max_steps)
  return RunData(train, val, steps_per_epoch, total_steps, skipped)


class NumericalError(RuntimeError):
  """A NaN or Inf loss; the last good checkpoint stays the latest."""


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
    import signal
    if self.enabled and threading_is_main():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    import signal
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class PreemptionCheckpointSaved(Exception):
  """A multi-worker run saved its checkpoint after a worker got SIGTERM."""


def _stop_after_preemption_checkpoint():
  raise PreemptionCheckpointSaved()


def threading_is_main() -> bool:
  import threading
  return threading.current_thread() is threading.main_thread()


def train_and_evaluate(config: config_lib.Config,
                       strategy: Optional[tf.distribute.Strategy] = None
                       ) -> Dict[str, float]:
  """Trains (or resumes) a pix2pix model as `config` says.

  Returns:
    the final metrics: the last logged training losses, and when a val split
    exists `val_gen_l1_loss_start` (for a fresh run) and the val metrics at
    the end; `step`, and `stopped` when SIGTERM ended the run early.

  Raises:
    config_lib.ConfigError, data_lib.DatasetError: bad flags or data,
      raised before anything is written (or, for an image that only fails to
      decode during training, before any checkpoint is written after it).
    NumericalError: a NaN or Inf loss.
  """
  strategy = strategy or make_strategy(config.strategy)
  config.validate(strategy.num_replicas_in_sync)
  check_evaluation_files(config)
  check_writable(config.model_dir)
  check_resumed_config(config)
  check_export_dir(config.model_dir)
  data = prepare_data(config)
  global_batch_size = config.batch_size
  steps_per_epoch, total_steps = data.steps_per_epoch, data.total_steps

  devices = strategy.extended.worker_devices
  precision = resolve_mixed_precision(config.mixed_precision)
  print(f"Training on {strategy.num_replicas_in_sync} replica(s) "
        f"({', '.join(devices)}), {POLICIES[precision]}; {data.train.count} "
        f"training pairs, {steps_per_epoch} steps per epoch, {total_steps} "
        "steps.", flush=True)
  keras.utils.set_random_seed(config.seed)
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  chief = is_chief(strategy)
  paths = RunPaths(config.model_dir if chief else tempfile.mkdtemp())

  state = create_state(config, steps_per_epoch, strategy, total_steps)
  schedule = learning_rate_schedule(config, steps_per_epoch, total_steps)
  checkpoint = state.checkpoint()
  manager = tf.train.CheckpointManager(checkpoint, paths.checkpoints,
                                       max_to_keep=config.keep_checkpoints,
                                       step_counter=state.step)
  # Every worker resumes from the chief's checkpoints (the others write theirs
  # to a scratch folder that is removed at the end).
  latest = tf.train.latest_checkpoint(RunPaths(config.model_dir).checkpoints)
  if latest:
    restore(checkpoint, latest)
    print(f"Resumed from {latest} at step {int(state.step.numpy())}.",
          flush=True)
  # Written once the flags, the data and the checkpoint have been checked.
  write_run_config(config, paths.model_dir)
  step = int(state.step.numpy())

  def make_train_dataset(context):
    # A resumed run skips what the earlier run consumed, so that (with fixed
    # seeds) it sees the same data in the same order.
    per_pipeline = global_batch_size // context.num_input_pipelines
    return data_lib.make_dataset(
        data.train, config,
        context.get_per_replica_batch_size(global_batch_size),
        training=True, input_context=context,
        skip=step * per_pipeline, cache=config.cache)

  iterator = iter(strategy.distribute_datasets_from_function(
      make_train_dataset))
  distributed_step = make_distributed_step(
      strategy, make_train_step(state, config, global_batch_size), state.step)

  with strategy.scope():
    generate = make_generate(state.generator, config.inference_mode)
  sample_split = data.val or data.train
  evaluator = Evaluator(
      config, generate, data.val,
      _first_examples(sample_split, config,
                      min(config.num_samples, sample_split.count))
      if config.num_samples else None)

  train_writer = tf.summary.create_file_writer(paths.logs("train"))
  val_writer = (tf.summary.create_file_writer(paths.logs("val"))
                if data.val else None)
  results = {}

  def evaluate(step):
    val_metrics = evaluator.evaluate()
    with val_writer.as_default(step=step):
      for name, value in val_metrics.items():
        tf.summary.scalar(name, value)
    return val_metrics

  def write_sample(step):
    grid = evaluator.sample()
    with train_writer.as_default(step=step):
      tf.summary.image("input_generated_target", grid[None], max_outputs=1)
    os.makedirs(paths.samples, exist_ok=True)
    tf.io.write_file(os.path.join(paths.samples, f"step_{step:07d}.png"),
                     tf.io.encode_png(grid))

  if data.skipped:
    with train_writer.as_default(step=step):
      tf.summary.scalar("skipped_images", len(data.skipped))
  if data.val and step == 0:
    start = evaluate(0)
    results["val_gen_l1_loss_start"] = start["gen_l1_loss"]
    print(f"val at step 0: {_format_metrics(start)}", flush=True)

  preemption = None
  if config.strategy == "multi_worker":
    # Every worker saves at the step they agree on, then stops as a
    # single-process run does on SIGTERM (instead of TensorFlow's default
    # exit).
    preemption = tf.distribute.experimental.PreemptionCheckpointHandler(
        strategy.cluster_resolver, manager,
        termination_config=tf.distribute.experimental.TerminationConfig(
            exit_fn=_stop_after_preemption_checkpoint))
  names = metric_names(config)
  window = {name: 0.0 for name in names}
  window_steps, window_start = 0, time.perf_counter()
  progbar = None
  verbose = 1 if sys.stdout.isatty() else 2

  def next_block(step):
    """Steps for the next call: up to --steps_per_execution, ending at the
    next periodic action, epoch end or run end, so they fire on time."""
    block = min(config.steps_per_execution, total_steps - step)
    for every in (config.log_every_steps, config.sample_every_steps,
                  config.eval_every_steps, config.checkpoint_every_steps,
                  steps_per_epoch):
      block = min(block, every - step % every)
    return block

  saved_step = step
  with StopSignal(enabled=preemption is None) as stop:
    while step < total_steps:
      if progbar is None or step % steps_per_epoch == 0:
        epoch = step // steps_per_epoch
        print(f"Epoch {epoch + 1}/{-(-total_steps // steps_per_epoch)}",
              flush=True)
        progbar = keras.utils.Progbar(
            min(steps_per_epoch, total_steps - epoch * steps_per_epoch),
            verbose=verbose, stateful_metrics=("images/s",))
      block = next_block(step)
      try:
        metrics = distributed_step(iterator, tf.constant(block))
      except (tf.errors.InvalidArgumentError, tf.errors.DataLossError):
        bad = data_lib.find_undecodable(data.train)
        if not bad:
          raise
        raise data_lib.DatasetError(
            f"{bad[0]} is not a usable image pair ({BAD_IMAGE}). "
            "Remove or replace it, or pass --on_bad_image=skip, then run "
            "the same command again to resume.") from None
      step += block
      metrics = {k: float(v) for k, v in metrics.items()}
      # Checked before anything is saved: a checkpoint never holds the
      # weights of a step whose losses were not finite.
      broken = [k for k, v in metrics.items() if not np.isfinite(v)]
      if broken:
        raise NumericalError(
            f"{', '.join(broken)} became {metrics[broken[0]]} at step {step}. "
            f"The latest checkpoint ({manager.latest_checkpoint}) holds the "
            "last good weights; lower --learning_rate or check the data, "
            "then run again to resume from it.")
      for name in names:
        window[name] += metrics[name] * block
      window_steps += block
      elapsed = time.perf_counter() - window_start
      images_per_second = window_steps * global_batch_size / max(elapsed,
                                                                 1e-9)
      progbar.update(step - (step - 1) // steps_per_epoch * steps_per_epoch,
                     [(k, metrics[k]) for k in names] +
                     [("images/s", images_per_second)])

      if step % config.log_every_steps == 0 or step == total_steps:
        with train_writer.as_default(step=step):
          for name in names:
            tf.summary.scalar(name, window[name] / window_steps)
          # The rate of the update this step applied.
          tf.summary.scalar("learning_rate", float(schedule(step - 1)))
          tf.summary.scalar("images_per_second", images_per_second)
        results.update({k: window[k] / window_steps for k in names})
        window = {name: 0.0 for name in names}
        window_steps, window_start = 0, time.perf_counter()
      if evaluator.sample_batch is not None and (
          step % config.sample_every_steps == 0 or step == total_steps):
        write_sample(step)
      if data.val and step % config.eval_every_steps == 0 and (
          step != total_steps):
        evaluate(step)
      if step % config.checkpoint_every_steps == 0 or step == total_steps:
        manager.save(checkpoint_number=step)
        saved_step = step
      if preemption is not None:
        try:
          preemption.save_checkpoint_if_preempted(checkpoint_number=step)
        except PreemptionCheckpointSaved:
          print(f"\nStopped by SIGTERM to a worker at step {step}; saved "
                f"{manager.latest_checkpoint}. Run the same command on every "
                "worker to resume.", flush=True)
          results["stopped"] = True
          break
      if stop.requested:
        if saved_step != step:
          manager.save(checkpoint_number=step)
        print(f"\nStopped by SIGTERM at step {step}; saved "
              f"{manager.latest_checkpoint}. Run the same command to resume.",
              flush=True)
        results["stopped"] = True
        break

  if data.val and step == total_steps:
    end = evaluate(step)
    results.update({f"val_{name}": value for name, value in end.items()})
    print(f"val at step {step}: {_format_metrics(end)}", flush=True)
  train_writer.flush()
  if val_writer:
    val_writer.flush()
  if chief and step == total_steps:
    export_dir = export_generator(state.generator, config, step,
                                  paths.model_dir)
    print(f"Checkpoints: {paths.checkpoints}\n"
          f"SavedModel: {export_dir}\n"
          f"Samples (input | generated | target): {paths.samples}\n"
          f"TensorBoard: tensorboard --logdir {paths.logs('')}", flush=True)
  if not chief:
    shutil.rmtree(paths.model_dir, ignore_errors=True)
  results["step"] = step
  results["weights_digest"] = weights_digest(state.generator)
  print(f"Generator trainable weights digest at step {step}: "
        f"{results['weights_digest']}", flush=True)
  return results


def weights_digest(model: keras.Model) -> str:
  """A short hash of a model's trainable weights, to compare workers.

  (Batch norm's moving statistics are left out: with --norm=batch each
  replica keeps those of its own data, as within one machine.)
  """
  import hashlib
  digest = hashlib.sha256()
  for weight in model.trainable_weights:
    digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
  return digest.hexdigest()[:16]


def check_export_dir(model_dir: str) -> None:
  """<model_dir>/export, which the run writes at its end, holds nothing that
  the export would destroy: checked before hours of training, not after."""
  from pix2pix_tf import export  # The export module defines its own flags.
  try:
    export.check_replaceable(os.path.join(model_dir, "export"),
                             "Choose another --model_dir")
  except export.ExportError as e:
    raise config_lib.ConfigError(str(e)) from None


def check_writable(model_dir: str) -> None:
  """--model_dir can be created and written, or ConfigError."""
  folder = os.path.abspath(model_dir)
  while not os.path.exists(folder):
    folder = os.path.dirname(folder)
  writable = os.path.isdir(folder)
  if writable:
    # Tried, not asked: os.access says yes to root even on a read-only
    # file system or in /proc. The probe file is gone when closed.
    try:
      with tempfile.TemporaryFile(dir=folder):
        pass
    except OSError:
      writable = False
  if not writable:
    raise config_lib.ConfigError(
        f"--model_dir={model_dir} cannot be written ({folder} is not a "
        "writable folder). Choose another --model_dir.")
