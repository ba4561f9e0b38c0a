"""Adam's update as TensorFlow's one fused kernel per variable
(--fused_updates).

Keras's Adam update is about ten elementwise ops per variable (the two
moment updates, the square root, the division, the casts), each reading and
writing a temporary as large as the variable; at batch 1 these
memory-bound updates of the U-Net's 54 million weights are a large share of
a step. TensorFlow's `ResourceApplyAdam` kernel does the same arithmetic in
one multi-threaded pass. Keras has no fused Adam for the TensorFlow
backend, which is why this is written by hand. Slots, checkpoints and the
learning-rate schedule stay Keras's.
"""

import functools

import keras
import tensorflow as tf


class FusedUpdates:
  """Mixin for an Adam whose `_terms(dtype)` gives (b1^t, b2^t, eps_hat)
  of the update being made (the epsilon-hat form, as
  `training.optimizers.Adam`): each variable's update becomes one
  `ResourceApplyAdam`, which computes exactly that form."""

  def update_step(self, gradient: tf.Tensor, variable: tf.Variable,
                  learning_rate: tf.Tensor) -> tf.Operation:
    """Updates `variable` and its two moments with one fused kernel."""
    if not hasattr(variable, "handle"):
      return super().update_step(gradient, variable, learning_rate)
    dtype = variable.dtype
    index = self._get_variable_index(variable)
    # Inside the strategy's update() call the slots' handles are this
    # replica's copies, as `variable` is.
    momentum = self._momentums[index].value.handle
    velocity = self._velocities[index].value.handle
    beta_1_power, beta_2_power, epsilon_hat = self._terms(dtype)
    return tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=momentum, v=velocity,
        beta1_power=beta_1_power, beta2_power=beta_2_power,
        lr=tf.cast(learning_rate, dtype),
        beta1=tf.cast(self.beta_1, dtype), beta2=tf.cast(self.beta_2, dtype),
        epsilon=epsilon_hat,
        grad=tf.cast(gradient, dtype), use_locking=False)


@functools.cache
def fused_adam(adam: type) -> type:
  """`adam` (a keras.optimizers.Adam subclass with `_terms`) with
  `FusedUpdates`: the same update, one kernel per variable. One class per
  `adam`, made here so that the update's definition stays where the
  training defines it and the kernel stays here."""
  if not (issubclass(adam, keras.optimizers.Adam) and
          hasattr(adam, "_terms")):
    raise TypeError(f"{adam.__name__} gives no epsilon-hat terms to fuse.")
  return type(f"Fused{adam.__name__}", (FusedUpdates, adam),
              {"__doc__": f"{adam.__name__}, one fused kernel per variable.",
               "__module__": __name__})
