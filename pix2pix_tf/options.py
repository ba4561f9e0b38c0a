"""The options of the commands other than train, and every command's entry
point: absl flags from `config.Config` (train's options) and from each
command's OPTIONS, with docs/flags.md's tables made from the same
definitions."""

import dataclasses
import os
import sys
from typing import Callable, Optional, Sequence, Tuple

from absl import app
from absl import flags

from pix2pix_tf import errors
from pix2pix_tf import flagfiles
from pix2pix_tf.config import (DEFAULT_MAX_PIXELS, RESOLUTIONS, TABLE_HEAD,
                               define_flags, define_one_flag, markdown_row)


@dataclasses.dataclass(frozen=True)
class Option:
  """An option of a command other than train (whose options are Config's
  fields): its flag's name, type, default, help and choices."""
  name: str
  type: type
  default: object
  help: str
  choices: Optional[Tuple] = None
  lower_bound: Optional[float] = None

  def but(self, **changes) -> "Option":
    """This option with a command's own default or help."""
    return dataclasses.replace(self, **changes)


# Options that several commands take, defined once.
SAVED_MODEL = Option("saved_model", str, None,
                     "An exported SavedModel folder.")
RUN_DIR = Option("model_dir", str, None,
                 "A training run: uses its export (<model_dir>/export).")
CHECKPOINT = Option("checkpoint", str, None,
                    "A checkpoint of --model_dir (e.g. "
                    "RUN/checkpoints/ckpt-4000) instead of its export.")
MAX_PIXELS = Option("max_pixels", int, DEFAULT_MAX_PIXELS,
                    "Images whose header declares more pixels (width x "
                    "height) are refused before they are decoded.",
                    lower_bound=1)
HOST = Option("host", str, "127.0.0.1", "Address to serve on.")
PORT = Option("port", int, 8000, "Port to serve on (0: a free one).")
SEED = Option("seed", int, 0, "Seed of the order.")
CONFIG = Option("config", str, None, "A shipped configuration, by name: "
                "its flagfile (pix2pix_tf/configs/NAME.flags), read where it "
                "stands; the flags after it override it.",
                choices=flagfiles.names())
RESOLUTION = Option(
    "resolution", str, None, "native: the generator runs on each image at "
    "its own size (reflect-padded to a multiple of 2**depth, cropped back); "
    "training: resized to the scale training saw and back. Default: the "
    "export's (what the run's --preprocess implies).", choices=RESOLUTIONS)


def download_options(scope: str) -> Tuple[Option, ...]:
  """A download's --sha256, --timeout and --retries (datasets download,
  convert --pretrained), their help naming what they apply to, `scope`."""
  return (
      Option("sha256", str, None, f"{scope}: the downloaded file's SHA-256; "
             "a download that differs is refused."),
      Option("timeout", float, 60, f"{scope}: seconds a silent connection "
             "is waited for.", lower_bound=1),
      Option("retries", int, 2, f"{scope}: times a lost connection, a cut "
             "download or a server error (HTTP 5xx) is tried again.",
             lower_bound=0))


def define_command_flags(options: Sequence[Option],
                         flag_values: Optional[flags.FlagValues] = None
                         ) -> None:
  """Defines the absl flags of a command's `options` (its OPTIONS)."""
  flag_values = flags.FLAGS if flag_values is None else flag_values
  for option in options:
    bound = ({} if option.lower_bound is None
             else {"lower_bound": option.lower_bound})
    define_one_flag(flag_values, option.name, option.type, option.default,
            option.help, option.choices, **bound)


def command_flag_table(options: Sequence[Option]) -> str:
  """docs/flags.md's table of a command's `options`."""
  return "\n".join(TABLE_HEAD + [
      markdown_row(o.name, o.default, f"<{'|'.join(o.choices)}>: {o.help}"
                    if o.choices else o.help)
      for o in options]) + "\n"


def run_command(command: str, main: Callable[[Sequence[str]], None],
                options: Sequence[Option] = ()) -> None:
  """A command's entry point: defines its flags (training options for train,
  summary and convert, then the command's own `options`), quiets
  TensorFlow's C++ log unless TF_CPP_MIN_LOG_LEVEL is set, and runs `main`
  under absl.

  absl's --help shows the main module's docstring and key flags. Run as
  `python -m pix2pix_tf.<command>`, the command is that module; run as a
  console script (pix2pix-<command>), the main module is pip's wrapper, so
  the command's flags are declared its key flags and the command's
  docstring its usage."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  before = set(flags.FLAGS)
  if command in ("train", "summary", "convert"):
    define_flags()
  define_command_flags(options)
  if command == "convert":  # Where it writes is a run: --model_dir.
    flags.DEFINE_alias("output_dir", "model_dir")
  for name in sorted(set(flags.FLAGS) - before):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])
  script = sys.modules["__main__"]
  if not script.__doc__:
    script.__doc__ = sys.modules[main.__module__].__doc__
  app.run(errors.guarded(f"pix2pix_tf.{command}", main),
          flags_parser=flagfiles.parse)
