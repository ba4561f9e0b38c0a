"""Downloads: the standard pix2pix datasets, downloaded and extracted into
place, and the one download rule they share with the reference's
published generators (`convert --pretrained`).

    python -m pix2pix_tf.datasets download facades   # -> datasets/facades/{train,val,test}

The archive (NAME.tar.gz of the reference's server) is downloaded by
`keras.utils.get_file`, which checks its SHA-256 when one is given
(`--sha256`; the reference publishes none, so every download prints its
digest, to pin the next), and extracted in a temporary folder beside the
destination, moved into place only when complete: a failure leaves no
half-extracted dataset behind. A lost connection, a cut download or a server
error is tried again (`--retries`); a missing archive or a wrong digest is
not.
"""

import http.client
import os
import re
import shutil
import socket
import tarfile
import time
import urllib.error
from typing import Optional

import keras

from pix2pix_tf import errors
from pix2pix_tf import outputs


class DownloadError(errors.CommandError):
  """A download or an archive that failed, in a sentence."""


def checked_sha256(sha256: Optional[str]) -> Optional[str]:
  """A --sha256 value as get_file compares it (lower case), or
  DownloadError for one that is not a SHA-256."""
  if sha256 is None:
    return None
  if not re.fullmatch("[0-9a-f]{64}", sha256.strip().lower()):
    raise DownloadError(f"--sha256={sha256} is not a SHA-256 (64 hex "
                        "digits).")
  return sha256.strip().lower()


def cache_folder() -> str:
  """pix2pix_tf's folder in Keras's cache (KERAS_HOME, else ~/.keras), where
  downloads that are kept for the next run go. Callers make it first:
  get_file falls back to /tmp/.keras for a folder it cannot write to, as
  one that does not exist yet is."""
  return os.path.join(
      os.environ.get("KERAS_HOME") or os.path.expanduser("~/.keras"),
      "pix2pix_tf")


def download(url: str, folder: str, sha256: Optional[str] = None,
             timeout: float = 60, retries: int = 2,
             by_hand: str = "download the archive by hand and extract it "
             "into the destination folder",
             elsewhere: str = "choose another --output") -> str:
  """`url` downloaded into `folder` by keras.utils.get_file (checked
  against `sha256` when given); returns the file's path. A connection
  silent for `timeout` seconds fails (get_file takes no timeout of its
  own: the socket default is set around it). A failure the server may not
  repeat (no connection, a silent or cut one, HTTP 5xx, 408 or 429) is
  tried again up to `retries` times (none for 0 or less), after 2, 4,
  8... (at most 60) seconds; get_file has no retries of its own. Any other
  failure is final. A failure leaves no file of the download behind;
  `by_hand` is what its sentence offers instead of the download, and
  `elsewhere` where to write when the folder cannot be written."""
  sha256 = checked_sha256(sha256)
  attempts = max(retries, 0) + 1
  for attempt in range(1, attempts + 1):
    try:
      return _get_file(url, folder, sha256, timeout, by_hand, elsewhere)
    except _Transient as e:
      if attempt == attempts:
        tries = "one attempt" if attempts == 1 else f"{attempts} attempts"
        raise DownloadError(
            f"Could not download {url} in {tries}: {e}. Check "
            f"the network connection (or --base_url), try again later, or "
            f"{by_hand}.") from None
      wait = min(2 ** attempt, 60)
      # The line starts anew: get_file's progress bar may have none.
      print(f"\nDownload failed ({e}); trying again in {wait} s ({attempt} "
            f"of {retries}).", flush=True)
      time.sleep(wait)


class _Transient(Exception):
  """A download failure that trying again may mend."""


def _get_file(url: str, folder: str, sha256: Optional[str],
              timeout: float, by_hand: str, elsewhere: str) -> str:
  """One keras.utils.get_file attempt; _Transient for a failure worth
  another, DownloadError for one that is final."""
  path = os.path.join(folder, os.path.basename(url))
  previous = socket.getdefaulttimeout()
  socket.setdefaulttimeout(timeout)
  try:
    return keras.utils.get_file(
        fname=os.path.basename(url), origin=url, file_hash=sha256,
        hash_algorithm="sha256", cache_dir=folder, cache_subdir=".")
  except Exception as e:  # pylint: disable=broad-except
    # get_file raises a bare Exception for an HTTP or URL error, with that
    # error as its context, and lets any other error through as it is.
    cause = e.__context__ if type(e) is Exception else e  # pylint: disable=unidiomatic-typecheck
    if isinstance(cause, urllib.error.HTTPError):
      if cause.code >= 500 or cause.code in (408, 429):
        raise _Transient(str(e)) from None
      raise DownloadError(f"Could not download {url}: {e}. Check "
                          f"--base_url and the name, or {by_hand}.") from None
    if isinstance(cause, (urllib.error.URLError, TimeoutError,
                          ConnectionError, http.client.HTTPException)):
      raise _Transient(str(e)) from None
    if isinstance(e, ValueError) and sha256 and os.path.exists(path):
      digest = outputs.sha256(path)
      os.remove(path)  # get_file keeps the file it refused.
      raise DownloadError(
          f"{url} has the SHA-256 {digest}, not --sha256={sha256}. "
          "Run the command again, or check the value you gave.") from None
    if isinstance(e, OSError):
      raise DownloadError(f"Could not write {path}: {e}. Free some space "
                          f"there, or {elsewhere}.") from None
    raise DownloadError(f"Could not download {url}: {e}. Check "
                        "--base_url.") from None
  finally:
    socket.setdefaulttimeout(previous)


def extract(archive: str, name: str, staging: str) -> None:
  """Extracts `archive` and moves the files of its `name` folder into
  `staging` (the dataset folder, until it is swapped into place)."""
  unpacked = os.path.join(staging, ".unpacked")
  try:
    with tarfile.open(archive, "r:*") as tar:
      _extract_all(tar, unpacked)
  except (tarfile.TarError, EOFError, OSError) as e:
    raise DownloadError(f"{archive} is not a readable .tar.gz archive "
                        f"({e}). Run the command again to download it "
                        "anew.") from e
  root = os.path.join(unpacked, name)
  if not os.path.isdir(root):
    entries = os.listdir(unpacked)
    if len(entries) != 1 or not os.path.isdir(
        os.path.join(unpacked, entries[0])):
      raise DownloadError(f"{archive} does not hold a single {name}/ "
                          "folder.")
    root = os.path.join(unpacked, entries[0])
  if not os.path.isdir(os.path.join(root, "train")):
    raise DownloadError(f"{archive} has no {name}/train folder.")
  for entry in os.listdir(root):
    os.replace(os.path.join(root, entry), os.path.join(staging, entry))
  shutil.rmtree(unpacked)


def _extract_all(tar: tarfile.TarFile, folder: str) -> None:
  """The archive's files and folders into `folder`, none outside it."""
  try:
    tar.extractall(folder, filter="data")
  except TypeError:  # Python before 3.11.4 has no extraction filters.
    for member in tar.getmembers():
      parts = member.name.split("/")
      if not (member.isfile() or member.isdir()) or (
          member.name.startswith("/") or ".." in parts):
        raise DownloadError(f"The archive's member {member.name} is not a "
                            "file or folder inside it: not extracted.")
    tar.extractall(folder)


def fetch(name: str, output: str, base_url: str,
          sha256: Optional[str] = None, timeout: float = 60,
          retries: int = 2) -> str:
  """Downloads dataset `name` (`base_url`/NAME.tar.gz) and extracts it into
  the folder `output`; returns it. Nothing is written where a dataset
  already is."""
  sha256 = checked_sha256(sha256)
  if os.path.isdir(os.path.join(output, "train")):
    print(f"{output} already exists; nothing to do.")
    return output
  folder, leaf = outputs.folder_output(output, "output",
                                       kind="dataset download")
  url = f"{base_url.rstrip('/')}/{name}.tar.gz"

  def build(staging):
    print(f"Downloading {url}")
    archive = download(url, staging, sha256, timeout, retries)
    print(f"SHA-256 of {name}.tar.gz: {outputs.sha256(archive)}")
    extract(archive, name, staging)
    os.remove(archive)

  folder.replace_folder(leaf, build)
  splits = sorted(s for s in os.listdir(output)
                  if os.path.isdir(os.path.join(output, s)))
  counts = ", ".join(f"{s}: {len(os.listdir(os.path.join(output, s)))}"
                     for s in splits)
  print(f"Extracted {name} into {output} ({counts}).")
  return output
