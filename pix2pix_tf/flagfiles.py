"""The shipped configurations: pix2pix_tf/configs/NAME.flags, installed with
the package and chosen by name.

    python -m pix2pix_tf.train --config=facades
    python -m pix2pix_tf.train --flagfile=configs/facades.flags

`--config=NAME` is that flagfile, read where it stands among the flags (the
flags after it override it). `--flagfile=` a path that does not exist but
names a shipped configuration (`facades`, `facades.flags` or
`configs/facades.flags`, as in this project's own folder) reads the shipped
one, so the README's commands work from any folder once the package is
installed. A file that exists is always read as given.
"""

import os
from typing import List, Sequence, Tuple

from absl import app
from absl import flags

DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         "configs")
SUFFIX = ".flags"


def names() -> Tuple[str, ...]:
  """The shipped configurations' names, sorted."""
  return tuple(sorted(name[:-len(SUFFIX)] for name in os.listdir(DIRECTORY)
                      if name.endswith(SUFFIX)))


def path(name: str) -> str:
  """The shipped flagfile of configuration `name` (one of names())."""
  if name not in names():
    raise ValueError(f"No shipped configuration is called {name!r}: "
                     f"choose one of {', '.join(names())}.")
  return os.path.join(DIRECTORY, name + SUFFIX)


def _shipped_name(given: str) -> str:
  """The configuration a --flagfile value that is not a file names, or ""."""
  head, tail = os.path.split(given)
  if head not in ("", "configs"):
    return ""
  name = tail[:-len(SUFFIX)] if tail.endswith(SUFFIX) else tail
  return name if name in names() else ""


def expand(argv: Sequence[str],
           flag_values: flags.FlagValues = flags.FLAGS) -> List[str]:
  """argv with every `--config=NAME` (or `--config NAME`) of a shipped
  configuration replaced by `--flagfile=` its path, in place, and every
  `--flagfile=` value that is not a file but a shipped configuration's name
  by that configuration's path. The rest is absl's to parse, and to refuse:
  an unknown --config name (the flag's choices are names()), a missing
  flagfile, --config on a command without it."""
  expanded, rest = list(argv[:1]), list(argv[1:])
  while rest:
    arg = rest.pop(0)
    if arg == "--":
      return expanded + [arg] + rest
    option, equals, value = arg.partition("=")
    if option.lstrip("-") in ("config", "flagfile") and not equals and rest:
      value = rest.pop(0)
      arg = f"{option}={value}"
    if option.lstrip("-") == "config" and "config" in flag_values and (
        value in names()):
      arg = f"--flagfile={path(value)}"
    elif option.lstrip("-") == "flagfile" and not os.path.exists(value) and (
        _shipped_name(value)):
      arg = f"--flagfile={path(_shipped_name(value))}"
    expanded.append(arg)
  return expanded


def parse(argv: Sequence[str]) -> List[str]:
  """absl's flags parser for app.run: argv expanded, then parsed as absl's
  default parser does (a bad flag is reported with the usage)."""
  if "config" in flags.FLAGS:
    # What expand left: a --config inside a flagfile, which nothing reads.
    flags.register_validator(
        "config", lambda value: value is None,
        "--config names a shipped configuration on the command line only; "
        "inside a flagfile, read one with --flagfile=PATH (the shipped "
        f"ones: {os.path.join(DIRECTORY, 'NAME' + SUFFIX)}).")
  return app.parse_flags_with_usage(expand(argv))
