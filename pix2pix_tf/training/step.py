"""The paper's update for one batch, per replica.

`TrainStep.update` is the paper's order: generate; one D step on the real
pair and the generated pair (G's output held fixed); then one G step whose
adversarial term comes from the *updated* D. The losses are the state's
`losses.Objective` (`TrainState.objective`): named, weighted terms, whose
dict is also what the step reports. `SimultaneousStep` is the one variant
of the order (`--update_order=simultaneous`).

Per-example losses are averaged over the global batch, so that summing the
replicas' gradients gives the gradient of the global mean.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf.training import losses
from pix2pix_tf.training.state import TrainState

Metrics = Dict[str, tf.Tensor]


class TrainStep:
  """The per-replica pix2pix update for one batch: `step(batch)` applies it
  and returns the losses named by `metric_names` (the objective's)."""

  # Forward and backward passes XLA compiles with --jit_compile; applying
  # the gradients stays outside, where the strategy all-reduces them.
  COMPILED = ("generate", "discriminator_gradients", "generator_losses")

  def __init__(self, state: TrainState, config: config_lib.Config,
               global_batch_size: int):
    self.state = state
    self.config = config
    self.global_batch_size = global_batch_size
    self.metric_names = state.objective.metric_names
    if config.run.jit_compile:
      for name in self.COMPILED:
        setattr(self, name, tf.function(getattr(self, name),
                                        jit_compile=True))

  def __call__(self, batch):
    input_image, target_image = batch
    metrics = self.update(input_image, target_image)
    return {name: metrics[name] for name in self.metric_names}

  def update(self, input_image: tf.Tensor, target_image: tf.Tensor
             ) -> Metrics:
    """The paper's order: D step, then G step against the updated D."""
    state = self.state
    with tf.GradientTape() as gen_tape:
      generated_image = self.generate(input_image)
      metrics = {}
      if state.objective.discriminator:
        with gen_tape.stop_recording():
          disc_gradients, metrics = self.discriminator_gradients(
              input_image, target_image, generated_image)
          self.apply(state.discriminator_optimizer, disc_gradients,
                     state.discriminator)
      # D's variables are read anew from here on: G meets the updated D.
      metrics.update(self.generator_losses(input_image, target_image,
                                           generated_image))
      gen_loss = self.scale(state.generator_optimizer,
                            metrics[losses.GENERATOR_TOTAL])
    self.apply(state.generator_optimizer,
               gen_tape.gradient(gen_loss,
                                 state.generator.trainable_variables),
               state.generator)
    return metrics

  # --- Forward passes and losses --------------------------------------------

  def generate(self, input_image: tf.Tensor) -> tf.Tensor:
    """G's output in training mode (dropout on, batch statistics)."""
    return self.state.generator(input_image, training=True)

  def discriminate(self, input_image: tf.Tensor,
                   candidate: tf.Tensor) -> Sequence:
    """D's outputs (one per scale) for the pair, in training mode."""
    return self.state.discriminator([input_image, candidate], training=True)

  def views(self, input_image: tf.Tensor, target_image: tf.Tensor,
            generated_image: tf.Tensor) -> losses.Views:
    """What the loss terms see of this batch."""
    return losses.Views(input_image, target_image, generated_image,
                        self.discriminate, self.state.helpers,
                        self.state.noise)

  def averaged(self, terms: Sequence[losses.Term], views: losses.Views,
               total_name: str) -> Metrics:
    """The terms and their weighted sum, each averaged over the global
    batch."""
    return {name: tf.nn.compute_average_loss(
        per_example, global_batch_size=self.global_batch_size)
            for name, per_example in losses.weighted_sum(
                terms, views, total_name).items()}

  def discriminator_losses(self, input_image: tf.Tensor,
                           target_image: tf.Tensor,
                           generated_image: tf.Tensor) -> Metrics:
    """D's terms on the real pair and the (fixed) generated pair."""
    return self.averaged(
        self.state.objective.discriminator,
        self.views(input_image, target_image,
                   tf.stop_gradient(generated_image)),
        losses.DISCRIMINATOR_TOTAL)

  def generator_losses(self, input_image: tf.Tensor, target_image: tf.Tensor,
                       generated_image: tf.Tensor) -> Metrics:
    """G's terms, against the discriminator as it is now."""
    return self.averaged(self.state.objective.generator,
                         self.views(input_image, target_image,
                                    generated_image),
                         losses.GENERATOR_TOTAL)

  def discriminator_gradients(self, input_image: tf.Tensor,
                              target_image: tf.Tensor,
                              generated_image: tf.Tensor
                              ) -> Tuple[List[tf.Tensor], Metrics]:
    """The D step's gradients and losses."""
    with tf.GradientTape() as disc_tape:
      metrics = self.discriminator_losses(input_image, target_image,
                                          generated_image)
      disc_loss = self.scale(self.state.discriminator_optimizer,
                             metrics[losses.DISCRIMINATOR_TOTAL])
    return disc_tape.gradient(
        disc_loss, self.state.discriminator.trainable_variables), metrics

  # --- Optimizers -----------------------------------------------------------

  @staticmethod
  def scale(optimizer: keras.optimizers.Optimizer,
            loss: tf.Tensor) -> tf.Tensor:
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


class SimultaneousStep(TrainStep):
  """--update_order=simultaneous: both gradients from one forward pass
  against the old D, then both applied (one D forward cheaper; for
  comparison with the paper's order)."""

  COMPILED = ("gradients",)

  def update(self, input_image: tf.Tensor, target_image: tf.Tensor
             ) -> Metrics:
    """Both gradients first, then both updates."""
    state = self.state
    gen_gradients, disc_gradients, metrics = self.gradients(input_image,
                                                            target_image)
    self.apply(state.generator_optimizer, gen_gradients, state.generator)
    if disc_gradients is not None:
      self.apply(state.discriminator_optimizer, disc_gradients,
                 state.discriminator)
    return metrics

  def gradients(self, input_image: tf.Tensor, target_image: tf.Tensor
                ) -> Tuple[List[tf.Tensor], Optional[List[tf.Tensor]],
                           Metrics]:
    """Both networks' gradients and losses, on one set of views."""
    state = self.state
    with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
      views = self.views(input_image, target_image,
                         self.generate(input_image))
      metrics = {}
      # D's terms first: D sees the real pair, then the generated one, as
      # in the paper's order (its batch-norm moving statistics follow).
      if state.objective.discriminator:
        metrics = self.averaged(state.objective.discriminator, views,
                                losses.DISCRIMINATOR_TOTAL)
        # Scaled inside the tapes, so that the scaling is differentiated.
        disc_loss = self.scale(state.discriminator_optimizer,
                               metrics[losses.DISCRIMINATOR_TOTAL])
      metrics.update(self.averaged(state.objective.generator, views,
                                   losses.GENERATOR_TOTAL))
      gen_loss = self.scale(state.generator_optimizer,
                            metrics[losses.GENERATOR_TOTAL])
    gen_gradients = gen_tape.gradient(gen_loss,
                                      state.generator.trainable_variables)
    disc_gradients = (
        disc_tape.gradient(disc_loss, state.discriminator.trainable_variables)
        if state.objective.discriminator else None)
    return gen_gradients, disc_gradients, metrics


def make_train_step(state: TrainState, config: config_lib.Config,
                    global_batch_size: int) -> TrainStep:
  """The per-replica update of `state` for one batch, in the config's
  --update_order."""
  simultaneous = config.objective.update_order == "simultaneous"
  step_class = SimultaneousStep if simultaneous else TrainStep
  return step_class(state, config, global_batch_size)
