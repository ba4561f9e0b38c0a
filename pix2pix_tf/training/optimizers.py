"""Adam as one fused TensorFlow kernel per variable (--fused_updates).

Keras's Adam updates each variable with about ten elementwise ops (the two
moment updates, the square root, the division, the casts), each reading and
writing a temporary as large as the variable. At batch 1 the step's
convolutions are small and these memory-bound updates of the 54 million
generator weights take a large share of it. TensorFlow's `ResourceApplyAdam`
kernel does the same arithmetic in one multi-threaded pass over the variable
and its two moments, so this subclass calls it instead; Keras has no fused
Adam of its own for the TensorFlow backend, which is why it is written here.
Slots, checkpoints and the learning-rate schedule are Keras's unchanged.
"""

import keras
import tensorflow as tf


class FusedAdam(keras.optimizers.Adam):
  """`keras.optimizers.Adam` whose per-variable update is TensorFlow's fused
  `ResourceApplyAdam` kernel: the same formula (Keras's and the kernel's are
  m += (g - m)(1 - b1), v += (g^2 - v)(1 - b2),
  var -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps))."""

  def update_step(self, gradient: tf.Tensor, variable: tf.Variable,
                  learning_rate: tf.Tensor) -> tf.Operation:
    """Updates `variable` and its two moments with one fused kernel."""
    if self.amsgrad or not hasattr(variable, "handle"):
      return super().update_step(gradient, variable, learning_rate)
    dtype = variable.dtype
    index = self._get_variable_index(variable)
    # Inside the strategy's update() call the slots' handles are this
    # replica's copies, as `variable` is.
    momentum = self._momentums[index].value.handle
    velocity = self._velocities[index].value.handle
    local_step = tf.cast(self.iterations + 1, dtype)
    beta_1 = tf.cast(self.beta_1, dtype)
    beta_2 = tf.cast(self.beta_2, dtype)
    return tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=momentum, v=velocity,
        beta1_power=tf.pow(beta_1, local_step),
        beta2_power=tf.pow(beta_2, local_step),
        lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
        epsilon=tf.cast(self.epsilon, dtype),
        grad=tf.cast(gradient, dtype), use_locking=False)
