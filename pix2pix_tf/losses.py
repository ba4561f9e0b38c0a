"""The pix2pix objective, per example, ready for `tf.nn.compute_average_loss`.

Each function returns a dict of per-example losses of shape (batch,): the total
and its parts, so the training step can log the parts without recomputing
them. Discriminator outputs may be a single logits map or a list of maps (one
per discriminator); the GAN terms are summed over the list.
"""

import tensorflow as tf


def _per_example_mean(x):
  """Mean over every axis but the batch axis: (batch, ...) -> (batch,)."""
  return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def _as_list(logits):
  return logits if isinstance(logits, (list, tuple)) else [logits]


def gan_loss(logits, target_is_real: bool, gan_mode: str = "vanilla"):
  """GAN loss of one logits map against all-real or all-fake labels.

  vanilla: binary cross-entropy on logits (the paper's log D terms);
  lsgan: least squares on the raw outputs (Mao et al.).
  """
  logits = tf.cast(logits, tf.float32)
  labels = tf.ones_like(logits) if target_is_real else tf.zeros_like(logits)
  if gan_mode == "vanilla":
    loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels,
                                                   logits=logits)
  elif gan_mode == "lsgan":
    loss = tf.square(logits - labels)
  else:
    raise ValueError(f"Unknown gan_mode {gan_mode!r}.")
  return _per_example_mean(loss)


def generator_loss(disc_generated_logits, generated_image, target_image,
                   gan_mode: str = "vanilla", lambda_l1: float = 100.0):
  """G's objective: fool D (non-saturating) plus lambda_l1 * L1 to the target.

  Returns:
    dict of (batch,) tensors: gen_total_loss, gen_gan_loss, gen_l1_loss.
  """
  generated_image = tf.cast(generated_image, tf.float32)
  target_image = tf.cast(target_image, tf.float32)
  gen_l1_loss = _per_example_mean(tf.abs(target_image - generated_image))
  if gan_mode == "none":
    gen_gan_loss = tf.zeros_like(gen_l1_loss)
  else:
    gen_gan_loss = tf.add_n([gan_loss(logits, True, gan_mode)
                             for logits in _as_list(disc_generated_logits)])
  return {
      "gen_total_loss": gen_gan_loss + lambda_l1 * gen_l1_loss,
      "gen_gan_loss": gen_gan_loss,
      "gen_l1_loss": gen_l1_loss,
  }


def discriminator_loss(disc_real_logits, disc_generated_logits,
                       gan_mode: str = "vanilla"):
  """D's objective, halved as in the paper, so D learns slower than G.

  Returns:
    dict of (batch,) tensors: disc_loss, disc_real_loss, disc_generated_loss.
  """
  disc_real_loss = tf.add_n([gan_loss(logits, True, gan_mode)
                             for logits in _as_list(disc_real_logits)])
  disc_generated_loss = tf.add_n(
      [gan_loss(logits, False, gan_mode)
       for logits in _as_list(disc_generated_logits)])
  return {
      "disc_loss": 0.5 * (disc_real_loss + disc_generated_loss),
      "disc_real_loss": disc_real_loss,
      "disc_generated_loss": disc_generated_loss,
  }
