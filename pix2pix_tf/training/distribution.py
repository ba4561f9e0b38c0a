"""tf.distribute, applied once: the strategy for --strategy, which process
is the chief, the one tf.function that runs the step on every replica, and
what --deterministic sets for the whole process."""

import hashlib
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from pix2pix_tf import config as config_lib


def make_deterministic() -> str:
  """--deterministic: TensorFlow's deterministic kernels, and one op at a
  time. Returns the line the run prints to say so.

  Deterministic kernels alone are not enough on a CPU: with ops running
  side by side, the same training step on the same batch from the same
  weights now and then gives another result in float32 (the kernels of the
  matrix products and convolutions divide their work by the thread that
  runs them, and which thread that is depends on the ops beside them), and
  runs drift apart. With one inter-op thread every repetition is
  bit-identical, with the default kernels and with each turned off, so no
  kernel needs turning off. TensorFlow takes the thread count only before
  it starts: call this before any strategy, tensor or model.

  Raises:
    config_lib.ConfigError: TensorFlow already started with more threads.
  """
  if tf.config.threading.get_inter_op_parallelism_threads() != 1:
    try:
      tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError as e:
      raise config_lib.ConfigError(
          "--deterministic runs one TensorFlow op at a time, which "
          "TensorFlow sets only before it starts, and it has started: call "
          "training.make_deterministic() before creating a strategy, a "
          "tensor or a model (the train command does).") from e
  tf.config.experimental.enable_op_determinism()
  return ("--deterministic: deterministic kernels, one op at a time "
          "(slower); the same flags and data give bit-identical weights.")


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


def make_distributed_step(strategy: tf.distribute.Strategy,
                          train_step: Callable,
                          step: tf.Variable, loop: bool = False) -> Callable:
  """`num_steps` x (next batch, `strategy.run`), reduced, in one tf.function
  call: without a loop for one step unless `loop`.

  Running several steps per call (--steps_per_execution) saves the Python
  round trip between steps; with `loop` (set when it is above 1) a last,
  shorter block, even of one step, runs through the same traced loop
  instead of tracing the one-step function as well. Returns each loss's
  mean over the steps.
  """

  names = train_step.metric_names

  def one_step(iterator):
    per_replica = strategy.run(train_step, args=(next(iterator),))
    step.assign_add(1)
    # Each replica's losses are already divided by the global batch: the
    # sum over replicas is the global mean.
    return {k: tf.cast(strategy.reduce(tf.distribute.ReduceOp.SUM,
                                       per_replica[k], axis=None), tf.float32)
            for k in names}

  # At --steps_per_execution=1 each call runs one step without a loop: a
  # tf.range loop is a While op, whose per-iteration frames and limits on
  # graph optimisation cost time when it would run once.
  single = tf.function(one_step)

  @tf.function
  def several(iterator, num_steps):
    totals = {name: tf.constant(0.0) for name in names}
    for _ in tf.range(num_steps):
      metrics = one_step(iterator)
      totals = {k: totals[k] + metrics[k] for k in names}
    count = tf.cast(num_steps, tf.float32)
    return {k: v / count for k, v in totals.items()}

  def distributed_step(iterator, num_steps: int = 1):
    if int(num_steps) == 1 and not loop:
      return single(iterator)
    return several(iterator, tf.constant(int(num_steps)))

  distributed_step.single, distributed_step.several = single, several
  return distributed_step


def weights_digest(model: keras.Model) -> str:
  """A short hash of a model's trainable weights, to compare workers.

  (Batch norm's moving statistics are left out: with --norm=batch each
  replica keeps those of its own data, as within one machine.)
  """
  digest = hashlib.sha256()
  for weight in model.trainable_weights:
    digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
  return digest.hexdigest()[:16]
