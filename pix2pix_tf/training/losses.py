"""The pix2pix objective as a list of named, weighted terms.

A term is a small function of `Views` (the batch, G's output, and D's
outputs computed on first use) that returns a per-example loss of shape
(batch,). `build_objective` lists the terms the config switches on, once
for a run's state (`TrainState.objective`); `weighted_sum` adds them up.
The dict it returns, each term by its name and the total, is what the step
averages, differentiates and logs.

Adding a term is one function here, one config field for its weight, and
one line in `build_objective`; a term that reads a frozen network (VGG19
for `vgg_loss`) names it, its builder and the file it reads in that line
too.

Discriminator outputs are lists with one entry per discriminator, each
`[logits, features...]` (see `models.Discriminators`); GAN terms are summed
over the discriminators, as in pix2pixHD.
"""

import dataclasses
import functools
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf import models

# Loss names read outside this module (by the step, and by the tools'
# timings, plots and checks): the two totals and the paper's two generator
# terms.
GENERATOR_TOTAL = "gen_total_loss"
DISCRIMINATOR_TOTAL = "disc_loss"
GENERATOR_GAN = "gen_gan_loss"
GENERATOR_L1 = "gen_l1_loss"


class Views:
  """What a term may look at for one batch: the images, D's outputs on the
  real and on the generated pair (each computed the first time a term asks
  for it, then shared), the frozen helper networks, and the step's noise."""

  def __init__(self, input_image: tf.Tensor, target_image: tf.Tensor,
               generated_image: tf.Tensor,
               discriminate: Optional[Callable] = None,
               helpers: Optional[Mapping[str, keras.Model]] = None,
               noise: Optional[keras.random.SeedGenerator] = None):
    self.input_image = input_image
    self.target_image = target_image
    self.generated_image = generated_image
    self.discriminate = discriminate
    self.helpers = helpers or {}
    self.noise = noise

    self._outputs = {}

  # Memoised by hand: functools.cached_property holds one lock for every
  # instance (before Python 3.12), and MirroredStrategy traces the replicas
  # in threads that wait for each other inside D (synchronised batch norm):
  # a replica holding the lock while the other waits for it would deadlock.
  def _discriminated(self, which: str, candidate: tf.Tensor) -> Sequence:
    if which not in self._outputs:
      self._outputs[which] = self.discriminate(self.input_image, candidate)
    return self._outputs[which]

  @property
  def disc_real(self) -> Sequence:
    """D's outputs on (input, target)."""
    return self._discriminated("real", self.target_image)

  @property
  def disc_generated(self) -> Sequence:
    """D's outputs on (input, generated)."""
    return self._discriminated("generated", self.generated_image)


@dataclasses.dataclass(frozen=True)
class Term:
  """One part of an objective: logged as `name`, added times `weight`.
  `helpers` builds the frozen networks its loss reads from
  `Views.helpers`, by name; the run builds them beside the models. `files`
  are the files they read, by the flag that names each: a run checks them
  before it writes anything."""
  name: str
  weight: float
  loss: Callable[[Views], tf.Tensor]
  helpers: Mapping[str, Callable[[], keras.Model]] = dataclasses.field(
      default_factory=dict)
  files: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Objective:
  """G's terms and D's terms (none without a GAN loss)."""
  generator: Tuple[Term, ...]
  discriminator: Tuple[Term, ...]

  @property
  def helpers(self) -> Dict[str, Callable[[], keras.Model]]:
    """The builders of every term's frozen networks, by name."""
    return {name: build for term in self.generator + self.discriminator
            for name, build in term.helpers.items()}

  @property
  def files(self) -> Tuple[Tuple[str, str, str], ...]:
    """(term name, flag, path) of every file the terms' helpers read."""
    return tuple((term.name, flag, path)
                 for term in self.generator + self.discriminator
                 for flag, path in term.files.items())

  @property
  def metric_names(self) -> Tuple[str, ...]:
    """Every loss the step reports, totals first."""
    names = (GENERATOR_TOTAL,) + tuple(t.name for t in self.generator)
    if self.discriminator:
      names += (DISCRIMINATOR_TOTAL,) + tuple(t.name
                                              for t in self.discriminator)
    return names


def weighted_sum(terms: Sequence[Term], views: Views,
                 total_name: str) -> Dict[str, tf.Tensor]:
  """Each term's per-example loss by its name, and their weighted sum as
  `total_name`."""
  parts = {term.name: term.loss(views) for term in terms}
  parts[total_name] = tf.add_n([term.weight * parts[term.name]
                                for term in terms])
  return parts


def build_objective(config: config_lib.Config) -> Objective:
  """The terms `config` switches on: the paper's cGAN + lambda * L1 (the L1
  term is always reported, even at weight 0), then the variants'."""
  objective = config.objective
  gan_mode = objective.gan_mode
  generator = [Term(GENERATOR_L1, objective.lambda_l1, l1_loss)]
  if gan_mode != "none":
    generator.insert(0, Term(GENERATOR_GAN, 1.0, functools.partial(
        adversarial_loss, gan_mode=gan_mode)))
  optional = [Term("gen_l2_loss", objective.lambda_l2, l2_loss),
              Term("gen_feature_matching_loss",
                   objective.lambda_feature_matching, feature_matching_loss),
              Term("gen_vgg_loss", objective.lambda_vgg, vgg_loss, helpers={
                  "vgg": functools.partial(models.build_vgg,
                                           objective.vgg_weights)},
                   files={"vgg_weights": objective.vgg_weights})]
  generator += [term for term in optional if term.weight]
  discriminator = []
  if gan_mode != "none":
    # Halved as in the paper (and, for every GAN loss, the reference), so
    # that D learns slower than G.
    discriminator = [
        Term("disc_real_loss", 0.5, functools.partial(
            real_pair_loss, gan_mode=gan_mode)),
        Term("disc_generated_loss", 0.5, functools.partial(
            generated_pair_loss, gan_mode=gan_mode))]
  if gan_mode == "wgangp":
    discriminator.append(Term("disc_gradient_penalty", objective.lambda_gp,
                              gradient_penalty_loss))
  return Objective(tuple(generator), tuple(discriminator))


# --- The terms ----------------------------------------------------------------


def _per_example_mean(x):
  """Mean over every axis but the batch axis: (batch, ...) -> (batch,)."""
  x = tf.cast(x, tf.float32)
  return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def _difference(views: Views) -> tf.Tensor:
  return (tf.cast(views.target_image, tf.float32) -
          tf.cast(views.generated_image, tf.float32))


def l1_loss(views: Views) -> tf.Tensor:
  """The paper's L1 distance to the target."""
  return _per_example_mean(tf.abs(_difference(views)))


def l2_loss(views: Views) -> tf.Tensor:
  """Mean squared error to the target."""
  return _per_example_mean(tf.square(_difference(views)))


def gan_loss(logits: tf.Tensor, target_is_real: bool,
             gan_mode: str = "vanilla",
             for_discriminator: bool = True) -> tf.Tensor:
  """GAN loss of one logits map, per example.

  vanilla: binary cross-entropy on logits (the paper's log D terms; for the
  generator, the non-saturating form). lsgan: least squares (Mao et al.).
  hinge: max(0, 1 -/+ D) for D, -D for G (Lim and Ye; SAGAN).
  wgangp: the Wasserstein critic, -D for real and D for generated (Gulrajani
  et al.; the gradient penalty is a term of its own).
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


def _summed_gan_loss(outputs, target_is_real, gan_mode, for_discriminator):
  return tf.add_n([gan_loss(d[0], target_is_real, gan_mode, for_discriminator)
                   for d in outputs])


def adversarial_loss(views: Views, gan_mode: str) -> tf.Tensor:
  """G's GAN term: D should take the generated pair for real."""
  return _summed_gan_loss(views.disc_generated, True, gan_mode,
                          for_discriminator=False)


def real_pair_loss(views: Views, gan_mode: str) -> tf.Tensor:
  """D's GAN term on the real pair."""
  return _summed_gan_loss(views.disc_real, True, gan_mode,
                          for_discriminator=True)


def generated_pair_loss(views: Views, gan_mode: str) -> tf.Tensor:
  """D's GAN term on the generated pair."""
  return _summed_gan_loss(views.disc_generated, False, gan_mode,
                          for_discriminator=True)


def feature_matching_loss(views: Views) -> tf.Tensor:
  """pix2pixHD's feature matching: L1 between D's activations on the real and
  the generated pair, averaged over layers and discriminators. The real
  activations are constants: only G is pulled towards them."""
  terms = []
  for real, generated in zip(views.disc_real, views.disc_generated):
    for real_features, generated_features in zip(real[1:], generated[1:]):
      terms.append(_per_example_mean(tf.abs(
          tf.stop_gradient(tf.cast(real_features, tf.float32)) -
          tf.cast(generated_features, tf.float32))))
  return tf.add_n(terms) / len(terms)


def vgg_loss(views: Views) -> tf.Tensor:
  """pix2pixHD's perceptual term: L1 between VGG19's activations on the
  generated image and on the target (constants), at relu1_1 ... relu5_1,
  weighted 1/32, 1/16, 1/8, 1/4, 1."""
  network = views.helpers["vgg"]
  generated = models.vgg_features(network, views.generated_image)
  target = models.vgg_features(network, views.target_image)
  return tf.add_n([
      weight * _per_example_mean(tf.abs(
          tf.stop_gradient(tf.cast(t, tf.float32)) - tf.cast(g, tf.float32)))
      for weight, g, t in zip(models.VGG_LAYER_WEIGHTS, generated, target)])


def gradient_penalty(gradients: tf.Tensor) -> tf.Tensor:
  """WGAN-GP's (||grad D(x_hat)||_2 - 1)^2 per example, from the gradients of
  D's summed outputs at the interpolated images."""
  gradients = tf.cast(gradients, tf.float32)
  norm = tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=[1, 2, 3]) + 1e-12)
  return tf.square(norm - 1.0)


def gradient_penalty_loss(views: Views) -> tf.Tensor:
  """WGAN-GP: D's gradient norm at random points between the real and the
  (fixed) generated image."""
  target = views.target_image
  batch = tf.shape(target)[0]
  alpha = keras.random.uniform([batch, 1, 1, 1], seed=views.noise)
  interpolated = (alpha * target +
                  (1.0 - alpha) * tf.stop_gradient(views.generated_image))
  with tf.GradientTape() as tape:
    tape.watch(interpolated)
    outputs = views.discriminate(views.input_image, interpolated)
    score = tf.add_n([tf.reduce_sum(d[0]) for d in outputs])
  return gradient_penalty(tape.gradient(score, interpolated))
