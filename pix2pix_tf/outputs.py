"""The one writer: every file a command or tool writes goes through here.

A command names the folder it writes into (`Folder(path, flag, inputs)`),
says before any work what it will write there (`check`), then writes each
file under a temporary name and renames it into place (`write`), so that a
kill mid-write never leaves a torn file where a good one was.

What the project wrote is recorded, with each file's sha256, in the folder's
manifest (MANIFEST, one JSON line per file). A file is replaced only when the
manifest names it and its bytes are still the ones recorded; anything else
(a user's file, or one the user has edited since) is refused, untouched,
with one sentence naming the file and the flag. Folders that another
library fills (TensorFlow's checkpoints and event files) are claimed whole:
made by the project, or refused. A whole folder (a SavedModel) is staged
beside its place and swapped in (`replace_folder`).

A folder is never one of the command's inputs, a target never one of its
input files, and no name leads outside the folder. Temporaries carry the
writing process's id; those of a process that is gone (killed, or out of
disk) are removed the next time a command opens the folder.
"""

import dataclasses
import fnmatch
import hashlib
import json
import os
import tempfile
from typing import Callable, Dict, Iterable, Optional, Sequence

from pix2pix_tf import errors
from pix2pix_tf import temporaries

MANIFEST = ".pix2pix_tf-outputs.jsonl"
_HASH_CHUNK = 1 << 20


class OutputError(errors.CommandError):
  """An output refused before anything was written: one sentence that names
  the file and the flag to change."""


@dataclasses.dataclass(frozen=True)
class Input:
  """A path a command reads: a file, or a folder whose own files it reads."""
  path: str
  flag: str


def sha256(path: str, size: Optional[int] = None) -> str:
  """The sha256 of the file (of its first `size` bytes), read in chunks."""
  digest = hashlib.sha256()
  left = os.path.getsize(path) if size is None else size
  with open(path, "rb") as f:
    while left > 0:
      chunk = f.read(min(_HASH_CHUNK, left))
      if not chunk:
        break
      digest.update(chunk)
      left -= len(chunk)
  return digest.hexdigest()


def _real(path: str) -> str:
  return os.path.realpath(os.path.abspath(path))


def _within(path: str, folder: str) -> bool:
  """Whether the real path `path` is `folder` or inside it."""
  return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class Folder:
  """A folder one command writes into, named by --`flag`.

  Args:
    path: the folder; made when the first file is written.
    flag: the flag that names it, for the refusals' advice.
    inputs: what the command reads; the folder may not be one of them, and
      no file is written onto one or into an input folder.
    given: what --`flag` said, when it named a file in this folder.
    kind: what the command writes here ("run", "predict", ...; default:
      the flag). A file is replaced only by a command writing the same
      kind, so that one command never replaces another's output (evaluate
      --output onto a run's config.json).
  """

  def __init__(self, path: str, flag: str, inputs: Sequence[Input] = (),
               given: Optional[str] = None, kind: Optional[str] = None):
    given = given or path  # What --flag said (a file in this folder).
    self.path = os.path.normpath(path)
    self.flag = flag
    self.kind = kind or flag
    self._given = given
    self._real = _real(path)
    self._inputs = [(i, _real(i.path)) for i in inputs if i.path]
    existing = self._real
    while not os.path.exists(existing):
      existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
      raise OutputError(
          f"--{flag}={given}: {existing} is a file, not a folder. Choose a "
          "folder to write into.")
    try:  # Tried, not asked: os.access says yes to root on /proc.
      tempfile.TemporaryFile(dir=existing).close()
    except OSError as e:
      raise OutputError(
          f"--{flag}={given} cannot be written ({existing}: {e.strerror}). "
          "Choose a folder you can write to.") from None
    for source, real in self._inputs:
      if _within(self._real, real):
        raise OutputError(
            f"--{flag}={given} is in --{source.flag}={source.path}, which "
            "this command reads: its outputs would replace or join its "
            f"inputs. Choose another --{flag}.")
    self._records = self._read_manifest()
    temporaries.undo_interrupted_swaps(self.path)
    temporaries.remove_stale(self.path)  # What a killed run left.

  # --- The manifest ---------------------------------------------------------

  def _read_manifest(self) -> Dict[str, dict]:
    records: Dict[str, dict] = {}
    try:
      with open(os.path.join(self.path, MANIFEST), "rb") as f:
        for line in f:
          try:
            record = json.loads(line)
            records[record["name"]] = record
          except (ValueError, KeyError, TypeError):
            continue  # A line torn by a kill: that file is not claimed.
    except FileNotFoundError:
      pass
    return records

  def _record(self, **record) -> None:
    record["kind"] = self.kind
    self._records[record["name"]] = record
    self._make_dirs(self.path)
    with open(os.path.join(self.path, MANIFEST), "a") as f:
      f.write(json.dumps(record, sort_keys=True) + "\n")
      f.flush()
      os.fsync(f.fileno())

  def _make_dirs(self, folder: str) -> None:
    try:
      os.makedirs(folder, exist_ok=True)
    except FileExistsError:
      raise OutputError(
          f"--{self.flag}: {folder} is a file where a folder belongs. Move "
          f"it away, or choose another --{self.flag}.") from None
    except OSError as e:
      raise OutputError(
          f"--{self.flag}: {folder} cannot be made ({e.strerror}). Choose "
          f"another --{self.flag}.") from None

  # --- Names and ownership --------------------------------------------------

  def target(self, name: str) -> str:
    """The path of `name` inside the folder; OutputError for a name that
    leads outside it (.., an absolute path, a link) or onto an input."""
    path = os.path.normpath(os.path.join(self.path, name))
    real = _real(path)
    if os.path.isabs(name) or not real.startswith(self._real + os.sep):
      raise OutputError(
          f"--{self.flag}: {name} leads outside {self.path}; a command "
          "writes only inside the folder it is given.")
    for given, input_real in self._inputs:
      if _within(real, input_real):
        raise OutputError(
            f"--{self.flag}: writing {path} would replace or add to "
            f"--{given.flag}={given.path}, which this command reads. "
            f"Choose another --{self.flag}.")
    return path

  def owns(self, name: str) -> bool:
    """Whether `name` is absent, or was written here by pix2pix_tf and is
    unchanged since (a claimed folder: made by pix2pix_tf)."""
    path = self.target(name)
    if not os.path.lexists(path):
      return True
    record = self._records.get(name)
    if record is None or os.path.islink(path) or (
        record.get("kind") != self.kind):
      return False
    if record.get("folder"):
      return os.path.isdir(path)
    if not os.path.isfile(path):
      return False
    if record.get("appended"):
      # A journal: what was recorded must still be its start (a line a
      # crash cut short may follow it).
      return (os.path.getsize(path) >= record["size"] and
              sha256(path, record["size"]) == record["sha256"])
    return (os.path.getsize(path) == record["size"]
            and sha256(path) == record["sha256"])

  def refusal(self, names: Sequence[str]) -> OutputError:
    """The error that refuses to write over `names`."""
    shown = ", ".join(os.path.join(self.path, n) for n in names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    kinds = sorted({self._records[n].get("kind", "?") for n in names
                    if n in self._records} - {self.kind})
    whose = (f"another command's output ({', '.join(kinds)}), not this "
             f"command's ({self.kind})" if kinds else
             "which pix2pix_tf did not write (or which changed since)")
    return OutputError(
        f"--{self.flag}={self._given} would replace {shown}{more}, {whose}; "
        f"nothing was written. Choose another --{self.flag}, or move those "
        "files away.")

  def check(self, names: Iterable[str]) -> None:
    """Before any work: every name is writable here (absent, or this
    project's and unchanged); else OutputError naming the others."""
    foreign = [n for n in names if not self.owns(n)]
    if foreign:
      raise self.refusal(foreign)

  # --- Writing --------------------------------------------------------------

  def _temporary(self, path: str) -> str:
    """A fresh temporary folder for `path`, named for this process, at the
    folder's top (the same file system, and the one place a later run
    looks for what a killed one left)."""
    self._make_dirs(os.path.dirname(path))
    return tempfile.mkdtemp(prefix=temporaries.mine(), dir=self.path)

  def write(self, name: str, write: Callable[[str], None]) -> str:
    """Runs `write(temporary path)`, then renames the file to `name`
    (refused if `name` is not this project's); returns its path. The
    temporary path ends in `name`'s own file name, so that writers that go
    by the extension (Pillow, Keras) see it."""
    path = self.target(name)
    if not self.owns(name):
      raise self.refusal([name])
    staging = self._temporary(path)
    try:
      staged = os.path.join(staging, os.path.basename(path))
      write(staged)
      with open(staged, "rb+") as f:
        os.fsync(f.fileno())
      digest, size = sha256(staged), os.path.getsize(staged)
      os.replace(staged, path)
    finally:
      temporaries.remove(staging)
    self._record(name=name, sha256=digest, size=size)
    return path

  def write_bytes(self, name: str, data: bytes) -> str:
    """Writes `data` as the file `name`; returns its path."""
    def write(path):
      with open(path, "wb") as f:
        f.write(data)
    return self.write(name, write)

  def write_text(self, name: str, text: str) -> str:
    """Writes `text` (UTF-8) as the file `name`; returns its path."""
    return self.write_bytes(name, text.encode("utf-8"))

  def append_line(self, name: str, line: str) -> None:
    """Appends `line` as a line of its own to the file `name` (a last line
    torn by a crash is ended first), synced to disk before it returns; a
    file of the user's is refused."""
    path = self.target(name)
    if not self.owns(name):
      raise self.refusal([name])
    self._make_dirs(os.path.dirname(path))
    data = line.encode("utf-8") + b"\n"
    with open(path, "ab+") as f:
      if f.seek(0, os.SEEK_END) > 0:
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
          data = b"\n" + data
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    self._record(name=name, sha256=sha256(path), size=os.path.getsize(path),
                 appended=True)

  def move_in(self, source: str, name: str) -> str:
    """Moves the file `source` (of the folder's own tree: `split` sorting
    a user's pairs) to `name`; refused if anything is at `name`. The move
    is a hard link then an unlink, so that it can never replace a file that
    appeared meanwhile, as a rename would."""
    path = self.target(name)
    if os.path.lexists(path):
      raise self.refusal([name])
    self._make_dirs(os.path.dirname(path))
    try:
      os.link(source, path)
    except FileExistsError:
      raise self.refusal([name]) from None
    os.unlink(source)
    return path

  def claim(self, name: str, leftovers: Optional[str] = None) -> str:
    """A subfolder that another library fills (TensorFlow's checkpoints
    and event files): made and recorded now if absent, refused if it exists
    and pix2pix_tf did not make it. `leftovers`: a glob of what that
    library leaves when killed (removed now)."""
    path = self.target(name)
    if not self.owns(name):
      raise self.refusal([name])
    if name not in self._records:
      self._make_dirs(path)
      self._record(name=name, folder=True)
    if leftovers:
      for entry in os.listdir(path):
        if fnmatch.fnmatch(entry, leftovers):
          temporaries.remove(os.path.join(path, entry))
    return path

  def replace_folder(self, name: str, build: Callable[[str], None],
                     recognize: Optional[Callable[[str], bool]] = None
                     ) -> str:
    """Builds a folder with `build(staging path)` beside `name`, then swaps
    it in; returns its path. What `check_folder` accepts is replaced."""
    path = self.target(name)
    self.check_folder(name, recognize)
    staging = self._temporary(path)
    try:
      build(staging)
      if os.path.lexists(path):
        self.check_folder(name, recognize)  # It may have changed meanwhile.
      temporaries.swap_in(staging, self.path, name)
    finally:
      temporaries.remove(staging)
    self._record(name=name, folder=True)
    return path

  def check_folder(self, name: str,
                   recognize: Optional[Callable[[str], bool]] = None
                   ) -> None:
    """OutputError unless `name` is absent, an empty folder, or this
    project's: with `recognize`, a folder it accepts by its contents (a
    SavedModel's own metadata, and nothing else in it); without, one the
    manifest records."""
    path = self.target(name)
    if not os.path.lexists(path):
      return
    if os.path.islink(path) or not os.path.isdir(path):
      raise OutputError(
          f"--{self.flag}: {path} exists and is not a folder. Choose "
          f"another --{self.flag}, or move it away first.")
    if not os.listdir(path):
      return
    record = self._records.get(name, {})
    ours = (recognize(path) if recognize else
            bool(record.get("folder")) and record.get("kind") == self.kind)
    if not ours:
      raise self.refusal([name])

def folder_output(path: str, flag: str, inputs: Sequence[Input] = (),
                  recognize: Optional[Callable[[str], bool]] = None,
                  kind: Optional[str] = None) -> "tuple[Folder, str]":
  """(the folder holding `path`, its name there) for a whole folder that a
  command builds and swaps in (`Folder.replace_folder`), checked now:
  absent, empty, or this project's (see `Folder.check_folder`)."""
  parent, name = os.path.split(os.path.normpath(os.path.abspath(path)))
  folder = Folder(parent, flag, inputs, given=path, kind=kind)
  folder.check_folder(name, recognize)
  return folder, name


def file_output(path: str, flag: str, inputs: Sequence[Input] = (),
                kind: Optional[str] = None) -> "tuple[Folder, str]":
  """(the folder, the name) of a single output file named by --`flag`,
  checked now (see `Folder.check`), before the work that makes it: a
  folder where a file belongs, or a file that is not this kind's, is
  refused."""
  if os.path.isdir(path):
    raise OutputError(f"--{flag}={path} is a folder; give a file name.")
  parent, name = os.path.split(os.path.normpath(path))
  folder = Folder(parent or ".", flag, inputs, given=path, kind=kind)
  folder.check([name])
  return folder, name
