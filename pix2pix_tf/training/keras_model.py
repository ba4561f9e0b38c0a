"""pix2pix as a keras.Model, for Keras's `fit` and the callbacks Keras users
already have.

    config = pix2pix_tf.Config().replace(data_dir="datasets/facades")
    model = pix2pix_tf.Pix2Pix(config)
    model.compile()
    model.fit(model.dataset(), epochs=model.epochs,
              steps_per_epoch=model.steps_per_epoch,
              callbacks=[keras.callbacks.TensorBoard("runs/fit/logs")])
    photo = model(labels)  # The generator, on [-1, 1] images.

`train_step` is the train command's own update (`step.TrainStep`: the paper's
order, the config's objective, one Adam per network with the config's
learning-rate schedule), and `dataset()` its input pipeline, so that `fit`
and `python -m pix2pix_tf.train` given the same config and seed end with the
same weights after the same steps.
"""

import json
from typing import Dict, Optional, Tuple

import keras
import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf import data as data_lib
from pix2pix_tf import models
from pix2pix_tf.serving import saved_model
from pix2pix_tf.training import run as run_lib
from pix2pix_tf.training import state as state_lib
from pix2pix_tf.training import step as step_lib


@keras.saving.register_keras_serializable(package="pix2pix_tf")
class Pix2Pix(keras.Model):
  """G and D with their optimizers; calling the model runs G.

  Args:
    config: every option (default: the paper's, `Config()`); `options`
      replace single ones, e.g. `Pix2Pix(data_dir="datasets/maps")`.
    steps_per_epoch: steps of one epoch, for the learning-rate schedule
      (which decays over `epochs_decay` epochs after `epochs`). Default:
      the training pairs of `data_dir` divided by `batch_size`, as the
      train command counts them; 1 when `data_dir` has no train split.

  Building seeds Keras's random numbers with `config.optimisation.seed`, as
  the train command does before it builds the networks.
  """

  def __init__(self, config: Optional[config_lib.Config] = None,
               steps_per_epoch: Optional[int] = None, **options):
    super().__init__(name="pix2pix")
    config = (config or config_lib.Config()).replace(**options)
    self.config = config
    self._data = (run_lib.prepare_data(config) if steps_per_epoch is None and
                  data_lib.split_exists(config.data.data_dir, "train")
                  else None)
    self.steps_per_epoch = (self._data.steps_per_epoch if self._data else
                            steps_per_epoch or 1)
    self.epochs = config.optimisation.epochs + config.optimisation.epochs_decay
    keras.utils.set_random_seed(config.optimisation.seed)
    self.state = state_lib.create_state(
        config, self.steps_per_epoch, tf.distribute.get_strategy(),
        run_lib.total_steps(config, self.steps_per_epoch))
    self.generator = self.state.generator
    self.discriminator = self.state.discriminator
    self._update = step_lib.make_train_step(self.state, config,
                                            config.optimisation.batch_size)
    self.built = True  # G and D are; nothing is built on first call.
    # G as samples, val passes and exports run it: nothing updated.
    self._generate = models.make_generate(self.generator,
                                          config.outputs.inference_mode)
    self._trackers = {name: keras.metrics.Mean(name=name)
                      for name in self._update.metric_names}

  def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
    """G's translation of [-1, 1] images."""
    return self.generator(inputs, training=training)

  def compile(self, **kwargs) -> None:
    """Keras's compile without an optimizer or a loss: the config's
    (`train_step` updates each network with its own Adam). XLA follows
    `config.run.jit_compile`, as in the train command."""
    for name in ("optimizer", "loss"):
      if kwargs.get(name) is not None:
        raise ValueError(
            f"Pix2Pix.compile takes no {name}: the losses and the two Adam "
            "optimizers come from the config (lambda_*, lr, beta_1, ...).")
    kwargs.setdefault("jit_compile", False)
    super().compile(**kwargs)

  def dataset(self, split: str = "train") -> tf.data.Dataset:
    """(input, target) batches of `batch_size` in [-1, 1] of `split` of
    `data_dir`: for "train", the train command's stream (jittered,
    shuffled by `seed`, repeated); for another split, one pass in order
    at the training size, as the val pass reads it."""
    if split == "train":
      return data_lib.make_dataset(
          self._data.train if self._data else data_lib.open_split(
              self.config.data.data_dir, split),
          self.config, self.config.optimisation.batch_size, training=True,
          cache=self.config.data.cache)
    return data_lib.make_dataset(
        data_lib.open_split(self.config.data.data_dir, split), self.config,
        self.config.optimisation.batch_size, training=False)

  def train_step(self, data: Tuple[tf.Tensor, tf.Tensor]
                 ) -> Dict[str, tf.Tensor]:
    """One update of the paper's model; its losses by name (what the train
    command logs)."""
    metrics = self._update(data)
    self.state.step.assign_add(1)
    return self._logged(metrics, data[0])

  def export(self, filepath: str, format: str = "tf_saved_model",
             verbose: bool = True, inference_mode: Optional[str] = None
             ) -> str:
    """The generator as the train command exports it: a SavedModel with
    the project's signatures and metadata (what `pix2pix_tf.load`,
    `predict`, `serve` and TensorFlow Serving take), written atomically;
    never over a folder it did not write. `inference_mode`: "paper"
    (dropout and batch statistics, as the paper) or "eval"; default the
    config's. Returns `filepath`."""
    if format != "tf_saved_model":
      raise ValueError(
          f"Pix2Pix.export writes a SavedModel (format='tf_saved_model'), "
          f"not {format!r}: for .keras, LiteRT or ONNX files, export the "
          "SavedModel's run with python -m pix2pix_tf.export --format=...")
    exported = saved_model.export_generator(
        self.generator, self.config, int(self.state.step.numpy()),
        self.config.outputs.model_dir, filepath, inference_mode,
        flag="filepath")
    if verbose:
      print(f"Exported the generator to {exported}.")
    return exported

  def test_step(self, data: Tuple[tf.Tensor, tf.Tensor]
                ) -> Dict[str, tf.Tensor]:
    """The objective's losses on a batch, no trainable weight updated (for
    `evaluate` and `fit(validation_data=...)`): G translates as the export
    does (`inference_mode`), D judges with batch statistics as in training
    (so its moving statistics, which nothing reads, move). With
    --gan_mode=wgangp the gradient penalty draws from the step's noise,
    whose state is then put back (each batch draws the mixing the next
    training step will): validating leaves the training that follows as it
    would have been, as the train command's validation does."""
    input_image, target_image = data
    noise_state = self.state.noise.state
    noise_before = tf.identity(noise_state)
    generated_image = self._generate(input_image)
    metrics = (self._update.discriminator_losses(
        input_image, target_image, generated_image)
               if self.state.objective.discriminator else {})
    metrics.update(self._update.generator_losses(input_image, target_image,
                                                 generated_image))
    noise_state.assign(noise_before)
    return self._logged({name: metrics[name]
                         for name in self._update.metric_names}, input_image)

  def _logged(self, metrics: Dict[str, tf.Tensor],
              input_image: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The losses' means over every example since the epoch (or the
    evaluation) began, as Keras users read logs. The step divides each
    replica's per-example sum by --batch_size; the trackers take each
    replica's mean over its own examples, weighted by their number, so
    a short last batch and several replicas count exactly."""
    count = tf.cast(tf.shape(input_image)[0], tf.float32)
    batch_size = self.config.optimisation.batch_size
    for name, value in metrics.items():
      self._trackers[name].update_state(
          tf.cast(value, tf.float32) * batch_size / count, sample_weight=count)
    return {name: tracker.result() for name, tracker in
            self._trackers.items()}

  @property
  def metrics(self) -> list:
    """The loss trackers, which Keras resets at each epoch."""
    return list(self._trackers.values())

  def get_config(self) -> Dict:
    """What rebuilds this model (for `.keras` files)."""
    return {"config": self.config.flat(),
            "steps_per_epoch": self.steps_per_epoch}

  @classmethod
  def from_config(cls, config: Dict) -> "Pix2Pix":
    """The model `get_config` describes."""
    return cls(config_lib.Config.from_json(json.dumps(config["config"])),
               steps_per_epoch=config["steps_per_epoch"])
