"""The one configuration object that flows from the command line into the library.

Entry points (`train.py`, `summary.py`, ...) define absl flags whose names are
exactly the field names below; `Config.from_flag_values` builds the frozen
dataclass from them, and library code reads only the dataclass. Every default
is the paper's or the reference implementation's value.
"""

import dataclasses
import json
import os
from typing import Tuple

# Stride-2 downsamplings of each generator (unet: --unet_depth).
GENERATOR_DEPTHS = {"unet_256": 8, "unet_128": 7, "resnet_9blocks": 2,
                    "resnet_6blocks": 2}
GENERATORS = ("unet_256", "unet_128", "unet", "resnet_9blocks",
              "resnet_6blocks")
DISCRIMINATORS = ("patchgan", "pixel")
# --d_receptive_fields values: the PixelGAN (1) and PatchGANs of 1..5 layers.
RECEPTIVE_FIELDS = (1, 16, 34, 70, 142, 286)
NORMS = ("batch", "instance", "sync_batch", "none")
GAN_MODES = ("vanilla", "lsgan", "hinge", "wgangp", "none")
LR_POLICIES = ("linear", "step", "cosine", "constant")
MIXED_PRECISIONS = ("auto", "none", "bf16", "fp16")
DIRECTIONS = ("AtoB", "BtoA")
STRATEGIES = ("mirrored", "one_device", "multi_worker")
INFERENCE_MODES = ("paper", "eval")
# Images that declare more pixels (width x height) are refused before they
# are decoded (--max_pixels of export, predict, serve and datasets): a file of
# a few kilobytes can declare a 20000 x 20000 image (a decompression bomb)
# that would take gigabytes to decode. 4096 x 4096 RGB is 48 MiB as uint8,
# about 200 MiB as float32.
DEFAULT_MAX_PIXELS = 4096 * 4096
# alternating: D's step, then G's against the updated D (paper, reference).
# simultaneous: both gradients from one forward pass against the old D.
UPDATE_ORDERS = ("alternating", "simultaneous")
# Where the U-Net's three dropout layers sit: paper: the first three decoder
# blocks (CD512 x3, as the original Torch code); reference: one block further
# out, as the PyTorch reference's UnetSkipConnectionBlock.
DROPOUT_PLACEMENTS = ("paper", "reference")


# The flags that define what a run's checkpoints hold and what its model
# means: a run resumed with other values would not restore, or would go on
# training another model under the old name.
MODEL_FIELDS = ("generator", "unet_depth", "ngf", "ndf", "discriminator",
                "d_layers", "num_discriminators", "d_receptive_fields",
                "conditional_discriminator", "norm", "dropout",
                "dropout_placement", "input_channels", "output_channels",
                "direction")


class ConfigError(ValueError):
  """A flag value, or a combination of them, that cannot work."""


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run needs. Field names equal the flag names."""

  # Data.
  data_dir: str = "datasets/facades"
  direction: str = "AtoB"
  load_size: int = 286
  crop_size: int = 256
  flip: bool = True
  input_channels: int = 3
  output_channels: int = 3
  shuffle_buffer: int = 0
  deterministic: bool = False
  cache: str = ""
  on_bad_image: str = "error"

  # Models.
  generator: str = "unet_256"
  unet_depth: int = 8
  ngf: int = 64
  ndf: int = 64
  discriminator: str = "patchgan"
  d_layers: int = 3
  num_discriminators: int = 1
  d_receptive_fields: str = ""
  conditional_discriminator: bool = True
  norm: str = "batch"
  dropout: float = 0.5
  dropout_placement: str = "paper"

  # Objective and optimisation.
  gan_mode: str = "vanilla"
  update_order: str = "alternating"
  lambda_l1: float = 100.0
  lambda_l2: float = 0.0
  lambda_feature_matching: float = 0.0
  lambda_gp: float = 10.0
  learning_rate: float = 2e-4
  lr_policy: str = "linear"
  lr_decay_epochs: int = 50
  beta_1: float = 0.5
  beta_2: float = 0.999
  batch_size: int = 1
  epochs: int = 100
  epochs_decay: int = 100
  max_steps: int = 0
  seed: int = 0

  # Execution.
  strategy: str = "mirrored"
  jit_compile: bool = False
  mixed_precision: str = "auto"
  steps_per_execution: int = 1

  # Outputs.
  model_dir: str = "runs/facades"
  force_config: bool = False
  checkpoint_every_steps: int = 1000
  keep_checkpoints: int = 3
  log_every_steps: int = 100
  sample_every_steps: int = 1000
  eval_every_steps: int = 1000
  num_samples: int = 4
  inference_mode: str = "paper"
  label_palette: str = ""
  segmenter: str = ""

  @classmethod
  def from_flag_values(cls, flag_values) -> "Config":
    """Builds a Config from absl FlagValues holding one flag per field."""
    return cls(**{f.name: flag_values[f.name].value
                  for f in dataclasses.fields(cls)})

  @property
  def generator_depth(self) -> int:
    """Number of stride-2 downsamplings in the U-Net generator."""
    return GENERATOR_DEPTHS.get(self.generator, self.unet_depth)

  @property
  def receptive_field_list(self) -> Tuple[int, ...]:
    """--d_receptive_fields as integers (empty when unset)."""
    try:
      return tuple(int(f) for f in self.d_receptive_fields.split(",")
                   if f.strip())
    except ValueError:
      raise ConfigError(
          f"--d_receptive_fields={self.d_receptive_fields} is not a comma-"
          "separated list of integers, e.g. 16,286.") from None

  @property
  def dataset_name(self) -> str:
    return os.path.basename(os.path.normpath(self.data_dir))

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  def model_differences(self, other: "Config") -> Tuple[str, ...]:
    """`--name: other's value -> this value` for each MODEL_FIELDS flag
    that differs between `other` (e.g. a run's recorded config) and this."""
    return tuple(f"--{name}: {getattr(other, name)} -> {getattr(self, name)}"
                 for name in MODEL_FIELDS
                 if getattr(other, name) != getattr(self, name))

  @classmethod
  def from_json(cls, text: str) -> "Config":
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in json.loads(text).items() if k in known})

  def with_flags(self, flag_text: str) -> "Config":
    """This config with `--name=value` flags applied (a flagfile's lines or a
    command line's words; `#` comments are ignored). Types follow the
    fields.

    Raises:
      ConfigError: a flag that is not a training flag, or a bad value.
    """
    import shlex
    fields = {f.name: f for f in dataclasses.fields(Config)}
    changes = {}
    words = shlex.split(flag_text, comments=True)
    for word in words:
      name, has_value, value = word.lstrip("-").partition("=")
      if name.startswith("no") and name[2:] in fields and not has_value:
        name, value = name[2:], "false"
      if name not in fields:
        raise ConfigError(f"Unknown training flag --{name}.")
      kind = type(getattr(self, name))
      try:
        if kind is bool:
          changes[name] = value.lower() in ("", "true", "1", "yes")
        else:
          changes[name] = kind(value)
      except ValueError:
        raise ConfigError(f"--{name}={value} is not a valid "
                          f"{kind.__name__}.") from None
    return dataclasses.replace(self, **changes)

  def validate(self, num_replicas: int = 1) -> "Config":
    """Checks flag values before any model is built or file written.

    Raises:
      ConfigError: naming the flag and what to do instead.
    """
    _check_choice("direction", self.direction, DIRECTIONS)
    _check_choice("generator", self.generator, GENERATORS)
    _check_choice("discriminator", self.discriminator, DISCRIMINATORS)
    _check_choice("norm", self.norm, NORMS)
    _check_choice("gan_mode", self.gan_mode, GAN_MODES)
    _check_choice("lr_policy", self.lr_policy, LR_POLICIES)
    _check_choice("strategy", self.strategy, STRATEGIES)
    _check_choice("inference_mode", self.inference_mode, INFERENCE_MODES)
    _check_choice("on_bad_image", self.on_bad_image, ("error", "skip"))
    _check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISIONS)
    _check_choice("update_order", self.update_order, UPDATE_ORDERS)
    _check_choice("dropout_placement", self.dropout_placement,
                  DROPOUT_PLACEMENTS)
    for name in ("input_channels", "output_channels"):
      _check_choice(name, getattr(self, name), (1, 3))
    for name in ("load_size", "crop_size", "batch_size", "ngf", "ndf",
                 "checkpoint_every_steps", "keep_checkpoints",
                 "num_discriminators", "lr_decay_epochs",
                 "steps_per_execution",
                 "log_every_steps", "sample_every_steps", "eval_every_steps"):
      if getattr(self, name) < 1:
        raise ConfigError(f"--{name}={getattr(self, name)} must be at least 1.")
    for name in ("epochs", "epochs_decay", "max_steps", "num_samples",
                 "shuffle_buffer"):
      if getattr(self, name) < 0:
        raise ConfigError(f"--{name}={getattr(self, name)} must not be negative.")
    if self.epochs + self.epochs_decay < 1 and self.max_steps < 1:
      raise ConfigError("--epochs plus --epochs_decay is 0 and --max_steps is "
                        "unset: nothing to train. Set one of them.")
    if not 0.0 <= self.dropout < 1.0:
      raise ConfigError(f"--dropout={self.dropout} must be in [0, 1).")
    for name in ("lambda_l1", "lambda_l2", "lambda_feature_matching",
                 "lambda_gp"):
      if getattr(self, name) < 0:
        raise ConfigError(f"--{name}={getattr(self, name)} must not be "
                          "negative.")
    if self.gan_mode == "none" and self.lambda_l1 == 0 and self.lambda_l2 == 0:
      raise ConfigError(
          "--gan_mode=none with --lambda_l1=0 and --lambda_l2=0 leaves "
          "nothing to optimise: enable the GAN loss or a distance term.")
    if self.gan_mode == "none" and self.lambda_feature_matching > 0:
      raise ConfigError(
          "--lambda_feature_matching needs a discriminator, but "
          "--gan_mode=none trains none. Choose a GAN loss or set it to 0.")
    if self.crop_size > self.load_size:
      raise ConfigError(
          f"--crop_size={self.crop_size} is larger than --load_size="
          f"{self.load_size}: images are resized to load_size before the "
          "random crop, so set --load_size >= --crop_size.")
    if self.generator == "unet" and not 2 <= self.unet_depth <= 9:
      raise ConfigError(f"--unet_depth={self.unet_depth} must be in 2..9.")
    multiple = 2 ** self.generator_depth
    if self.crop_size % multiple:
      raise ConfigError(
          f"--crop_size={self.crop_size} is not a multiple of {multiple}: "
          f"--generator={self.generator} downsamples {self.generator_depth} "
          "times. Choose a crop size that is a multiple of "
          f"{multiple}, or a shallower generator (--generator=unet "
          "--unet_depth=D).")
    self._validate_discriminators()
    if self.segmenter and not self.label_palette:
      raise ConfigError("--segmenter needs --label_palette: the palette "
                        "turns the input label maps into classes.")
    if self.batch_size % num_replicas:
      raise ConfigError(
          f"--batch_size={self.batch_size} is not divisible by the "
          f"{num_replicas} replicas of the strategy: it is the global batch, "
          "split evenly across replicas.")
    return self


  def _validate_discriminators(self):
    fields = self.receptive_field_list
    if fields:
      for field in fields:
        if field not in RECEPTIVE_FIELDS:
          raise ConfigError(
              f"--d_receptive_fields has {field}; the receptive fields "
              f"available are {', '.join(map(str, RECEPTIVE_FIELDS))}.")
      if self.num_discriminators != 1:
        raise ConfigError(
            "--d_receptive_fields and --num_discriminators both choose the "
            "discriminators; give one of them.")
      layer_counts = [RECEPTIVE_FIELDS.index(f) for f in fields]
      scales = [0] * len(fields)
      labels = [f"--d_receptive_fields={f}" for f in fields]
    else:
      if not 1 <= self.d_layers <= 5:
        raise ConfigError(f"--d_layers={self.d_layers} must be in 1..5 "
                          "(receptive fields 16, 34, 70, 142, 286).")
      layer_counts = [0 if self.discriminator == "pixel" else self.d_layers
                      ] * self.num_discriminators
      scales = list(range(self.num_discriminators))
      labels = [f"--d_layers={self.d_layers}" + (
          f" at scale 1/{2 ** k} of --num_discriminators="
          f"{self.num_discriminators}" if k else "") for k in scales]
    for n_layers, scale, label in zip(layer_counts, scales, labels):
      size = self.crop_size
      for _ in range(scale):
        size = -(-size // 2)  # Average pooling, padding "same".
      patch_map = size // 2 ** n_layers - 2 if n_layers else size
      if patch_map < 1:
        raise ConfigError(
            f"{label} is too deep for --crop_size={self.crop_size}: the "
            "discriminator's output map would be empty. Use fewer layers or "
            "scales, or larger crops.")


def _check_choice(name, value, choices):
  if value not in choices:
    listed = "|".join(str(c) for c in choices)
    raise ConfigError(f"--{name}={value} is not one of {listed}.")
