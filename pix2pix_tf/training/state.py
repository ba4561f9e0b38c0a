"""A run's state: what one checkpoint holds (G, D, both optimizers, the
step counter and the random states), the run's objective, and the frozen
helper networks some of its terms use (read from their own weights files,
not checkpointed); built under the strategy's scope and restored with every
variable matched."""

import dataclasses
from typing import Dict, List

import keras
import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf import kernels
from pix2pix_tf import models
from pix2pix_tf.training import losses
from pix2pix_tf.training import optimizers
from pix2pix_tf.training import precision
from pix2pix_tf.training import schedules


@dataclasses.dataclass
class TrainState:
  """G, D, their optimizers, the step and the noise (what `checkpoint`
  holds); the objective, built once from the config, and its terms' frozen
  networks (read from their files)."""
  generator: keras.Model
  discriminator: keras.Model
  generator_optimizer: keras.optimizers.Optimizer
  discriminator_optimizer: keras.optimizers.Optimizer
  step: tf.Variable
  # Random state of the step's own noise (the gradient penalty's mixing).
  noise: keras.random.SeedGenerator
  # The run's loss terms: what the step computes and what it reports.
  objective: losses.Objective
  # Frozen networks of loss terms, by name (losses.Views.helpers).
  helpers: Dict[str, keras.Model] = dataclasses.field(default_factory=dict)

  def random_states(self) -> List[tf.Variable]:
    """The random-number states of dropout and of `noise`. Saved with the
    weights, so that a resumed --deterministic run draws what an
    uninterrupted one would have."""
    generators = [self.noise] + [
        layer.seed_generator for layer in self.generator.layers
        if isinstance(getattr(layer, "seed_generator", None),
                      keras.random.SeedGenerator)]
    return [g.state for g in generators]

  def checkpoint(self) -> tf.train.Checkpoint:
    """A checkpoint of the models, optimizers, step and noise state."""
    return tf.train.Checkpoint(
        generator=self.generator, discriminator=self.discriminator,
        generator_optimizer=self.generator_optimizer,
        discriminator_optimizer=self.discriminator_optimizer, step=self.step,
        random_states=self.random_states())


def create_state(config: config_lib.Config, steps_per_epoch: int,
                 strategy: tf.distribute.Strategy,
                 total_steps: int = 0) -> TrainState:
  """Builds models, optimizers, step counter, the objective and its terms'
  frozen networks under the strategy's scope; the networks and the
  optimizers train on the kernels the config's kernel options ask for."""
  precision.check_precision(config.run.mixed_precision)
  with strategy.scope(), precision.dtype_policy(config.run.mixed_precision):
    generator, discriminator, adam_class = kernels.for_training(
        config, models.build_generator(config),
        models.build_discriminators(config), optimizers.Adam)
    objective = losses.build_objective(config)
    # Frozen networks compute in float32: the losses are float32, and
    # bfloat16 would round the small differences a term compares.
    with precision.dtype_policy("none"):
      helpers = {name: build() for name, build in objective.helpers.items()}

    def adam():
      schedule = schedules.learning_rate_schedule(config, steps_per_epoch,
                                                  total_steps)
      optimizer = adam_class(schedule, beta_1=config.optimisation.beta_1,
                             beta_2=config.optimisation.beta_2)
      policy = precision.resolve_mixed_precision(config.run.mixed_precision)
      if policy == "fp16":
        # float16 gradients underflow: scale the loss, unscale the gradients,
        # and skip steps whose gradients overflow (Keras's dynamic scaling).
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
      return optimizer

    state = TrainState(
        generator, discriminator, adam(), adam(),
        tf.Variable(0, dtype=tf.int64, trainable=False, name="step"),
        keras.random.SeedGenerator(config.optimisation.seed, name="noise"),
        objective, helpers)
    # Create the optimizer slots now so a checkpoint restores into them.
    state.generator_optimizer.build(generator.trainable_variables)
    state.discriminator_optimizer.build(discriminator.trainable_variables)
  return state
