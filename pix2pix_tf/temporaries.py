"""Temporary files and folders, named for the process that made them.

A temporary's name starts with PREFIX and its writer's process id, so that
one left by a process that is gone (killed, or stopped by a full disk) is
recognised and removed the next time a command looks where it lies: the
writer (`outputs`) at the top of each output folder, `scratch` in the
system's temporary folder.
"""

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

PREFIX = ".pix2pix_tf-tmp-"


def mine(purpose: str = "") -> str:
  """The name prefix of this process's temporaries (for `purpose`)."""
  return f"{PREFIX}{os.getpid()}-{purpose + '-' if purpose else ''}"


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Another user's process.
    return True
  return True


def is_stale(name: str) -> bool:
  """Whether `name` is a temporary whose process is gone."""
  if not name.startswith(PREFIX):
    return False
  pid = name[len(PREFIX):].split("-", 1)[0]
  return pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid))


def remove(path: str) -> None:
  """Removes a file or a folder tree, if it is there."""
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.lexists(path):
    os.remove(path)


def remove_stale(folder: str) -> None:
  """Removes the temporaries in `folder` whose process is gone."""
  with contextlib.suppress(OSError):
    for entry in os.listdir(folder):
      if is_stale(entry):
        remove(os.path.join(folder, entry))


def scratch_folder(purpose: str) -> str:
  """A new private folder in the system's temporary folder, for work that
  is not an output (an export that evaluate scores and discards; a
  non-chief worker's files). What a killed process left there is removed
  first. The caller removes it when done."""
  root = tempfile.gettempdir()
  remove_stale(root)
  return tempfile.mkdtemp(prefix=mine(purpose), dir=root)


@contextlib.contextmanager
def scratch(purpose: str) -> Iterator[str]:
  """`scratch_folder(purpose)`, removed when the block ends."""
  path = scratch_folder(purpose)
  try:
    yield path
  finally:
    remove(path)
