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


_REPLACED = "replaced"  # The temporaries holding a folder being replaced.


def swap_in(staging: str, top: str, name: str) -> None:
  """Moves the folder `staging` to `top`/`name`, in place of what is there.

  The old folder is moved aside first, into a temporary that records its
  name: if the move in fails it is put back, and if the process is killed
  between the two renames, `undo_interrupted_swaps` puts it back the next
  time a command opens `top`. mkdtemp's private mode (0700) is replaced by
  a new folder's, so that a server running as another user reads it.
  """
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(staging, 0o777 & ~umask)
  path = os.path.join(top, name)
  old = None
  try:
    if os.path.lexists(path):
      old = tempfile.mkdtemp(prefix=mine(_REPLACED), dir=top)
      with open(os.path.join(old, "name"), "w") as f:
        f.write(name)
      os.replace(path, os.path.join(old, "folder"))
    try:
      os.replace(staging, path)
    except BaseException:
      if old:
        os.replace(os.path.join(old, "folder"), path)
      raise
  finally:
    if old:
      remove(old)


def undo_interrupted_swaps(top: str) -> None:
  """Puts back a folder that `swap_in` had moved aside when its process
  was killed, before the new one took its place."""
  try:
    entries = os.listdir(top)
  except OSError:
    return
  for entry in entries:
    if not (is_stale(entry) and f"-{_REPLACED}-" in entry):
      continue
    holder = os.path.join(top, entry)
    try:
      with open(os.path.join(holder, "name")) as f:
        target = os.path.join(top, f.read())
      if (os.path.isdir(os.path.join(holder, "folder"))
          and not os.path.lexists(target)):
        os.replace(os.path.join(holder, "folder"), target)
    except OSError:
      continue


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
