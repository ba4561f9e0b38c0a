"""tf.distribute, applied once: the strategy for --strategy, which process
is the chief, and the one tf.function that runs the step on every replica."""

import hashlib
from typing import Callable

import keras
import numpy as np
import tensorflow as tf


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


def weights_digest(model: keras.Model) -> str:
  """A short hash of a model's trainable weights, to compare workers.

  (Batch norm's moving statistics are left out: with --norm=batch each
  replica keeps those of its own data, as within one machine.)
  """
  digest = hashlib.sha256()
  for weight in model.trainable_weights:
    digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
  return digest.hexdigest()[:16]
