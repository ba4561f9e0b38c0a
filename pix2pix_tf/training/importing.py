"""A run made from the reference implementation's PyTorch checkpoints
(`python -m pix2pix_tf.convert`): the weights proven equal in
models.pytorch_weights, a checkpoint at step 0 that `train` resumes from
(fine-tuning: fresh optimizers), the run's flags and an export; the
reference's published generators downloaded by name (pix2pix_tf.pretrained)."""

import os
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf import errors
from pix2pix_tf import outputs
from pix2pix_tf import pretrained
from pix2pix_tf import serving
from pix2pix_tf.data import download
from pix2pix_tf.models import pytorch_weights
from pix2pix_tf.training import run as run_lib
from pix2pix_tf.training import state as state_lib


def import_pretrained(name: str, config: config_lib.Config,
                      base_url: str = pretrained.URL,
                      sha256: Optional[str] = None, timeout: float = 60,
                      retries: int = 2) -> str:
  """Downloads the reference's generator `name` (once, into Keras's cache,
  checked against `sha256`, else against pretrained.DIGESTS' digest where
  it has one) and writes the run of `config` from it, as `import_pytorch`;
  returns the export's folder.

  Raises:
    download.DownloadError: a failed or refused download (none of it kept).
    errors.CommandError: what was downloaded is not a checkpoint (deleted).
    config_lib.ConfigError, outputs.OutputError: --model_dir cannot take a
      run (checked before the download).
  """
  check_model_dir(config)
  folder = os.path.join(download.cache_folder(), "pretrained")
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise download.DownloadError(
        f"Could not write {folder} ({e}): set KERAS_HOME to a folder you "
        "can write to.") from None
  url = f"{base_url.rstrip('/')}/{name}.pth"
  path = download.download(
      url, folder, sha256 or pretrained.DIGESTS.get(name), timeout, retries,
      by_hand=pretrained.by_hand(name),
      elsewhere="set KERAS_HOME to a folder with room")
  try:
    state = pytorch_weights.read_state_dict(path)
  except (ValueError, OSError):
    # Also a download cut short by a killed process, which get_file keeps
    # under its final name: the next run downloads it anew.
    os.remove(path)
    raise errors.CommandError(
        f"What {url} sent is not a PyTorch checkpoint that pix2pix_tf "
        "reads; it was deleted. Run the command again to download it anew; "
        f"if that fails too, check --base_url, or {pretrained.by_hand(name)}."
    ) from None
  print(f"SHA-256 of {name}.pth: {outputs.sha256(path)} (--sha256 pins "
        "it)")
  return import_pytorch(config, path, generator_state=state)


def check_model_dir(config: config_lib.Config) -> outputs.Folder:
  """--model_dir, checked to take a new run: it holds no run's checkpoints,
  nothing of the user's where a run writes, and no export that is not a
  run's."""
  checkpoints = run_lib.RunPaths(config.outputs.model_dir).checkpoints
  if tf.train.latest_checkpoint(checkpoints):
    raise config_lib.ConfigError(
        f"{config.outputs.model_dir} already holds a run's checkpoints; "
        "convert into a new --model_dir.")
  folder = run_lib.open_run_folder(config.outputs.model_dir)
  serving.check_export_dir(config.outputs.model_dir)
  return folder


def import_pytorch(config: config_lib.Config, generator_path: str,
                   discriminator_path: Optional[str] = None,
                   generator_state: Optional[Dict[str, np.ndarray]] = None
                   ) -> str:
  """Writes a run in config.outputs.model_dir from the reference's `.pth` files;
  returns its export folder.

  `generator_state`: the generator file's tensors, where they were read.

  Raises:
    config_lib.ConfigError: --model_dir already holds checkpoints.
    ValueError: a file that cannot be read safely, or that does not fit the
      architecture the flags describe (naming the tensor and the flag).
  """
  folder = check_model_dir(config)
  # Fresh optimizers at step 0: resuming this run fine-tunes the weights.
  state = state_lib.create_state(config, 1,
                                 tf.distribute.OneDeviceStrategy("/cpu:0"))
  pytorch_weights.load_weights(
      state.generator, (pytorch_weights.read_state_dict(generator_path)
                        if generator_state is None else generator_state),
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
