"""The training options and the flags generated from them.

A training option is a field of one small frozen group (`DataConfig`,
`ModelConfig`, `ObjectiveConfig`, `OptimisationConfig`, `RunConfig`,
`KernelConfig`, `OutputConfig`), declared with `option(default, help,
choices)`; `Config` composes the groups (`config.model.generator`) and
checks them together, once, when it is made. `define_flags` defines one
absl flag per option, under the option's name (train, summary, convert,
tools/benchmark.py), `Config.from_flag_values` builds the Config, and
`flag_table` writes docs/flags.md's tables, one per group. The other
commands' options are in each command's module (`options` does the same for
them). Library code reads only the Config or explicit arguments, never
flags. Every training default is the paper's or the reference's value.
"""

import dataclasses
import json
import shlex
from typing import Dict, Iterator, Optional, Sequence, Tuple

from absl import flags

from pix2pix_tf import architectures
from pix2pix_tf import errors

# define_flags's flags belong to the command that calls it (its --help).
flags.disclaim_key_flags()

DISCRIMINATORS = ("patchgan", "pixel")
NORMS = ("batch", "instance", "sync_batch", "none")
GAN_MODES = ("vanilla", "lsgan", "hinge", "wgangp", "none")
LR_POLICIES = ("linear", "step", "cosine", "constant")
MIXED_PRECISIONS = ("auto", "none", "bf16", "fp16")
DIRECTIONS = ("AtoB", "BtoA")
STRATEGIES = ("mirrored", "one_device", "multi_worker")
INFERENCE_MODES = ("paper", "eval")
# The reference's --preprocess modes (see data.transforms.preprocess).
PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width",
                    "scale_width_and_crop", "none")
# --resolution of inference (see data.transforms.implied_resolution).
RESOLUTIONS = ("native", "training")
# What `evaluate --metrics` computes (fid and kid need Inception weights).
METRICS = ("l1", "mse", "psnr", "ssim", "pixel_accuracy", "color", "fid",
           "kid")
# --max_pixels: a few kilobytes can declare a 20000 x 20000 image that takes
# gigabytes to decode; 4096 x 4096 RGB is 48 MiB uint8, 192 MiB float32.
DEFAULT_MAX_PIXELS = 4096 * 4096
# Seconds a connection may stay silent and a request wait (serve, study).
DEFAULT_REQUEST_TIMEOUT = 30.0
UPDATE_ORDERS = ("alternating", "simultaneous")
DROPOUT_PLACEMENTS = ("paper", "reference")
BAD_IMAGE_MODES = ("error", "skip")


# The flags that define what a run's checkpoints hold and what its model
# means: a run resumed with other values would not restore, or would go on
# training another model under the old name.
MODEL_FIELDS = ("generator", "unet_depth", "ngf", "ndf", "discriminator",
                "d_layers", "num_discriminators", "d_receptive_fields",
                "conditional_discriminator", "norm", "dropout",
                "dropout_placement", "input_channels", "output_channels",
                "direction")


class ConfigError(errors.CommandError):
  """A flag value, or a combination of them, that cannot work."""


def option(default: object, help: str,  # pylint: disable=redefined-builtin
           choices: Optional[Sequence] = None) -> dataclasses.Field:
  """An option (a field of a Config group) with what its flag needs: the
  default, the help text and, for an enum, the choices. `define_flags` and the
  flag table of docs/flags.md are generated from these, so an option is one
  edit."""
  return dataclasses.field(default=default, metadata={
      "help": help, "choices": tuple(choices) if choices else None})


def _check_ranges(options: Dict[str, object]) -> None:
  """The counts that must be positive, and those that must not be
  negative (the terms' weights among them)."""
  for name in ("load_size", "crop_size", "batch_size", "ngf", "ndf",
               "checkpoint_every_steps", "keep_checkpoints",
               "num_discriminators", "lr_decay_epochs", "steps_per_execution",
               "max_pixels", "log_every_steps", "sample_every_steps",
               "eval_every_steps"):
    if options[name] < 1:
      raise ConfigError(f"--{name}={options[name]} must be at least 1.")
  for name in ("epochs", "epochs_decay", "max_steps", "num_samples",
               "shuffle_buffer") + tuple(
                   n for n in options if n.startswith("lambda_")):
    if options[name] < 0:
      raise ConfigError(f"--{name}={options[name]} must not be negative.")


def _check_choice(name, value, choices):
  if value not in choices:
    listed = "|".join(str(c) for c in choices)
    raise ConfigError(f"--{name}={value} is not one of {listed}.")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The data: where the pairs are, how they are read, jittered and checked."""

  data_dir: str = option(
      "datasets/facades",
      "Folder with train/ (and optionally val/, test/) subfolders of A|B "
      "image pairs (.jpg, .jpeg, .png, .bmp).")
  direction: str = option(
      "AtoB",
      "AtoB translates the left half into the right half; BtoA the reverse.",
      choices=DIRECTIONS)
  preprocess: str = option(
      "resize_and_crop",
      "Training preprocessing, as the reference's: resize_and_crop (each "
      "half to load_size x load_size, then a random crop_size square), crop "
      "(a random crop_size square, unscaled), scale_width (the width to "
      "load_size, aspect kept), scale_width_and_crop (then a random "
      "square), none (sizes kept). Sizes without a crop follow "
      "--size_policy.",
      choices=PREPROCESS_MODES)
  size_policy: str = option(
      "pad",
      "--preprocess without a crop: a half whose size is not a multiple of "
      "2**generator depth is reflect-padded to the next (pad), or stops the "
      "run naming it and the nearest valid size (reject).",
      choices=("pad", "reject"))
  load_size: int = option(
      286,
      "The size --preprocess resizes each half to (both sides, or the "
      "width for scale_width*).")
  crop_size: int = option(
      256,
      "Training crop size; the size the networks are trained at. A multiple "
      "of 2**generator depth.")
  flip: bool = option(True, "Random horizontal mirroring in training.")
  input_channels: int = option(
      3, "Channels of the input image: 3 (RGB) or 1 (grayscale).",
      choices=(1, 3))
  output_channels: int = option(
      3, "Channels of the target image: 3 (RGB) or 1.", choices=(1, 3))
  shuffle_buffer: int = option(
      0,
      "Training shuffle buffer, in elements: file names for a folder, "
      "records for TFRecords, decoded pairs with --cache. 0: the whole split "
      "(a full shuffle each epoch, as the reference); for large TFRecord "
      "datasets set a number, as the buffer holds the records' bytes.")
  cache: str = option(
      "",
      "Cache the training split's decoded pairs: 'memory', or a file path "
      "prefix for a disk cache, one file per split and configuration "
      "(PREFIX-<digest>). Val data is never cached. Empty: no cache.")
  on_bad_image: str = option(
      "error",
      "error: stop at an unreadable image, naming it; skip: name each bad "
      "image once, count them in TensorBoard, and train on the rest.",
      choices=BAD_IMAGE_MODES)
  max_pixels: int = option(
      DEFAULT_MAX_PIXELS, "Images whose header declares more pixels (width x "
      "height) are refused before they are decoded (or skipped, as bad "
      "images are, with --on_bad_image=skip).")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The networks: generator, discriminators, normalisation, dropout."""

  generator: str = option(architectures.PAPER_GENERATOR,
                          architectures.generator_help(),
                          choices=architectures.GENERATORS)
  unet_depth: int = option(8, "Downsamplings of --generator=unet.")
  ngf: int = option(64, "Generator filters in the first layer.")
  ndf: int = option(64, "Discriminator filters in the first layer.")
  discriminator: str = option(
      "patchgan",
      "patchgan, or pixel (1x1 receptive field).",
      choices=DISCRIMINATORS)
  d_layers: int = option(
      3, "PatchGAN stride-2 layers: {} give receptive fields {}.".format(
          ", ".join(map(str, architectures.PATCHGAN_FIELDS)),
          ", ".join(map(str, architectures.PATCHGAN_FIELDS.values()))))
  num_discriminators: int = option(
      1,
      "Multi-scale discriminator (pix2pixHD): K discriminators, the k-th on "
      "the pair downsampled 2^k times; their losses are summed.")
  d_receptive_fields: str = option(
      "",
      "Discriminators given by receptive field, all at full resolution, "
      "losses summed: e.g. 16,286. Fields: "
      f"{', '.join(map(str, architectures.RECEPTIVE_FIELDS))}.")
  conditional_discriminator: bool = option(
      True,
      "D sees the input with the candidate (cGAN); false: the candidate "
      "alone (the paper's unconditional GAN).")
  norm: str = option(
      "batch",
      "Normalisation in both networks. instance is "
      "keras.layers.GroupNormalization(groups=-1); sync_batch synchronises "
      "batch statistics across replicas.",
      choices=NORMS)
  dropout: float = option(
      0.5,
      "Dropout rate of the U-Net's three dropout layers (the paper's only "
      "noise source).")
  dropout_placement: str = option(
      "paper",
      "paper: dropout in the first three decoder blocks (the paper's CD512 "
      "x3, the original Torch code); reference: one block further out, as "
      "the PyTorch reference's U-Net (for runs and imported models that "
      "match it exactly).",
      choices=DROPOUT_PLACEMENTS)

  @property
  def generator_depth(self) -> int:
    """Number of stride-2 downsamplings in the generator."""
    generator = architectures.GENERATORS.get(self.generator)
    return getattr(generator, "depth", None) or self.unet_depth

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


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
  """The objective: the GAN loss, the update order and each term's weight."""

  gan_mode: str = option(
      "vanilla",
      "vanilla: the paper's cGAN loss (BCE on logits); lsgan: least squares; "
      "hinge; wgangp: Wasserstein with gradient penalty; none: no "
      "discriminator (distance terms only).",
      choices=GAN_MODES)
  update_order: str = option(
      "alternating",
      "alternating: one D step, then one G step against the updated D (the "
      "paper and the reference); simultaneous: both gradients from one "
      "forward pass against the old D (one D forward cheaper; for "
      "comparison).",
      choices=UPDATE_ORDERS)
  lambda_l1: float = option(100.0, "Weight of the L1 term (0 disables it).")
  lambda_l2: float = option(
      0.0, "Weight of the L2 (mean squared error) term (0 disables it).")
  lambda_feature_matching: float = option(
      0.0,
      "Weight of pix2pixHD's discriminator feature-matching term (0 disables "
      "it).")
  lambda_gp: float = option(
      10.0, "Weight of the gradient penalty with --gan_mode=wgangp.")
  lambda_vgg: float = option(0.0, "Weight of pix2pixHD's VGG19 perceptual "
                             "term (0 disables it; pix2pixHD's 10 was for "
                             "other weights and input scale).")
  vgg_weights: str = option("", "Keras's VGG19 notop .h5 for --lambda_vgg.")


@dataclasses.dataclass(frozen=True)
class OptimisationConfig:
  """Adam, its learning-rate schedule, the batch, the run's length, seed."""

  learning_rate: float = option(
      2e-4, "Learning rate of both networks' Adam (PyTorch's, eps 1e-8).")
  lr_policy: str = option(
      "linear",
      "linear: the reference's, constant for --epochs, then lower after "
      "each of --epochs_decay epochs; step: x0.1 every --lr_decay_epochs; "
      "cosine: to 0 over the run; constant.",
      choices=LR_POLICIES)
  lr_decay_epochs: int = option(
      50, "Epochs between x0.1 steps of --lr_policy=step.")
  beta_1: float = option(0.5, "Adam beta_1.")
  beta_2: float = option(0.999, "Adam beta_2.")
  batch_size: int = option(1, "Global batch size, split across replicas.")
  epochs: int = option(100, "Epochs at the initial learning rate.")
  epochs_decay: int = option(
      100, "Epochs of linear decay of the learning rate (to 1/(n+1) of it).")
  max_steps: int = option(0, "Stop after this many steps (0: run every epoch).")
  seed: int = option(0, "Seed of weights, dropout, shuffling and jitter.")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Devices, precision, compilation and determinism."""

  strategy: str = option(
      "mirrored",
      "mirrored: all local GPUs, else the CPU; one_device; multi_worker: "
      "MultiWorkerMirroredStrategy from TF_CONFIG.",
      choices=STRATEGIES)
  jit_compile: bool = option(
      False, "Compile the forward and backward passes with XLA.")
  mixed_precision: str = option(
      "auto",
      "Compute dtype of the layers: none (float32), bf16, fp16 with loss "
      "scaling, or auto (this kind of machine's choice: bf16 on GPUs of "
      "compute capability 8.0+ and CPUs with AMX or AVX-512 BF16, else "
      "none). Variables, the tanh output, the discriminator logits "
      "and the losses stay float32.",
      choices=MIXED_PRECISIONS)
  steps_per_execution: int = option(1, "Training steps per tf.function call.")
  deterministic: bool = option(
      False,
      "Bit-identical runs: fixed element order in the input pipeline, "
      "deterministic kernels and one op at a time (slower). --seed alone "
      "fixes the weights' init, dropout, shuffling and jitter.")


@dataclasses.dataclass(frozen=True)
class KernelConfig:
  """Which kernels train the networks (pix2pix_tf.kernels), not what they
  compute. Unset: this kind of machine's default (kernels.machines)."""

  fused_updates: Optional[bool] = option(
      None,
      "Adam as TensorFlow's one fused kernel per variable (the same "
      "arithmetic, less memory traffic); false: Keras's ops.")
  fused_batch_norm: Optional[bool] = option(
      None,
      "Batch norm as TensorFlow's fused kernels (Keras's arithmetic and "
      "variables); false: Keras's separate float32 ops.")
  matmul_small_convs: Optional[bool] = option(
      None,
      "Without a GPU, train strided convolutions over small maps (at most "
      "1,024 positions over the batch) as matrix multiplies over image "
      "patches: the same sums as TensorFlow's convolution kernels; false, "
      "or with a GPU: the kernels.")
  compiled_activations: Optional[bool] = option(
      None,
      "Without a GPU, train bfloat16 LeakyReLU and ReLU layers as "
      "XLA-compiled programs (TensorFlow's values); false, with a GPU or "
      "in float32: TensorFlow's kernels.")


@dataclasses.dataclass(frozen=True)
class OutputConfig:
  """What a run writes, where and how often; what its val pass scores."""

  model_dir: str = option(
      "runs/facades",
      "Where checkpoints, logs, samples and flags are written.")
  force_config: bool = option(
      False,
      "Resume a --model_dir even though the model flags (architecture, "
      "channels, direction) differ from the ones it was trained with; the "
      "new ones are recorded.")
  init_from: str = option(
      "",
      "Fine-tune: a new run starts from another run's generator (and "
      "discriminator, where it has one of this architecture): a run folder "
      "(its latest checkpoint) or a checkpoint path; fresh optimizers, "
      "step 0. Ignored when --model_dir already holds checkpoints.")
  checkpoint_every_steps: int = option(
      1000, "Save a checkpoint every this many steps (and at the end).")
  keep_checkpoints: int = option(3, "How many recent checkpoints to keep.")
  log_every_steps: int = option(
      100, "Write training scalars every this many steps.")
  sample_every_steps: int = option(
      1000, "Write an input | generated | target grid every this many steps.")
  eval_every_steps: int = option(
      1000, "Evaluate on the val split every this many steps.")
  num_samples: int = option(
      4, "Examples in the sample grid (from val, else train).")
  profile_steps: str = option(
      "", "FIRST,LAST: trace training steps FIRST to LAST with TensorFlow's "
      "profiler, into logs/train (TensorBoard's Profile tab, from the "
      "tensorboard-plugin-profile package).")
  inference_mode: str = option(
      "paper",
      "How samples and val metrics run the generator. paper: dropout on and "
      "batch statistics, as the paper; eval: moving statistics, no dropout.",
      choices=INFERENCE_MODES)
  label_palette: str = option(
      "",
      "For label-map datasets (cityscapes, facades, or a palette JSON file): "
      "also log the segmentation scores of photo -> labels, or with "
      "--segmenter the FCN-score of labels -> photo, at each evaluation.")
  segmenter: str = option(
      "",
      "A segmenter SavedModel (python -m pix2pix_tf.segmenter) for the "
      "FCN-score during training.")

  @property
  def profiled_steps(self) -> Tuple[int, ...]:
    """--profile_steps as (first, last); empty when unset."""
    try:
      steps = tuple(int(s) for s in self.profile_steps.split(",") if s.strip())
    except ValueError:
      steps = (0,)
    if steps and (len(steps) != 2 or not 1 <= steps[0] <= steps[1]):
      raise ConfigError(f"--profile_steps={self.profile_steps} is not "
                        "FIRST,LAST with 1 <= FIRST <= LAST, e.g. 10,15.")
    return steps


# Config's groups by attribute name, in order (docs/flags.md's tables).
GROUPS = {"data": DataConfig, "model": ModelConfig,
          "objective": ObjectiveConfig, "optimisation": OptimisationConfig,
          "run": RunConfig, "kernels": KernelConfig, "outputs": OutputConfig}


def option_fields() -> Iterator[Tuple[str, dataclasses.Field]]:
  """(group name, field) for every training option, in Config's order."""
  for name, group in GROUPS.items():
    for field in dataclasses.fields(group):
      yield name, field


# Each option's group, by the option's (and its flag's) name.
GROUP_OF = {field.name: group for group, field in option_fields()}


def _grouped(values: Dict[str, object]) -> Dict[str, object]:
  """Each group, by name, of the options in `values` (the defaults of
  those it does not hold; those it holds that are not options: ignored)."""
  return {name: group(**{f.name: values.get(f.name, f.default)
                         for f in dataclasses.fields(group)})
          for name, group in GROUPS.items()}


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a training run needs, in groups (`config.data.crop_size`),
  option names being flag names. Made from flags (`from_flag_values`,
  `with_flags`) or in code (`Config().replace(crop_size=128)`), and
  checked once, when made."""

  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  objective: ObjectiveConfig = dataclasses.field(
      default_factory=ObjectiveConfig)
  optimisation: OptimisationConfig = dataclasses.field(
      default_factory=OptimisationConfig)
  run: RunConfig = dataclasses.field(default_factory=RunConfig)
  kernels: KernelConfig = dataclasses.field(default_factory=KernelConfig)
  outputs: OutputConfig = dataclasses.field(default_factory=OutputConfig)

  @classmethod
  def from_flag_values(cls, flag_values: flags.FlagValues) -> "Config":
    """Builds a Config from absl FlagValues that `define_flags` filled."""
    return cls(**_grouped({name: flag_values[name].value
                           for name in GROUP_OF}))

  def replace(self, **options) -> "Config":
    """This config with the options given by name (the flags' names, e.g.
    `crop_size=128`) in place of its values, checked as a new Config
    (`dataclasses.replace(config, data=...)` replaces a whole group).

    Raises:
      ConfigError: an unknown option, or a value that cannot work.
    """
    changed: Dict[str, Dict[str, object]] = {}
    for name, value in options.items():
      if name not in GROUP_OF:
        raise ConfigError(f"Unknown training option {name!r}.")
      changed.setdefault(GROUP_OF[name], {})[name] = value
    return dataclasses.replace(self, **{
        group: dataclasses.replace(getattr(self, group), **values)
        for group, values in changed.items()})

  def flat(self) -> Dict[str, object]:
    """Every option's value by its name, across the groups."""
    return {field.name: getattr(getattr(self, group), field.name)
            for group, field in option_fields()}

  def to_json(self) -> str:
    """Every option, as the run's config.json records them."""
    return json.dumps(self.flat(), indent=2, sort_keys=True)

  def model_differences(self, other: "Config") -> Tuple[str, ...]:
    """`--name: other's value -> this value` for each MODEL_FIELDS flag
    that differs between `other` (e.g. a run's recorded config) and this."""
    mine, theirs = self.flat(), other.flat()
    return tuple(f"--{name}: {theirs[name]} -> {mine[name]}"
                 for name in MODEL_FIELDS if theirs[name] != mine[name])

  @classmethod
  def from_json(cls, text: str, **overrides) -> "Config":
    """The Config a run or an export recorded (config.json), with
    `overrides` (e.g. another data_dir) in place of recorded values. Read
    as it was written, not checked again: the checks are for the flags of a
    new run, and a record from another version, or edited, is still read
    (what it cannot build is refused where it is used). Options it does
    not know are ignored."""
    config = object.__new__(cls)  # Unchecked: __post_init__ is not run.
    for name, group in _grouped({**json.loads(text), **overrides}).items():
      object.__setattr__(config, name, group)
    return config

  def with_flags(self, flag_text: str) -> "Config":
    """This config with `--name=value` flags applied (a flagfile's lines or a
    command line's words; `#` comments are ignored), parsed by absl as the
    train command parses them.

    Raises:
      ConfigError: a flag that is not a training flag, or a bad value.
    """
    flag_values = flags.FlagValues()
    define_flags(flag_values, self)
    words = shlex.split(flag_text, comments=True)
    try:
      flag_values(["with_flags"] + words, known_only=False)
    except flags.UnrecognizedFlagError as e:
      raise ConfigError(f"Unknown training flag --{e.flagname}.") from None
    except flags.Error as e:
      raise ConfigError(str(e)) from None
    return Config.from_flag_values(flag_values)

  def __post_init__(self):
    """Checks the values when the config is made (flags, a flagfile, code,
    `replace`), before any model is built or file written. What depends on
    the machine (the replicas, files a loss term reads) is checked when a
    run starts (training.check_run); `from_json` reads a record unchecked.

    Raises:
      ConfigError: naming the flag and what to do instead.
    """
    options = self.flat()
    for _, field in option_fields():
      if field.metadata["choices"]:
        _check_choice(field.name, options[field.name],
                      field.metadata["choices"])
    _check_ranges(options)
    self.outputs.profiled_steps  # pylint: disable=pointless-statement
    optimisation, objective = self.optimisation, self.objective
    if (optimisation.epochs + optimisation.epochs_decay < 1 and
        optimisation.max_steps < 1):
      raise ConfigError("--epochs plus --epochs_decay is 0 and --max_steps is "
                        "unset: nothing to train. Set one of them.")
    if not 0.0 <= self.model.dropout < 1.0:
      raise ConfigError(f"--dropout={self.model.dropout} must be in [0, 1).")
    if objective.gan_mode == "none" and not (objective.lambda_l1 or
                                             objective.lambda_l2):
      raise ConfigError(
          "--gan_mode=none with --lambda_l1=0 and --lambda_l2=0 leaves "
          "nothing to optimise: enable the GAN loss or a distance term.")
    if objective.gan_mode == "none" and objective.lambda_feature_matching > 0:
      raise ConfigError(
          "--lambda_feature_matching needs a discriminator, but "
          "--gan_mode=none trains none. Choose a GAN loss or set it to 0.")
    _check_sizes(self.data, self.model)
    _check_discriminators(self.model, self.data.crop_size)
    if self.outputs.segmenter and not self.outputs.label_palette:
      raise ConfigError("--segmenter needs --label_palette: the palette "
                        "turns the input label maps into classes.")


def _check_sizes(data: DataConfig, model: ModelConfig) -> None:
  """Crop, load and generator sizes that fit together."""
  if data.crop_size > data.load_size and data.preprocess in (
      "resize_and_crop", "scale_width_and_crop"):
    raise ConfigError(
        f"--crop_size={data.crop_size} is larger than --load_size="
        f"{data.load_size}: images are resized to load_size before the "
        "random crop, so set --load_size >= --crop_size.")
  uses_unet_depth = architectures.GENERATORS[model.generator].depth is None
  if uses_unet_depth and not 2 <= model.unet_depth <= 9:
    raise ConfigError(f"--unet_depth={model.unet_depth} must be in 2..9.")
  multiple = 2 ** model.generator_depth
  if data.crop_size % multiple:
    raise ConfigError(
        f"--crop_size={data.crop_size} is not a multiple of {multiple}: "
        f"--generator={model.generator} downsamples {model.generator_depth} "
        "times. Choose a crop size that is a multiple of "
        f"{multiple}, or a shallower generator (--generator=unet "
        "--unet_depth=D).")
  if data.preprocess == "scale_width" and data.load_size % multiple:
    nearest = max(multiple, round(data.load_size / multiple) * multiple)
    raise ConfigError(
        f"--preprocess=scale_width makes every half --load_size="
        f"{data.load_size} wide, not a multiple of {multiple} as "
        f"--generator={model.generator} needs: set --load_size to one "
        f"(e.g. {nearest}).")


def _check_discriminators(model: ModelConfig, crop_size: int) -> None:
  """Discriminators that are available and leave a non-empty patch map."""
  fields = model.receptive_field_list
  if fields:
    for field in fields:
      if field not in architectures.RECEPTIVE_FIELDS:
        raise ConfigError(
            f"--d_receptive_fields has {field}; the receptive fields "
            "available are "
            f"{', '.join(map(str, architectures.RECEPTIVE_FIELDS))}.")
    if model.num_discriminators != 1:
      raise ConfigError(
          "--d_receptive_fields and --num_discriminators both choose the "
          "discriminators; give one of them.")
    layer_counts = [architectures.RECEPTIVE_FIELDS[f] for f in fields]
    scales = [0] * len(fields)
    labels = [f"--d_receptive_fields={f}" for f in fields]
  else:
    patchgans = architectures.PATCHGAN_FIELDS
    if model.d_layers not in patchgans:
      raise ConfigError(
          f"--d_layers={model.d_layers} must be in {min(patchgans)}.."
          f"{max(patchgans)} (receptive fields "
          f"{', '.join(map(str, patchgans.values()))}).")
    n_layers = 0 if model.discriminator == "pixel" else model.d_layers
    layer_counts = [n_layers] * model.num_discriminators
    scales = list(range(model.num_discriminators))
    labels = [f"--d_layers={model.d_layers}" + (
        f" at scale 1/{2 ** k} of --num_discriminators="
        f"{model.num_discriminators}" if k else "") for k in scales]
  for n_layers, scale, label in zip(layer_counts, scales, labels):
    size = -(-crop_size // 2 ** scale)  # Pooling, padding "same".
    patch_map = size // 2 ** n_layers - 2 if n_layers else size
    if patch_map < 1:
      raise ConfigError(
          f"{label} is too deep for --crop_size={crop_size}: the "
          "discriminator's output map would be empty. Use fewer layers or "
          "scales, or larger crops.")


def flag_help(field: dataclasses.Field) -> str:
  """A field's --help text, with its choices as absl shows an enum's."""
  text, choices = field.metadata["help"], field.metadata["choices"]
  if choices and field.type is str:
    return f"<{'|'.join(choices)}>: {text}"
  if field.type == Optional[bool]:
    return f"Unset: this kind of machine's default. {text}"
  return text  # An int's choices are in its help text (checked when made).


def markdown_row(name: str, default: object, text: str) -> str:
  """A row of docs/flags.md's flag tables."""
  if isinstance(default, bool):
    default = str(default).lower()
  elif isinstance(default, list):
    default = ",".join(default)
  elif default == "":
    default = '""'
  elif default is None:
    default = "—"
  return f"| `--{name}` | `{default}` | {text.replace('|', chr(92) + '|')} |"


TABLE_HEAD = ["| flag | default | meaning |", "|---|---|---|"]


def option_groups() -> Dict[str, Tuple[str, ...]]:
  """Each of `GROUPS`' names -> its options' names, in Config's order."""
  return {name: tuple(f.name for f in dataclasses.fields(group))
          for name, group in GROUPS.items()}


KERNEL_OPTIONS = tuple(f.name for f in dataclasses.fields(KernelConfig))


def flag_table() -> str:
  """docs/flags.md's training flags: per group, a heading and one Markdown
  row per option."""
  return "\n".join(
      f"### {name.capitalize()}\n\n" + "\n".join(TABLE_HEAD + [
          markdown_row(f.name, f.default, flag_help(f))
          for f in dataclasses.fields(group)]) + "\n"
      for name, group in GROUPS.items())


def define_one_flag(flag_values: flags.FlagValues, name: str, kind: type,
                    default: object, text: str,
                    choices: Optional[Sequence], **kwargs) -> None:
  """One absl flag: DEFINE_bool, _integer, _float, _list, _enum (a str
  with choices; absl shows them in front of its help) or _string."""
  if kind is str and choices:
    flags.DEFINE_enum(name, default, choices, text, flag_values=flag_values,
                      **kwargs)
    return
  define = {bool: flags.DEFINE_bool, Optional[bool]: flags.DEFINE_bool,
            int: flags.DEFINE_integer, float: flags.DEFINE_float,
            list: flags.DEFINE_list}.get(kind, flags.DEFINE_string)
  define(name, default, text, flag_values=flag_values, **kwargs)


def define_flags(flag_values: Optional[flags.FlagValues] = None,
                 defaults: Config = Config()) -> None:
  """Defines one absl flag per training option, from its field's metadata:
  DEFINE_bool, _integer, _float, _enum (str fields with choices) or _string,
  with `defaults`' values as the defaults.

  Args:
    flag_values: where to define them (default: absl's global FLAGS).
    defaults: the Config whose values become the flags' defaults.
  """
  flag_values = flags.FLAGS if flag_values is None else flag_values
  values = defaults.flat()
  for _, field in option_fields():
    # An int's choices are checked when a Config is made, named in its help.
    define_one_flag(flag_values, field.name, field.type,
                    values[field.name], field.metadata["help"]
                    if field.type is str else flag_help(field),
                    field.metadata["choices"])
