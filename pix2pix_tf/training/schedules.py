"""Learning-rate schedules for --lr_policy."""

import keras
import tensorflow as tf

from pix2pix_tf import config as config_lib


class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
  """The reference's `linear` policy: a LambdaLR stepped after each epoch,
  so the learning rate of epoch e (from 0) is
  lr (1 - max(0, e + 1 - epochs) / (epochs_decay + 1)): constant for
  `epochs` epochs, then lower by lr / (epochs_decay + 1) at each epoch's
  end, the last epoch's lr / (epochs_decay + 1), never zero."""

  def __init__(self, initial_learning_rate: float, steps_per_epoch: int,
               epochs: int, epochs_decay: int):
    self.initial_learning_rate = initial_learning_rate
    self.steps_per_epoch = steps_per_epoch
    self.epochs = epochs
    self.epochs_decay = epochs_decay

  def __call__(self, step):
    if self.epochs + self.epochs_decay == 0:  # A run sized by --max_steps.
      return tf.constant(self.initial_learning_rate, tf.float32)
    epoch = tf.math.floordiv(tf.cast(step, tf.int64), self.steps_per_epoch)
    decayed = tf.cast(tf.maximum(epoch + 1 - self.epochs, 0), tf.float32)
    factor = 1.0 - decayed / float(self.epochs_decay + 1)
    # Past the schedule's end (more steps than its epochs): zero.
    return self.initial_learning_rate * tf.maximum(factor, 0.0)

  def get_config(self):
    return {"initial_learning_rate": self.initial_learning_rate,
            "steps_per_epoch": self.steps_per_epoch, "epochs": self.epochs,
            "epochs_decay": self.epochs_decay}


class Constant(keras.optimizers.schedules.LearningRateSchedule):
  """One learning rate throughout (--lr_policy=constant)."""

  def __init__(self, learning_rate: float):
    self.learning_rate = learning_rate

  def __call__(self, step):
    del step
    return tf.constant(self.learning_rate, tf.float32)

  def get_config(self):
    return {"learning_rate": self.learning_rate}


def learning_rate_schedule(
    config: config_lib.Config, steps_per_epoch: int, total_steps: int
) -> keras.optimizers.schedules.LearningRateSchedule:
  """The learning rate per optimizer step, for `--lr_policy`.

  linear: the reference's default (`LinearDecay`), constant for --epochs,
  then lower at each epoch's end over --epochs_decay. step: times 0.1
  every --lr_decay_epochs, as the reference's. cosine: cosine decay to zero
  over the whole run, per step. constant.
  """
  optimisation = config.optimisation
  lr, policy = optimisation.learning_rate, optimisation.lr_policy
  if policy == "linear":
    return LinearDecay(lr, max(steps_per_epoch, 1), optimisation.epochs,
                       optimisation.epochs_decay)
  if policy == "step":
    return keras.optimizers.schedules.ExponentialDecay(
        lr, optimisation.lr_decay_epochs * steps_per_epoch, 0.1,
        staircase=True)
  if policy == "cosine":
    return keras.optimizers.schedules.CosineDecay(lr, max(total_steps, 1))
  if policy == "constant":
    return Constant(lr)
  raise ValueError(f"Unknown lr_policy {policy!r}.")
