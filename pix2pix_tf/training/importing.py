"""A run made from the reference implementation's PyTorch checkpoints
(`python -m pix2pix_tf.convert`): the weights proven equal in
models.pytorch_weights, a checkpoint at step 0 that `train` resumes from
(fine-tuning: fresh optimizers), the run's flags and an export."""

from typing import Optional

import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf import serving
from pix2pix_tf.models import pytorch_weights
from pix2pix_tf.training import run as run_lib
from pix2pix_tf.training import state as state_lib


def import_pytorch(config: config_lib.Config, generator_path: str,
                   discriminator_path: Optional[str] = None) -> str:
  """Writes a run in config.outputs.model_dir from the reference's `.pth` files;
  returns its export folder.

  Raises:
    config_lib.ConfigError: --model_dir already holds checkpoints.
    ValueError: a file that cannot be read safely, or that does not fit the
      architecture the flags describe (naming the tensor and the flag).
  """
  checkpoints = run_lib.RunPaths(config.outputs.model_dir).checkpoints
  if tf.train.latest_checkpoint(checkpoints):
    raise config_lib.ConfigError(
        f"{config.outputs.model_dir} already holds a run's checkpoints; "
        "convert into a new --model_dir.")
  folder = run_lib.open_run_folder(config.outputs.model_dir)
  serving.check_export_dir(config.outputs.model_dir)
  # Fresh optimizers at step 0: resuming this run fine-tunes the weights.
  state = state_lib.create_state(config, 1,
                                 tf.distribute.OneDeviceStrategy("/cpu:0"))
  pytorch_weights.load_weights(
      state.generator, pytorch_weights.read_state_dict(generator_path),
      pytorch_weights.generator_layers(config), generator_path)
  if discriminator_path:
    layers = pytorch_weights.discriminator_layers(config)
    pytorch_weights.load_weights(
        state.discriminator.discriminators[0],
        pytorch_weights.read_state_dict(discriminator_path), layers,
        discriminator_path)
  run_lib.write_run_config(config, folder)
  tf.train.CheckpointManager(state.checkpoint(), folder.claim("checkpoints"),
                             max_to_keep=config.outputs.keep_checkpoints,
                             step_counter=state.step).save(0)
  return serving.export_generator(state.generator, config, 0,
                                  config.outputs.model_dir)
