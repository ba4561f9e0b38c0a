"""Learning-rate schedules for --lr_policy (the reference's four)."""

import keras
import tensorflow as tf

from pix2pix_tf import config as config_lib


class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
  """The reference's policy: constant, then linear decay to zero."""

  def __init__(self, initial_learning_rate: float, constant_steps: int,
               decay_steps: int):
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


def learning_rate_schedule(
    config: config_lib.Config, steps_per_epoch: int, total_steps: int
) -> keras.optimizers.schedules.LearningRateSchedule:
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
