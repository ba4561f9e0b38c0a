r"""Downloads and extracts a standard pix2pix dataset.

    python tools/download_dataset.py facades --dest datasets
    # -> datasets/facades/{train,val,test}/*.jpg

NAME is one of facades, cityscapes, maps, edges2shoes, edges2handbags,
night2day. The archive is downloaded and extracted in a temporary folder
beside the destination, moved into place only when complete: a failure
leaves no half-extracted dataset behind.
"""

import os
import shutil
import tarfile
import urllib.error
import urllib.request

from absl import app
from absl import flags

from pix2pix_tf import errors
from pix2pix_tf import outputs
from pix2pix_tf.data import building

DATASETS = ("facades", "cityscapes", "maps", "edges2shoes", "edges2handbags",
            "night2day")
BASE_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"

flags.DEFINE_string("dest", "datasets", "Folder to extract the dataset into.")
flags.DEFINE_string("base_url", BASE_URL,
                    "Where NAME.tar.gz is downloaded from.")
flags.DEFINE_integer("timeout", 60, "Network timeout in seconds.")
FLAGS = flags.FLAGS

_CHUNK = 1 << 20


class DownloadError(errors.CommandError):
  pass


def download(url: str, path: str, timeout: float) -> None:
  """Downloads `url` to `path` with a progress bar."""
  try:
    with urllib.request.urlopen(url, timeout=timeout) as response, open(
        path, "wb") as f:
      size = int(response.headers.get("Content-Length") or 0)
      progbar = building.Progress(size or None, unit="bytes")
      done = 0
      while chunk := response.read(_CHUNK):
        f.write(chunk)
        done += len(chunk)
        progbar.update(done)
      progbar.update(done, finished=True)
      if size and done != size:
        raise DownloadError(f"{url}: got {done} of {size} bytes; the "
                            "connection was cut. Run the command again.")
  except (urllib.error.URLError, OSError) as e:
    reason = (f"HTTP {e.code} {e.reason}" if isinstance(
        e, urllib.error.HTTPError) else getattr(e, "reason", e))
    raise DownloadError(
        f"Could not download {url}: {reason}. Check the network connection "
        "(or --base_url), or download the archive by hand and extract it "
        "into the destination folder.") from e


def extract(archive: str, name: str, staging: str) -> None:
  """Extracts `archive` and moves the files of its `name` folder into
  `staging` (the dataset folder, until it is swapped into place)."""
  unpacked = os.path.join(staging, ".unpacked")
  try:
    with tarfile.open(archive, "r:*") as tar:
      tar.extractall(unpacked, filter="data")
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


def fetch(name: str, dest: str, base_url: str = BASE_URL,
          timeout: float = 60) -> str:
  """Downloads and extracts dataset `name` into `dest/name`; returns it.
  The archive is downloaded and extracted in a temporary folder of the
  writer (pix2pix_tf.outputs) beside `dest/name`, swapped into place when
  complete: a failure leaves no half-extracted dataset."""
  target = os.path.join(dest, name)
  if os.path.isdir(os.path.join(target, "train")):
    print(f"{target} already exists; nothing to do.")
    return target
  folder, _ = outputs.folder_output(target, "dest", kind="dataset download")
  url = f"{base_url.rstrip('/')}/{name}.tar.gz"

  def build(staging):
    archive = os.path.join(staging, f".{name}.tar.gz")
    print(f"Downloading {url}")
    download(url, archive, timeout)
    extract(archive, name, staging)
    os.remove(archive)

  folder.replace_folder(name, build)
  splits = sorted(s for s in os.listdir(target)
                  if os.path.isdir(os.path.join(target, s)))
  counts = ", ".join(f"{s}: {len(os.listdir(os.path.join(target, s)))}"
                     for s in splits)
  print(f"Extracted {name} into {target} ({counts}).")
  return target


def main(argv):
  if len(argv) != 2 or argv[1] not in DATASETS:
    raise app.UsageError(f"Give one dataset name: {', '.join(DATASETS)}.")
  fetch(argv[1], FLAGS.dest, FLAGS.base_url, FLAGS.timeout)


if __name__ == "__main__":
  app.run(errors.guarded("download_dataset", main))
