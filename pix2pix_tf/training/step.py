"""The paper's update for one batch, per replica."""

from typing import Dict, List, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf.training import losses
from pix2pix_tf.training.state import TrainState

Metrics = Dict[str, tf.Tensor]


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


class TrainStep:
  """The per-replica pix2pix update for one batch: `step(batch)` applies it
  and returns the losses named by `metric_names`.

  alternating (the default, the paper's and the reference's order):
  generate; one D step on the real pair and the generated pair (G's output
  held fixed); then one G step whose adversarial loss comes from the
  *updated* D. simultaneous: both gradients from one forward pass against
  the old D, then both applied (cheaper by one D forward; for comparison).

  Per-example losses are averaged over the global batch, so that summing
  the replicas' gradients gives the gradient of the global mean.
  """

  def __init__(self, state: TrainState, config: config_lib.Config,
               global_batch_size: int):
    self.state = state
    self.config = config
    self.global_batch_size = global_batch_size
    self.train_discriminator = config.gan_mode != "none"
    self.metric_names = metric_names(config)
    self._step = (self.alternating_step if config.update_order ==
                  "alternating" else self.simultaneous_step)
    if config.jit_compile:
      # XLA compiles the forward and backward passes; applying the gradients
      # stays outside, where the strategy all-reduces them across replicas.
      # (The tape of `alternating_step` differentiates through them.)
      for name in ("simultaneous_gradients", "discriminator_gradients",
                   "generator_objective", "generate"):
        setattr(self, name, tf.function(getattr(self, name),
                                        jit_compile=True))

  def __call__(self, batch):
    input_image, target_image = batch
    metrics = self._step(input_image, target_image)
    return {name: metrics[name] for name in self.metric_names}

  # --- The two orders ------------------------------------------------------

  def alternating_step(self, input_image: tf.Tensor, target_image: tf.Tensor
                       ) -> Metrics:
    """The paper's order: D step, then G step against the updated D."""
    with tf.GradientTape() as gen_tape:
      generated_image = self.generate(input_image)
      metrics = {}
      if self.train_discriminator:
        with gen_tape.stop_recording():
          disc_gradients, metrics = self.discriminator_gradients(
              input_image, target_image, generated_image)
          self.apply(self.state.discriminator_optimizer, disc_gradients,
                     self.state.discriminator)
      # Read after D's update: its variables are read anew from here on.
      metrics.update(self.generator_objective(input_image, target_image,
                                              generated_image))
      gen_loss = self.scale(self.state.generator_optimizer,
                            metrics["gen_total_loss"])
    self.apply(self.state.generator_optimizer,
               gen_tape.gradient(gen_loss,
                                 self.state.generator.trainable_variables),
               self.state.generator)
    return metrics

  def simultaneous_step(self, input_image: tf.Tensor, target_image: tf.Tensor
                        ) -> Metrics:
    """Both updates from one forward pass against the old D."""
    gen_gradients, disc_gradients, metrics = self.simultaneous_gradients(
        input_image, target_image)
    self.apply(self.state.generator_optimizer, gen_gradients,
               self.state.generator)
    if self.train_discriminator:
      self.apply(self.state.discriminator_optimizer, disc_gradients,
                 self.state.discriminator)
    return metrics

  # --- Forward passes and gradients ---------------------------------------

  def generate(self, input_image: tf.Tensor) -> tf.Tensor:
    """G's output in training mode (dropout on, batch statistics)."""
    return self.state.generator(input_image, training=True)

  def discriminate(self, input_image: tf.Tensor, candidate: tf.Tensor) -> Sequence:
    """D's outputs (one per scale) for the pair, in training mode."""
    return self.state.discriminator([input_image, candidate], training=True)

  def discriminator_gradients(self, input_image: tf.Tensor, target_image: tf.Tensor,
                              generated_image: tf.Tensor
                              ) -> Tuple[List[tf.Tensor], Metrics]:
    """The D step's gradients on the real and the (fixed) generated pair."""
    generated_image = tf.stop_gradient(generated_image)
    with tf.GradientTape() as disc_tape:
      disc_real_outputs = self.discriminate(input_image, target_image)
      disc_generated_outputs = self.discriminate(input_image,
                                                 generated_image)
      metrics = self.discriminator_losses(
          input_image, target_image, generated_image, disc_real_outputs,
          disc_generated_outputs)
      disc_loss = self.scale(self.state.discriminator_optimizer,
                             metrics["disc_loss"])
    return disc_tape.gradient(
        disc_loss, self.state.discriminator.trainable_variables), metrics

  def generator_objective(self, input_image: tf.Tensor, target_image: tf.Tensor,
                          generated_image: tf.Tensor) -> Metrics:
    """G's losses against the discriminator as it is now."""
    disc_real_outputs = disc_generated_outputs = None
    if self.train_discriminator:
      disc_generated_outputs = self.discriminate(input_image,
                                                 generated_image)
      if self.config.lambda_feature_matching:
        # Feature matching compares with D's features of the real pair.
        disc_real_outputs = self.discriminate(input_image, target_image)
    return self.generator_losses(generated_image, target_image,
                                 disc_real_outputs, disc_generated_outputs)

  def simultaneous_gradients(self, input_image: tf.Tensor, target_image: tf.Tensor
                             ) -> Tuple[List[tf.Tensor], Optional[List[tf.Tensor]],
                                        Metrics]:
    """Both gradients from one forward pass against the current D."""
    state = self.state
    with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
      generated_image = self.generate(input_image)
      disc_real_outputs = disc_generated_outputs = None
      if self.train_discriminator:
        disc_real_outputs = self.discriminate(input_image, target_image)
        disc_generated_outputs = self.discriminate(input_image,
                                                   generated_image)
      metrics = self.generator_losses(generated_image, target_image,
                                      disc_real_outputs,
                                      disc_generated_outputs)
      if self.train_discriminator:
        metrics.update(self.discriminator_losses(
            input_image, target_image, generated_image, disc_real_outputs,
            disc_generated_outputs))
      # Scaled inside the tapes, so that the scaling is differentiated.
      gen_loss = self.scale(state.generator_optimizer,
                            metrics["gen_total_loss"])
      disc_loss = (self.scale(state.discriminator_optimizer,
                              metrics["disc_loss"])
                   if self.train_discriminator else None)
    gen_gradients = gen_tape.gradient(gen_loss,
                                      state.generator.trainable_variables)
    disc_gradients = (
        disc_tape.gradient(disc_loss, state.discriminator.trainable_variables)
        if self.train_discriminator else None)
    return gen_gradients, disc_gradients, metrics

  # --- Losses ---------------------------------------------------------------

  def average(self, per_example: tf.Tensor) -> tf.Tensor:
    """The per-example losses' sum over the global batch size."""
    return tf.nn.compute_average_loss(
        per_example, global_batch_size=self.global_batch_size)

  def discriminator_losses(self, input_image: tf.Tensor, target_image: tf.Tensor,
                           generated_image: tf.Tensor, disc_real_outputs: Sequence,
                           disc_generated_outputs: Sequence) -> Metrics:
    """D's losses (means over the global batch), the penalty included."""
    per_example = losses.discriminator_loss(
        disc_real_outputs, disc_generated_outputs, self.config.gan_mode)
    if self.config.gan_mode == "wgangp":
      penalty = self.gradient_penalty(input_image, target_image,
                                      generated_image)
      per_example["disc_gradient_penalty"] = penalty
      per_example["disc_loss"] += self.config.lambda_gp * penalty
    return {name: self.average(per_example[name])
            for name in self.metric_names if name.startswith("disc_")}

  def generator_losses(self, generated_image: tf.Tensor, target_image: tf.Tensor,
                       disc_real_outputs: Optional[Sequence],
                       disc_generated_outputs: Optional[Sequence]
                       ) -> Metrics:
    """G's losses (means over the global batch)."""
    config = self.config
    per_example = losses.generator_loss(
        disc_real_outputs, disc_generated_outputs, generated_image,
        target_image, config.gan_mode, config.lambda_l1, config.lambda_l2,
        config.lambda_feature_matching)
    return {name: self.average(per_example[name])
            for name in self.metric_names if name.startswith("gen_")}

  def gradient_penalty(self, input_image: tf.Tensor, target_image: tf.Tensor,
                       generated_image: tf.Tensor) -> tf.Tensor:
    """WGAN-GP: D's gradient norm at random points between real and fake."""
    batch = tf.shape(target_image)[0]
    alpha = keras.random.uniform([batch, 1, 1, 1], seed=self.state.noise)
    interpolated = (alpha * target_image +
                    (1.0 - alpha) * tf.stop_gradient(generated_image))
    with tf.GradientTape() as tape:
      tape.watch(interpolated)
      outputs = self.discriminate(input_image, interpolated)
      score = tf.add_n([tf.reduce_sum(d[0]) for d in outputs])
    return losses.gradient_penalty(tape.gradient(score, interpolated))

  # --- Optimizers -----------------------------------------------------------

  @staticmethod
  def scale(optimizer: keras.optimizers.Optimizer, loss: tf.Tensor) -> tf.Tensor:
    """fp16: the loss scaled; the LossScaleOptimizer unscales the gradients
    it applies."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
      return optimizer.scale_loss(loss)
    return loss

  @staticmethod
  def apply(optimizer: keras.optimizers.Optimizer, gradients: Sequence,
            model: keras.Model) -> None:
    """One optimizer update of `model`'s trainable variables."""
    optimizer.apply_gradients(list(zip(gradients, model.trainable_variables)))


def make_train_step(state: TrainState, config: config_lib.Config,
                    global_batch_size: int) -> TrainStep:
  """The per-replica update of `state` for one batch (see `TrainStep`)."""
  return TrainStep(state, config, global_batch_size)
