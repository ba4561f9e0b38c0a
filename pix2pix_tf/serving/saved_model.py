"""The SavedModel that pix2pix_tf writes: export from a run (atomically, never
over a folder it did not write), and load with one-line errors.

The SavedModel needs nothing of this package to load (`tf.saved_model.load`,
`keras.layers.TFSMLayer`, TensorFlow Serving); `signatures` says what it
holds.
"""

import json
import os
from typing import Container, Optional, Tuple

import keras
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from pix2pix_tf import config as config_lib
from pix2pix_tf import errors
from pix2pix_tf import models
from pix2pix_tf import outputs
from pix2pix_tf.serving import signatures


class ExportError(errors.CommandError):
  """A missing run or checkpoint, named with what to do."""


# What tf.saved_model.save writes, and the folder TensorFlow Serving reads
# extra files from: an export folder holds nothing else.
SAVED_MODEL_ENTRIES = frozenset(
    {"saved_model.pb", "fingerprint.pb", "variables", "assets",
     "assets.extra"})


# Where the ServingModule's `metadata_json` variable sits in the SavedModel's
# variables, read without loading (and running) the graph.
METADATA_KEY = "metadata_json/.ATTRIBUTES/VARIABLE_VALUE"


def load_run_config(model_dir: str) -> config_lib.Config:
  """The Config a run recorded in <model_dir>/config.json; ExportError for a
  folder that is not a run or a config.json that cannot be read."""
  path = os.path.join(model_dir, "config.json")
  if not os.path.exists(path):
    raise ExportError(f"{path} not found: {model_dir} is not a training run "
                      "of pix2pix_tf (train one with python -m "
                      "pix2pix_tf.train --model_dir=...).")
  try:
    with open(path) as f:
      return config_lib.Config.from_json(f.read())
  except (OSError, ValueError, TypeError) as e:
    raise ExportError(
        f"{path} is not readable ({str(e).splitlines()[0][:200]}). It "
        "records the run's flags: restore it from a copy, or write it again "
        f"by resuming the run with its flags (--flagfile="
        f"{os.path.join(model_dir, 'flags.txt')}).") from None


def read_metadata(export_dir: str) -> Optional[dict]:
  """The metadata of a SavedModel that pix2pix_tf wrote, read from its
  variables; None for any folder that is not one."""
  if not os.path.exists(os.path.join(export_dir, "saved_model.pb")):
    return None
  try:
    reader = tf.train.load_checkpoint(
        os.path.join(export_dir, "variables", "variables"))
    metadata = json.loads(reader.get_tensor(METADATA_KEY))
  except (tf.errors.OpError, ValueError, KeyError):
    return None
  if not (isinstance(metadata, dict) and
          str(metadata.get("format", "")).startswith(signatures.FORMAT)):
    return None
  return metadata


def signature_defs(export_dir: str) -> dict:
  """The SignatureDef protos of a SavedModel, by signature name, as
  TensorFlow Serving reads them (with their graph tensor names)."""
  proto = saved_model_pb2.SavedModel()
  with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
    proto.ParseFromString(f.read())
  return dict(proto.meta_graphs[0].signature_def)


def resolution_of(metadata: dict, resolution: Optional[str]) -> str:
  """`resolution` if given, else the export's (exports older than native
  inference translate at the training resolution)."""
  return resolution or metadata.get("resolution", "training")


# The signatures that translate images, by the resolution they translate at
# and what they take: uint8 arrays, or encoded images.
TRANSLATE_SIGNATURES = {
    "training": {"uint8": "translate_uint8", "encoded": "translate_encoded"},
    "native": {"uint8": "translate_native",
               "encoded": "translate_encoded_native"}}


def translate_signature(signatures: Container[str], metadata: dict,
                        resolution: Optional[str], takes: str,
                        export: str = "This export") -> str:
  """The name of the export's signature that translates images at
  `resolution` (default: the export's, `resolution_of`); `takes`: "uint8"
  (arrays) or "encoded" (images). `signatures`: the export's names.

  Raises:
    ExportError: for native resolution from an export (named `export`)
      that predates it.
  """
  name = TRANSLATE_SIGNATURES[resolution_of(metadata, resolution)][takes]
  if name not in signatures:
    raise ExportError(
        f"{export} has no {name} signature (it predates native-resolution "
        "inference): export it again with python -m pix2pix_tf.export, or "
        "pass --resolution=training.")
  return name


def is_saved_model(path: str) -> bool:
  """Whether `path` is a folder holding a SavedModel."""
  return os.path.exists(os.path.join(path, "saved_model.pb"))


def load_export(saved_model: str) -> tf.Module:
  """tf.saved_model.load, with one ExportError sentence (not TensorFlow's
  pages) for a folder that is not a readable SavedModel of pix2pix_tf."""
  if not os.path.exists(os.path.join(saved_model, "saved_model.pb")):
    raise ExportError(f"{saved_model} is not a SavedModel. Export one with "
                      "python -m pix2pix_tf.export --model_dir=RUN.")
  try:
    loaded = tf.saved_model.load(saved_model)
    json.loads(loaded.metadata_json.numpy())
  except Exception as e:  # pylint: disable=broad-except
    first_line = (str(e).strip().splitlines() or [""])[0][:200]
    raise ExportError(
        f"{saved_model} could not be loaded ({type(e).__name__}: "
        f"{first_line}). It is damaged or was not written by pix2pix_tf: "
        "export it again with python -m pix2pix_tf.export.") from None
  return loaded


def is_own_export(export_dir: str) -> bool:
  """Whether `export_dir` holds a SavedModel that pix2pix_tf wrote (its
  metadata says so) and nothing else."""
  return (set(os.listdir(export_dir)) <= SAVED_MODEL_ENTRIES
          and read_metadata(export_dir) is not None)


def export_folder(export_dir: str, flag: str = "export_dir"
                  ) -> Tuple[outputs.Folder, str]:
  """(the folder holding `export_dir`, its name there), with the export
  checked: absent, empty, or a SavedModel of pix2pix_tf with nothing else
  (else outputs.OutputError naming --`flag`)."""
  return outputs.folder_output(export_dir, flag, recognize=is_own_export,
                               kind="export")


def restore_generator(config: config_lib.Config,
                      checkpoint_path: str) -> Tuple[keras.Model, int]:
  """Builds the generator and restores every one of its weights; returns
  (model, step). A checkpoint that lacks a weight or holds one of another
  shape is an ExportError: an export with weights left at their random
  initial values must never be written."""
  check_checkpoint(checkpoint_path)
  generator = models.build_generator(config)
  step = tf.Variable(0, dtype=tf.int64, trainable=False)
  checkpoint = tf.train.Checkpoint(generator=generator, step=step)
  # Every weight of the generator (and the step) must come from the file;
  # the discriminator and the optimizers in it are not needed here.
  try:
    models.restore(
        checkpoint, checkpoint_path,
        "the generator that the run's config.json describes",
        "Export from the run that wrote this checkpoint, with its own "
        "config.json.")
  except config_lib.ConfigError as e:
    raise ExportError(str(e)) from None
  return generator, int(step.numpy())


def check_checkpoint(checkpoint_path: str) -> None:
  """ExportError unless a checkpoint was written at `checkpoint_path`."""
  if not tf.io.gfile.exists(checkpoint_path + ".index"):
    raise ExportError(f"Checkpoint {checkpoint_path} not found (no "
                      f"{checkpoint_path}.index). Name one listed in the "
                      "run's checkpoints/ folder, or leave --checkpoint out "
                      "for the latest.")


def latest_checkpoint(model_dir: str) -> str:
  """The newest checkpoint of a run; ExportError when it has none."""
  folder = os.path.join(model_dir, "checkpoints")
  path = tf.train.latest_checkpoint(folder)
  if path is None:
    raise ExportError(f"No checkpoint in {folder}. Train first, or name one "
                      "with --checkpoint.")
  return path


def export(model_dir: str, export_dir: str = None, checkpoint: str = None,
           inference_mode: str = None, max_pixels: int = None,
           resolution: str = None) -> str:
  """Writes the SavedModel of a run's generator to `export_dir`.

  The SavedModel is written to a temporary folder beside `export_dir` and
  moved into place when complete: a failure never leaves a half-written
  export where a good one was.

  Returns:
    export_dir.
  """
  config = load_run_config(model_dir)
  export_dir = export_dir or os.path.join(model_dir, "export")
  export_folder(export_dir)  # Before the work, not only after it.
  checkpoint = checkpoint or latest_checkpoint(model_dir)
  generator, step = restore_generator(config, checkpoint)
  return save(generator, config, step, export_dir,
              inference_mode or config.outputs.inference_mode, max_pixels,
              resolution)


def save(generator: keras.Model, config: config_lib.Config, step: int,
         export_dir: str, inference_mode: str,
         max_pixels: Optional[int] = None,
         resolution: Optional[str] = None, flag: str = "export_dir") -> str:
  """Saves `generator` with its signatures to `export_dir`, atomically
  (built beside it, then swapped in: a failure leaves what was there); the
  metadata records `resolution` (default: what the run's --preprocess
  implies). Returns export_dir."""
  folder, name = export_folder(export_dir, flag)
  module = signatures.build_module(generator, config, step, inference_mode,
                                   max_pixels, resolution)
  folder.replace_folder(name, lambda staging: tf.saved_model.save(
      module, staging, signatures=module.signatures()), is_own_export)
  return os.path.normpath(export_dir)


def export_generator(generator: keras.Model, config: config_lib.Config,
                     step: int, model_dir: str,
                     export_dir: Optional[str] = None,
                     inference_mode: Optional[str] = None,
                     flag: str = "model_dir") -> str:
  """Exports the generator's current weights to `export_dir` (default:
  <model_dir>/export) in `inference_mode` (default: the config's)."""
  # A fresh copy outside any strategy, so the SavedModel holds plain
  # variables whatever the training strategy was.
  fresh = models.build_generator(config)
  fresh.set_weights(generator.get_weights())
  return save(fresh, config, step,
              export_dir or os.path.join(model_dir, "export"),
              inference_mode or config.outputs.inference_mode, flag=flag)


def check_export_dir(model_dir: str) -> None:
  """<model_dir>/export, which the run writes at its end, holds nothing that
  the export would destroy: checked before hours of training, not after."""
  export_folder(os.path.join(model_dir, "export"), "model_dir")
