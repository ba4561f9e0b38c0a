"""The networks the flags name, as data: the one table of --generator values
(and the paper's among them, PAPER_GENERATOR) and the one table of
--d_receptive_fields values.

`config` takes the flags' choices from these tables and `models` builds
from them, so that a new generator is one row here (and, for a new family,
one builder in `models.generators.BUILDERS`). Plain data: it imports
nothing of the package, so that config, below models, can read it.
"""

from typing import NamedTuple, Optional


class Generator(NamedTuple):
  """What a --generator value builds.

  Attributes:
    family: its builder's key in `models.generators.BUILDERS`.
    depth: its stride-2 downsamplings (an image side must be a multiple of
      2**depth); None: --unet_depth's.
    blocks: the residual blocks of a ResNet.
    about: what --help says of it.
  """
  family: str
  depth: Optional[int]
  blocks: int = 0
  about: str = ""


# The paper's generator: --generator's default, and the network of the
# reference's published weights (convert --pretrained).
PAPER_GENERATOR = "unet_256"

# The --generator values, in the order --help lists them.
GENERATORS = {
    PAPER_GENERATOR: Generator("unet", 8, about="the paper's U-Net, 8 "
                               "downsamplings (a 1x1 bottleneck at "
                               "256x256)"),
    "unet_128": Generator("unet", 7, about="7 downsamplings"),
    "unet": Generator("unet", None, about="--unet_depth downsamplings"),
    "resnet_9blocks": Generator("resnet", 2, blocks=9,
                                about="the reference's ResNet, 9 blocks"),
    "resnet_6blocks": Generator("resnet", 2, blocks=6, about="6 blocks"),
}


def generator_help() -> str:
  """--generator's help: each value and what it builds, from GENERATORS."""
  return "; ".join(f"{name}: {generator.about}"
                   for name, generator in GENERATORS.items()) + "."

# The --d_receptive_fields values: a receptive field, in pixels -> the
# stride-2 layers of the PatchGAN that has it (its --d_layers); 0 layers is
# the 1x1 PixelGAN. models.receptive_field computes the fields from the
# built layers (tests/models check that they are these).
RECEPTIVE_FIELDS = {1: 0, 16: 1, 34: 2, 70: 3, 142: 4, 286: 5}
# The PatchGANs among them: stride-2 layers (--d_layers) -> receptive field.
PATCHGAN_FIELDS = {layers: field for field, layers in RECEPTIVE_FIELDS.items()
                   if layers}
