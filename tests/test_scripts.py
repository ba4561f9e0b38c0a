"""The installed console scripts (pix2pix-<command>) show each command's
description and its own flags with --help, as `python -m` does."""

import importlib
import importlib.metadata
import os
import subprocess
import sys

import pytest

from conftest import ENV
from test_layout import COMMANDS
from pix2pix_tf import config as config_lib

SCRIPTS = sorted(
    (entry.name, entry.value.split(":")[0])
    for entry in importlib.metadata.entry_points(group="console_scripts")
    if entry.value.startswith("pix2pix_tf."))


def test_every_command_has_a_script():
  assert [module for _, module in SCRIPTS] == [
      f"pix2pix_tf.{command}" for command in sorted(COMMANDS)]


@pytest.mark.parametrize("script, module", SCRIPTS,
                         ids=[name for name, _ in SCRIPTS])
def test_the_script_lists_its_own_flags_and_description(script, module):
  path = os.path.join(os.path.dirname(sys.executable), script)
  done = subprocess.run([path, "--help"], capture_output=True, text=True,
                        env=ENV, timeout=120)
  command = importlib.import_module(module)
  description = command.__doc__.strip().splitlines()[0]
  assert done.stdout.lstrip().startswith(description), done.stdout[:500]
  names = [option.name for option in getattr(command, "OPTIONS", ())]
  if module in ("pix2pix_tf.train", "pix2pix_tf.summary",
                "pix2pix_tf.convert"):
    names += [field.name for _, field in config_lib.option_fields()]
  assert names
  for name in names:
    assert f"\n  --{name}:" in done.stdout or (
        f"\n  --[no]{name}:" in done.stdout), (name, done.stdout[-2000:])
