"""The pix2pix objective and its variants, per example.

Each function returns a dict of per-example losses of shape (batch,): the total
and its parts, so the training step can log the parts without recomputing
them and average them with `tf.nn.compute_average_loss`.

Discriminator outputs are lists with one entry per discriminator, each
`[logits, features...]` (see `models.Discriminators`); GAN terms are summed
over the discriminators, as in pix2pixHD.
"""

from typing import Dict, Optional, Sequence

import tensorflow as tf


def _per_example_mean(x):
  """Mean over every axis but the batch axis: (batch, ...) -> (batch,)."""
  x = tf.cast(x, tf.float32)
  return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def gan_loss(logits: tf.Tensor, target_is_real: bool,
             gan_mode: str = "vanilla",
             for_discriminator: bool = True) -> tf.Tensor:
  """GAN loss of one logits map, per example.

  vanilla: binary cross-entropy on logits (the paper's log D terms; for the
  generator, the non-saturating form). lsgan: least squares (Mao et al.).
  hinge: max(0, 1 -/+ D) for D, -D for G (Lim and Ye; SAGAN).
  wgangp: the Wasserstein critic, -D for real and D for generated (Gulrajani
  et al.; the gradient penalty is added by the training step).
  """
  logits = tf.cast(logits, tf.float32)
  if gan_mode == "vanilla":
    labels = tf.ones_like(logits) if target_is_real else tf.zeros_like(logits)
    loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels,
                                                   logits=logits)
  elif gan_mode == "lsgan":
    loss = tf.square(logits - (1.0 if target_is_real else 0.0))
  elif gan_mode == "hinge":
    if not for_discriminator:
      loss = -logits
    elif target_is_real:
      loss = tf.nn.relu(1.0 - logits)
    else:
      loss = tf.nn.relu(1.0 + logits)
  elif gan_mode == "wgangp":
    loss = -logits if target_is_real else logits
  else:
    raise ValueError(f"Unknown gan_mode {gan_mode!r}.")
  return _per_example_mean(loss)


def _sum_over_discriminators(outputs, target_is_real, gan_mode,
                             for_discriminator):
  return tf.add_n([gan_loss(d[0], target_is_real, gan_mode, for_discriminator)
                   for d in outputs])


def feature_matching_loss(disc_real_outputs: Sequence,
                          disc_generated_outputs: Sequence) -> tf.Tensor:
  """pix2pixHD's feature matching: L1 between D's activations on the real and
  the generated pair, averaged over layers and discriminators. The real
  activations are constants: only G is pulled towards them."""
  terms = []
  for real, generated in zip(disc_real_outputs, disc_generated_outputs):
    for real_features, generated_features in zip(real[1:], generated[1:]):
      terms.append(_per_example_mean(tf.abs(
          tf.stop_gradient(tf.cast(real_features, tf.float32)) -
          tf.cast(generated_features, tf.float32))))
  return tf.add_n(terms) / len(terms)


def generator_loss(disc_real_outputs: Optional[Sequence],
                   disc_generated_outputs: Optional[Sequence],
                   generated_image: tf.Tensor, target_image: tf.Tensor,
                   gan_mode: str = "vanilla", lambda_l1: float = 100.0,
                   lambda_l2: float = 0.0,
                   lambda_feature_matching: float = 0.0
                   ) -> Dict[str, tf.Tensor]:
  """G's objective: fool D, plus the weighted distance and feature terms.

  Returns:
    dict of (batch,) tensors: gen_total_loss, gen_gan_loss, gen_l1_loss,
    gen_l2_loss, gen_feature_matching_loss.
  """
  difference = (tf.cast(target_image, tf.float32) -
                tf.cast(generated_image, tf.float32))
  gen_l1_loss = _per_example_mean(tf.abs(difference))
  gen_l2_loss = _per_example_mean(tf.square(difference))
  zero = tf.zeros_like(gen_l1_loss)
  gen_gan_loss = zero if gan_mode == "none" else _sum_over_discriminators(
      disc_generated_outputs, True, gan_mode, for_discriminator=False)
  gen_feature_matching_loss = (
      feature_matching_loss(disc_real_outputs, disc_generated_outputs)
      if lambda_feature_matching else zero)
  return {
      "gen_total_loss": (gen_gan_loss + lambda_l1 * gen_l1_loss +
                         lambda_l2 * gen_l2_loss +
                         lambda_feature_matching * gen_feature_matching_loss),
      "gen_gan_loss": gen_gan_loss,
      "gen_l1_loss": gen_l1_loss,
      "gen_l2_loss": gen_l2_loss,
      "gen_feature_matching_loss": gen_feature_matching_loss,
  }


def discriminator_loss(disc_real_outputs: Sequence,
                       disc_generated_outputs: Sequence,
                       gan_mode: str = "vanilla") -> Dict[str, tf.Tensor]:
  """D's objective, halved as in the paper (and, for every GAN loss, the
  reference), so that D learns slower than G.

  Returns:
    dict of (batch,) tensors: disc_loss, disc_real_loss, disc_generated_loss.
  """
  disc_real_loss = _sum_over_discriminators(disc_real_outputs, True, gan_mode,
                                            for_discriminator=True)
  disc_generated_loss = _sum_over_discriminators(
      disc_generated_outputs, False, gan_mode, for_discriminator=True)
  return {
      "disc_loss": 0.5 * (disc_real_loss + disc_generated_loss),
      "disc_real_loss": disc_real_loss,
      "disc_generated_loss": disc_generated_loss,
  }


def gradient_penalty(gradients: tf.Tensor) -> tf.Tensor:
  """WGAN-GP's (||grad D(x_hat)||_2 - 1)^2 per example, from the gradients of
  D's summed outputs at the interpolated images."""
  gradients = tf.cast(gradients, tf.float32)
  norm = tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=[1, 2, 3]) + 1e-12)
  return tf.square(norm - 1.0)
