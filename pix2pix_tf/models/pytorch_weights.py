"""The reference implementation's PyTorch checkpoints as Keras weights:
which module's tensors become which layer's, read without PyTorch
(`torch_files`).
"""

from typing import Dict, List, Tuple

import keras
import numpy as np

from pix2pix_tf import architectures
from pix2pix_tf import config as config_lib
from pix2pix_tf import errors
from pix2pix_tf.models.torch_files import (  # What the importers use.
    UnsafeCheckpointError, read_state_dict)


# A ResNet block's modules shift by one with dropout: the flag to check.
RESNET_DROPOUT = ("--dropout (0 for a file saved with the reference's "
                  "--no_dropout, as CycleGAN's are)")

# How a reference layer's tensors become a Keras layer's weights.
CONV, CONV_TRANSPOSE, NORM = "conv", "conv_transpose", "norm"


def unet_layers(depth: int) -> List[Tuple[str, str, str]]:
  """(reference module name, Keras layer name, kind) of the reference's
  UnetGenerator with `depth` downsamplings (`num_downs`).

  The reference nests one UnetSkipConnectionBlock per level in the next
  one's nn.Sequential: the outermost is [downconv, submodule, uprelu,
  upconv, tanh], a middle one [downrelu, downconv, downnorm, submodule,
  uprelu, upconv, upnorm(, dropout)], the innermost [downrelu, downconv,
  uprelu, upconv, upnorm]; so level k's modules sit under `model.model.`
  + `1.model.` + `3.model.` * (k - 1).
  """
  names = [("model.model.0", "down0_conv", CONV),
           ("model.model.3", "up0_conv", CONV_TRANSPOSE)]
  prefix = "model.model.1.model."
  for level in range(1, depth):
    if level < depth - 1:
      names += [(prefix + "1", f"down{level}_conv", CONV),
                (prefix + "2", f"down{level}_norm", NORM),
                (prefix + "5", f"up{level}_conv", CONV_TRANSPOSE),
                (prefix + "6", f"up{level}_norm", NORM)]
      prefix += "3.model."
    else:  # Innermost.
      names += [(prefix + "1", f"down{level}_conv", CONV),
                (prefix + "3", f"up{level}_conv", CONV_TRANSPOSE),
                (prefix + "4", f"up{level}_norm", NORM)]
  return names


def resnet_layers(n_blocks: int, dropout: bool
                  ) -> List[Tuple[str, str, str]]:
  """(reference module name, Keras layer name, kind) of the reference's
  ResnetGenerator: one nn.Sequential of [pad, conv7, norm, relu], two
  [conv, norm, relu] downsamplings, `n_blocks` ResnetBlocks (conv_block:
  [pad, conv, norm, relu, (dropout,) pad, conv, norm]), two [convT, norm,
  relu] upsamplings, [pad, conv7, tanh]."""
  names = [("model.1", "in_conv", CONV), ("model.2", "in_norm", NORM),
           ("model.4", "down0_conv", CONV), ("model.5", "down0_norm", NORM),
           ("model.7", "down1_conv", CONV), ("model.8", "down1_norm", NORM)]
  second = (6, 7) if dropout else (5, 6)
  for b in range(n_blocks):
    block = f"model.{10 + b}.conv_block."
    names += [(block + "1", f"block{b}_conv0", CONV),
              (block + "2", f"block{b}_norm0", NORM),
              (block + str(second[0]), f"block{b}_conv1", CONV),
              (block + str(second[1]), f"block{b}_norm1", NORM)]
  up = 10 + n_blocks
  names += [(f"model.{up}", "up0_conv", CONV_TRANSPOSE),
            (f"model.{up + 1}", "up0_norm", NORM),
            (f"model.{up + 3}", "up1_conv", CONV_TRANSPOSE),
            (f"model.{up + 4}", "up1_norm", NORM),
            (f"model.{up + 7}", "out_conv", CONV)]
  return names


def patchgan_layers(n_layers: int) -> List[Tuple[str, str, str]]:
  """(reference module name, Keras layer name, kind) of the reference's
  NLayerDiscriminator: one nn.Sequential of conv, lrelu, then [conv, norm,
  lrelu] per layer (the last at stride 1), and the one-channel conv."""
  names = [("model.0", "conv0", CONV)]
  for i in range(1, n_layers + 1):
    names += [(f"model.{3 * i - 1}", f"conv{i}", CONV),
              (f"model.{3 * i}", f"conv{i}_norm", NORM)]
  return names + [(f"model.{3 * n_layers + 2}", "logits", CONV)]


def keras_weights(state: Dict[str, np.ndarray], module: str, kind: str
                  ) -> List[np.ndarray]:
  """A reference module's tensors in the order and layout of the Keras
  layer's weights; [] for a module without tensors (instance norm)."""
  if kind == NORM:
    keys = ("weight", "bias", "running_mean", "running_var")
    return [state[f"{module}.{k}"] for k in keys if f"{module}.{k}" in state]
  # Conv2d weights are (out, in, h, w), ConvTranspose2d (in, out, h, w);
  # Keras's Conv2D kernel is (h, w, in, out) and Conv2DTranspose's
  # (h, w, out, in): one transpose serves both.
  weights = [state[f"{module}.weight"].transpose(2, 3, 1, 0)]
  if f"{module}.bias" in state:
    weights.append(state[f"{module}.bias"])
  return weights


def load_weights(model: keras.Model, state: Dict[str, np.ndarray],
                 names: List[Tuple[str, str, str]], path: str) -> None:
  """Sets `model`'s layers from the reference's tensors (`names`: e.g.
  `unet_layers`). Every tensor of the file must find its layer and every
  layer its tensors, in the right shape; otherwise ValueError naming the
  tensor and the flag that decides it."""
  state = without_instance_norm_statistics(state, names)
  _check_norm(model, state, names, path)
  used = set()
  for module, layer_name, kind in names:
    layer = model.get_layer(layer_name)
    in_file = sorted(k for k in state if k.rsplit(".", 1)[0] == module)
    expected = [tuple(w.shape) for w in layer.get_weights()]
    if not in_file and expected:
      raise errors.CommandError(
          f"{path} has no {module}.* tensors, which {layer_name} needs: it "
          "was saved from another architecture. Check --generator (the "
          "number of levels), --norm (instance norm has no tensors) and, "
          f"for a ResNet, {RESNET_DROPOUT}.")
    convolution = kind != NORM and state.get(f"{module}.weight",
                                             np.zeros([0] * 4)).ndim == 4
    weights = (keras_weights(state, module, kind)
               if in_file and (kind == NORM or convolution) else [])
    got = [tuple(w.shape) for w in weights] if weights else [
        tuple(state[k].shape) for k in in_file]
    if got != expected:
      raise errors.CommandError(
          f"{path}: {module} holds {', '.join(in_file)} of shapes {got} "
          f"(in Keras's layout), {layer_name} needs {expected}. Check "
          "--ngf, --input_channels and --output_channels, --norm (batch "
          f"norm has 4 tensors, instance norm none) and, for a ResNet, "
          f"{RESNET_DROPOUT}.")
    layer.set_weights(weights)
    used.update(in_file)
  extra = sorted(set(state) - used)
  if extra:
    raise errors.CommandError(
        f"{path} holds tensors this model has no place for: "
        f"{', '.join(extra[:4])}{', ...' if len(extra) > 4 else ''}. It "
        "was saved from another architecture: check --generator (the "
        "number of levels), --norm (running_mean and running_var are "
        f"batch norm's) and, for a ResNet, {RESNET_DROPOUT}.")


def without_instance_norm_statistics(state: Dict[str, np.ndarray],
                                     names: List[Tuple[str, str, str]]
                                     ) -> Dict[str, np.ndarray]:
  """`state` without the running statistics of instance norms.

  The reference's InstanceNorm2d(track_running_stats=True) saves a running
  mean and variance (and no weight or bias: it is not affine) that neither
  its training nor its test time uses; the reference drops them when it
  loads such a checkpoint (BaseModel.__patch_instance_norm_state_dict), and
  so does this. Batch norm's statistics come with its weight and bias."""
  drop = set()
  for module, _, kind in names:
    if (kind == NORM and f"{module}.running_mean" in state
        and f"{module}.weight" not in state):
      drop |= {f"{module}.running_mean", f"{module}.running_var"}
  return {name: value for name, value in state.items() if name not in drop}


def _check_norm(model: keras.Model, state: Dict[str, np.ndarray],
                names: List[Tuple[str, str, str]], path: str) -> None:
  """The file's normalisation is the model's: batch norm keeps running
  statistics, the reference's instance norm has no tensors at all."""
  statistics = sorted(k for k in state if k.endswith(".running_mean"))
  batch_norm = any(model.get_layer(layer).get_weights()
                   for _, layer, kind in names if kind == NORM)
  if statistics and not batch_norm:
    raise errors.CommandError(f"{path} holds batch norm statistics ({statistics[0]}"
                     ", ...): it was trained with --norm=batch, not this "
                     "model's norm.")
  if batch_norm and not statistics:
    raise errors.CommandError(f"{path} holds no batch norm statistics: it was "
                     "trained with --norm=instance, not --norm=batch.")


def generator_layers(config: config_lib.Config) -> List[Tuple[str, str, str]]:
  """The reference generator's module names for `config`'s --generator."""
  generator = architectures.GENERATORS[config.model.generator]
  if generator.family == "resnet":
    return resnet_layers(generator.blocks, config.model.dropout > 0)
  if generator.family == "unet":
    return unet_layers(config.model.generator_depth)
  raise errors.CommandError(
      f"--generator={config.model.generator} is of the {generator.family} "
      "family, which the reference does not have: PyTorch weights import "
      "into its U-Net and ResNet generators only.")


def discriminator_layers(config: config_lib.Config) -> List[Tuple[str, str, str]]:
  """The reference discriminator's module names for `config` (its one
  PatchGAN: --discriminator=patchgan, one scale)."""
  model = config.model
  if model.discriminator != "patchgan" or model.num_discriminators != 1:
    raise errors.CommandError(
        "The reference's discriminator is one PatchGAN: convert it with "
        "--discriminator=patchgan --num_discriminators=1 (and its "
        "--d_layers, 3 for the 70x70 PatchGAN).")
  return patchgan_layers(model.d_layers)
