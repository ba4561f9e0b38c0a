"""Adam as the reference (PyTorch) defines it.

PyTorch's Adam adds epsilon to the bias-corrected root of the second
moment, sqrt(v / (1 - b2^t)) + eps. Keras's adds it before the correction,
sqrt(v) + eps (the "epsilon hat" form of Kingma and Ba, Section 2): the
same as PyTorch's with eps / sqrt(1 - b2^t), which with Keras's 1e-7 and
b2 = 0.999 is 3.2e-6 at step 1, 320 times the reference's 1e-8. Keras has
no option for PyTorch's form, so `Adam` writes the update out, with the
epsilon that makes Keras's form PyTorch's.

`pix2pix_tf.kernels.fused_adam` makes the same update one fused TensorFlow
kernel per variable (--fused_updates).
"""

from typing import Union

import keras
import tensorflow as tf

# torch.optim.Adam's default, which the reference keeps.
REFERENCE_EPSILON = 1e-8


class Adam(keras.optimizers.Adam):
  """`keras.optimizers.Adam` with PyTorch's update (the reference's):
  m += (g - m)(1 - b1), v += (g^2 - v)(1 - b2),
  var -= lr / (1 - b1^t) m / (sqrt(v / (1 - b2^t)) + eps),
  computed as Keras computes its own, in the epsilon-hat form
  var -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps_hat) with
  eps_hat = eps sqrt(1 - b2^t): the same value, and no more ops per
  variable than Keras's (eps_hat is one scalar per step).
  """

  def __init__(self, learning_rate: Union[
      float, keras.optimizers.schedules.LearningRateSchedule],
               beta_1: float, beta_2: float,
               epsilon: float = REFERENCE_EPSILON, **kwargs):
    super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2,
                     epsilon=epsilon, **kwargs)

  def _terms(self, dtype: tf.DType) -> "tuple[tf.Tensor, ...]":
    """(b1^t, b2^t, eps_hat) for the update being made, t from 1."""
    local_step = tf.cast(self.iterations + 1, dtype)
    beta_1_power = tf.pow(tf.cast(self.beta_1, dtype), local_step)
    beta_2_power = tf.pow(tf.cast(self.beta_2, dtype), local_step)
    return (beta_1_power, beta_2_power,
            self.epsilon * tf.sqrt(1 - beta_2_power))

  def update_step(self, gradient: tf.Tensor, variable: tf.Variable,
                  learning_rate: tf.Tensor) -> None:
    """Updates `variable` and its two moments, PyTorch's way."""
    if self.amsgrad:
      raise ValueError("The reference's Adam has no amsgrad.")
    dtype = variable.dtype
    gradient = tf.cast(gradient, dtype)
    beta_1_power, beta_2_power, epsilon_hat = self._terms(dtype)
    index = self._get_variable_index(variable)
    m, v = self._momentums[index], self._velocities[index]
    alpha = (tf.cast(learning_rate, dtype) * tf.sqrt(1 - beta_2_power) /
             (1 - beta_1_power))
    self.assign_add(m, (gradient - m) * (1 - self.beta_1))
    self.assign_add(v, (tf.square(gradient) - v) * (1 - self.beta_2))
    self.assign_sub(variable, m * alpha / (tf.sqrt(v) + epsilon_hat))
