"""The reference implementation's published pix2pix generators, by name
(`python -m pix2pix_tf.convert --pretrained=NAME`): where they are, what
each translates and the configuration each is converted with."""

import dataclasses
from typing import Dict

from pix2pix_tf import architectures
from pix2pix_tf import config as config_lib
from pix2pix_tf import flagfiles


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """One of the reference's published generators: the shipped configuration
  of the dataset it was trained on, its direction there, and what it
  translates."""
  config: str
  direction: str
  translates: str


# The reference's list (its scripts/download_pix2pix_model.sh). Each is its
# default network, unet_256 with batch norm and dropout.
PRETRAINED = {
    "facades_label2photo": Pretrained("facades", "BtoA",
                                      "facade label maps to photos"),
    "sat2map": Pretrained("maps", "AtoB", "aerial photos to maps"),
    "map2sat": Pretrained("maps", "BtoA", "maps to aerial photos"),
    "edges2shoes": Pretrained("edges2shoes", "AtoB",
                              "edge maps to photos of shoes"),
    "day2night": Pretrained("night2day", "BtoA",
                            "daytime scenes to night-time ones"),
}
# Where the reference's download script takes them from, NAME.pth.
URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch"
# Their SHA-256s by name. The reference publishes none; the download's
# digest is printed, to pin with --sha256.
DIGESTS: Dict[str, str] = {}
# The size of sat2map.pth as the reference's server sends it; the five hold
# the same network.
BYTES = 217_704_720


def table() -> str:
  """`--pretrained=list`: each name, what it translates and its size."""
  width = max(map(len, PRETRAINED))
  rows = [f"{name:<{width}}  {entry.translates} (--config={entry.config} "
          f"--direction={entry.direction})"
          for name, entry in PRETRAINED.items()]
  return "\n".join(rows + [
      f"Each is the reference's {architectures.PAPER_GENERATOR} with batch "
      f"norm, about {BYTES / 2**20:.0f} MiB, from {URL}."])


def by_hand(name: str) -> str:
  """What to do instead of the download of `name`, in a sentence's words."""
  entry = PRETRAINED[name]
  return (f"download {name}.pth by hand and give it as --from_pytorch, "
          f"with --config={entry.config} --direction={entry.direction} "
          f"--generator={architectures.PAPER_GENERATOR} --norm=batch")


def config_for(name: str, command_line: str) -> config_lib.Config:
  """The config of the reference's generator `name`: its dataset's shipped
  configuration, its direction, the reference's U-Net and dropout blocks,
  --model_dir=runs/NAME_pretrained, then the flags of `command_line`."""
  entry = PRETRAINED[name]
  with open(flagfiles.path(entry.config)) as file:
    shipped = file.read()
  own = (f"--direction={entry.direction} "
         f"--generator={architectures.PAPER_GENERATOR} --norm=batch "
         f"--dropout_placement=reference --model_dir=runs/{name}_pretrained")
  config = config_lib.Config().with_flags(
      "\n".join([shipped, own, command_line]))
  # The weights translate one way: a run recording the other would be
  # served backwards.
  if config.data.direction != entry.direction:
    raise config_lib.ConfigError(
        f"--pretrained={name} translates {entry.translates}: "
        f"--direction={entry.direction}. Leave out the flag or flagfile "
        f"that sets --direction={config.data.direction}.")
  return config
