"""Building a dataset of A|B pairs from your own images: combine two folders,
colorize (grayscale -> colour), edges (Canny edges -> photo), and split into
train/val/test."""

import collections
import os
import random
import re
import shutil
import sys
import time
import types
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from pix2pix_tf import errors
from pix2pix_tf import outputs
from pix2pix_tf.data import images


class Summary:
  """Counts of what a command wrote and skipped, with reasons and names."""

  def __init__(self):
    self.written = 0
    self.skipped: Dict[str, List[str]] = collections.defaultdict(list)
    self.renamed: List[str] = []

  def skip(self, reason: str, name: str) -> None:
    """Counts `name` as skipped for `reason`."""
    self.skipped[reason].append(name)

  def report(self) -> str:
    """What was written, renamed and skipped (and why), for the log."""
    lines = [f"Written: {self.written}"]
    if self.renamed:
      shown = ", ".join(self.renamed[:10]) + (
          " ..." if len(self.renamed) > 10 else "")
      lines.append(f"Written under another name (inputs share a name): "
                   f"{len(self.renamed)} ({shown})")
    for reason, names in self.skipped.items():
      shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
      lines.append(f"Skipped, {reason}: {len(names)} ({shown})")
    return "\n".join(lines)


def is_grayscale(image: Image.Image, tolerance: int = 2) -> bool:
  """Whether no pixel's channels differ by more than `tolerance`."""
  array = np.asarray(image, np.int16)
  return bool(np.abs(array - array.mean(axis=2, keepdims=True)).max()
              <= tolerance)


def write_pair(left: Image.Image, right: Image.Image, output: outputs.Folder,
               name: str) -> None:
  """Saves left | right side by side as the PNG `name` in `output`."""
  pair = Image.new("RGB", (left.width + right.width, left.height))
  pair.paste(left, (0, 0))
  pair.paste(right, (left.width, 0))
  output.write(name, lambda path: pair.save(path, format="PNG"))


def written_before(output: outputs.Folder, names: Sequence[str]) -> set:
  """Which of `names` an earlier run wrote (skipped now, so that an
  interrupted run resumes); outputs.OutputError, before any work, if any
  other file stands where one would be written."""
  output.check(names)
  return {n for n in names if os.path.exists(output.target(n))}


def resized(image: Image.Image,
            size: Optional[Tuple[int, int]]) -> Image.Image:
  """`image` at `size` (bicubic), or as it is for None or its own size."""
  if size is None or image.size == size:
    return image
  return image.resize(size, Image.BICUBIC)


class Progress:
  """`done` of `count` (None: unknown) `unit`s: a line rewritten in place on
  a terminal, one line at the end otherwise. Written here because Keras's
  bar would cost TensorFlow's import (seconds) in tools that need none."""

  def __init__(self, count: Optional[int], unit: str = "files"):
    self.count, self.unit = count, unit
    self.start = time.monotonic()
    self.live, self.ended = sys.stdout.isatty(), False

  def update(self, done: int, finished: bool = False) -> None:
    """Says that `done` are done; `finished` when no more will come."""
    if self.ended:
      return
    finished = finished or self.count is not None and done >= self.count
    self.ended = finished
    of = "" if self.count is None else f"/{self.count}"
    line = (f"{done}{of} {self.unit}, "
            f"{time.monotonic() - self.start:.1f} s")
    if self.live:
      sys.stdout.write("\r" + line + ("\n" if finished else ""))
    elif finished:
      sys.stdout.write(line + "\n")
    sys.stdout.flush()


def make_pairs(photos: Sequence[str], output: outputs.Folder, split: str,
               size: Optional[int], make_a: Callable,
               skip_photo: Callable = None,
               max_pixels: Optional[int] = None) -> Summary:
  """For each photo: A = make_a(photo), B = photo, written to
  `output`/`split`."""
  summary = Summary()
  names = images.png_names(photos)
  done = written_before(output, [f"{split}/{n}" for n in names])
  bar = Progress(len(photos))
  for i, (path, name) in enumerate(zip(photos, names)):
    if name != os.path.splitext(os.path.basename(path))[0] + ".png":
      summary.renamed.append(f"{os.path.basename(path)} -> {name}")
    if f"{split}/{name}" in done:
      summary.skip("already written", name)
    else:
      try:
        photo = images.read_rgb(path, max_pixels)
        reason = skip_photo(photo) if skip_photo else None
        if reason:
          summary.skip(reason, os.path.basename(path))
        else:
          photo = resized(photo, (size, size) if size else None)
          write_pair(make_a(photo), photo, output, f"{split}/{name}")
          summary.written += 1
      except images.TooLargeError:
        summary.skip("larger than --max_pixels", path)
      except (OSError, ValueError) as e:
        summary.skip("unreadable", f"{path} ({type(e).__name__})")
    bar.update(i + 1)
  return summary


def colorize(photos: Sequence[str], output: outputs.Folder, split: str,
             size: Optional[int] = 256,
             max_pixels: Optional[int] = None) -> Summary:
  """A = grayscale (as RGB), B = colour photo; grayscale photos skipped."""
  return make_pairs(
      photos, output, split, size,
      make_a=lambda photo: photo.convert("L").convert("RGB"),
      skip_photo=lambda photo: "already grayscale" if is_grayscale(photo)
      else None, max_pixels=max_pixels)


def opencv() -> types.ModuleType:
  """The cv2 module, which only `edges` needs: an optional dependency.

  Raises:
    ValueError: OpenCV is not installed, with the command that installs it.
  """
  try:
    import cv2  # pylint: disable=g-import-not-at-top  (optional: [edges])
  except ImportError:
    raise errors.CommandError(
        "edges needs OpenCV, an optional dependency of about 150 MB: pip "
        "install 'pix2pix_tf[edges]' (or opencv-python-headless).") from None
  return cv2


def canny_edges(photo: Image.Image, low: int = 100,
                high: int = 200) -> Image.Image:
  """Canny edges of a photo, black lines on white (edges2shoes style)."""
  gray = np.asarray(photo.convert("L"))
  edges = opencv().Canny(gray, low, high)
  return Image.fromarray(255 - edges).convert("RGB")


def edges(photos: Sequence[str], output: outputs.Folder, split: str,
          size: Optional[int] = 256, low: int = 100, high: int = 200,
          max_pixels: Optional[int] = None) -> Summary:
  """Pairs of (Canny edges, photo), as edges2shoes; CommandError without
  OpenCV, before anything is written."""
  opencv()
  return make_pairs(photos, output, split, size,
                    make_a=lambda photo: canny_edges(photo, low, high),
                    max_pixels=max_pixels)


def pair_key(path: str, pattern: Optional[str]) -> Optional[str]:
  """What pairs a file with its twin: its stem, or with --pattern the first
  group (or whole match) of the pattern in it; None without a match."""
  stem = os.path.splitext(os.path.basename(path))[0]
  if not pattern:
    return stem
  match = re.search(pattern, stem)
  if not match:
    return None
  return match.group(1) if match.groups() else match.group(0)


def combine(a_files: Sequence[str], b_files: Sequence[str],
            output: outputs.Folder, split: str, size: Optional[int] = None,
            pattern: Optional[str] = None,
            max_pixels: Optional[int] = None) -> Summary:
  """Pairs A and B files by name (or --pattern key) into A|B images in
  `output`/`split`."""
  summary = Summary()
  a_groups, b_groups = collections.defaultdict(list), collections.defaultdict(
      list)
  for files, groups in ((a_files, a_groups), (b_files, b_groups)):
    for path in files:
      groups[pair_key(path, pattern)].append(path)
  for path in a_groups.pop(None, []) + b_groups.pop(None, []):
    summary.skip("name does not match --pattern", os.path.basename(path))
  # A key shared by several files on one side pairs none of them: which one
  # was meant is not known. All are named.
  for key in sorted(set(a_groups) | set(b_groups)):
    a_paths, b_paths = a_groups.get(key, []), b_groups.get(key, [])
    if len(a_paths) > 1 or len(b_paths) > 1:
      summary.skip("several files share a key", f"{key}: " + ", ".join(
          os.path.basename(p) for p in a_paths + b_paths))
      a_groups.pop(key, None)
      b_groups.pop(key, None)
  a_keys = {key: paths[0] for key, paths in a_groups.items()}
  b_keys = {key: paths[0] for key, paths in b_groups.items()}
  for key, path in a_keys.items():
    if key is None or key not in b_keys:
      summary.skip("no B file of the same name", os.path.basename(path))
  for key, path in b_keys.items():
    if key is None or key not in a_keys:
      summary.skip("no A file of the same name", os.path.basename(path))
  keys = sorted(k for k in a_keys if k is not None and k in b_keys)
  done = written_before(output, [f"{split}/{key}.png" for key in keys])
  bar = Progress(len(keys))
  for i, key in enumerate(keys):
    if f"{split}/{key}.png" in done:
      summary.skip("already written", f"{key}.png")
    else:
      try:
        image_a = images.read_rgb(a_keys[key], max_pixels)
        image_b = images.read_rgb(b_keys[key], max_pixels)
        shape = (size, size) if size else image_a.size
        write_pair(resized(image_a, shape), resized(image_b, shape), output,
                   f"{split}/{key}.png")
        summary.written += 1
      except images.TooLargeError as e:
        summary.skip("larger than --max_pixels", e.path)
      except (OSError, ValueError) as e:
        bad = a_keys[key]
        try:
          images.read_rgb(bad)
          bad = b_keys[key]
        except (OSError, ValueError):
          pass
        summary.skip("unreadable", f"{bad} ({type(e).__name__})")
    bar.update(i + 1)
  return summary


def _files_to_split(data_dir: str, force: bool) -> List[str]:
  """The pairs in data_dir (or data_dir/train), and with --force those
  already in the splits."""
  train_dir = os.path.join(data_dir, "train")
  files = images.list_images(data_dir)
  if force:  # Gather every split back before splitting again.
    for name in ("train", "val", "test"):
      if os.path.isdir(os.path.join(data_dir, name)):
        files += images.list_images(os.path.join(data_dir, name))
  elif not files and os.path.isdir(train_dir):
    files = images.list_images(train_dir)
  if not files:
    raise errors.CommandError(f"{data_dir} holds no images to split.")
  return files


def _check_moves(data_dir: str, files: Sequence[str]) -> None:
  """Nothing is moved until every move is known to be safe: no two files of
  one name, and no move onto a file that is not itself being moved."""
  by_name = collections.defaultdict(list)
  for path in files:
    by_name[os.path.basename(path)].append(path)
  shared = {n: p for n, p in by_name.items() if len(p) > 1}
  if shared:
    name, paths = sorted(shared.items())[0]
    raise errors.CommandError(
        f"{len(shared)} file name(s) occur in more than one place, e.g. "
        f"{name}: {', '.join(paths)}; splitting would overwrite one with "
        "another. Rename or remove them, then split again.")
  moving = {os.path.abspath(p) for p in files}
  in_the_way = sorted(
      os.path.join(data_dir, split_name, os.path.basename(p))
      for p in files for split_name in ("train", "val", "test")
      if os.path.exists(os.path.join(data_dir, split_name,
                                     os.path.basename(p)))
      and os.path.abspath(os.path.join(data_dir, split_name,
                                       os.path.basename(p))) not in moving)
  if in_the_way:
    raise errors.CommandError(
        f"{len(in_the_way)} file(s) in the splits share a name with a file "
        f"to split, e.g. {in_the_way[0]}; splitting would overwrite them. "
        "Rename or remove them (or pass --force to split every split "
        "again), then split again.")


def split(data_dir: str, val: float, test: float, seed: int = 0,
          copy: bool = False, force: bool = False) -> Summary:
  """Distributes the pairs of data_dir (or data_dir/train) into splits."""
  if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
    raise errors.CommandError(f"--val={val} and --test={test} must be fractions in "
                     "[0, 1) leaving some pairs for training.")
  existing = [s for s in ("val", "test")
              if os.path.isdir(os.path.join(data_dir, s))
              and os.listdir(os.path.join(data_dir, s))]
  if existing and not force:
    raise errors.CommandError(
        f"{data_dir} already has {' and '.join(existing)} splits; pass "
        "--force to split again (their files are moved back first).")
  files = _files_to_split(data_dir, force)
  _check_moves(data_dir, files)
  names = sorted(files, key=os.path.basename)
  random.Random(seed).shuffle(names)
  n_val, n_test = round(len(names) * val), round(len(names) * test)
  plan = {"val": names[:n_val], "test": names[n_val:n_val + n_test],
          "train": names[n_val + n_test:]}
  summary = Summary()
  folder = outputs.Folder(data_dir, "data_dir", kind="datasets split")
  for name in plan:  # Before the first move: a file where a split belongs.
    if os.path.lexists(os.path.join(data_dir, name)) and not os.path.isdir(
        os.path.join(data_dir, name)):
      raise errors.CommandError(
          f"{os.path.join(data_dir, name)} is a file where the {name} split "
          "folder belongs; nothing was moved. Rename it, then split again.")
  for name, paths in plan.items():
    os.makedirs(os.path.join(data_dir, name), exist_ok=True)
    for path in paths:
      target = os.path.join(data_dir, name, os.path.basename(path))
      if os.path.abspath(path) == os.path.abspath(target):
        summary.written += 1
        continue
      if copy:
        folder.write(os.path.relpath(target, data_dir),
                     lambda staged, source=path: shutil.copy2(source, staged))
      else:  # Sorting the user's own pairs into splits is what split does.
        folder.move_in(path, os.path.relpath(target, data_dir))
      summary.written += 1
  print(", ".join(f"{name}: {len(paths)}" for name, paths in plan.items()))
  return summary
