r"""Builds paired A|B datasets from your own images.

    python -m pix2pix_tf.datasets combine --a_dir=inputs --b_dir=targets --output=datasets/mine
    python -m pix2pix_tf.datasets colorize --photos=photos --output=datasets/colorize --size=256
    python -m pix2pix_tf.datasets edges --photos=photos --output=datasets/edges --size=256
    python -m pix2pix_tf.datasets split --data_dir=datasets/colorize --val=0.1 --test=0.1

combine: pairs files of the same name (or the same --pattern key) from two
  folders into A|B images; B is resized to A's size (or both to --size);
  unmatched names are listed.
colorize: A = the grayscale version, B = the colour photo; photos that are
  already grayscale are skipped and counted.
edges: A = Canny edges (OpenCV; --low and --high thresholds), black on white
  as in edges2shoes, B = the photo.
split: moves (or with --copy, copies) the pairs into train/, val/ and test/,
  reproducibly from --seed; refuses to touch existing splits without --force.

Every command reads jpg, png, bmp, webp (and what else Pillow reads), any
size, applies EXIF rotation, and turns palette and RGBA images into RGB (on
white). A corrupt file is named and skipped. Each output file is written to a
temporary name and renamed, so an interrupted run can be run again: it skips
what is already written. A summary says what was written and skipped, and why.
"""

import collections
import os
import random
import re
import shutil
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags

import numpy as np

from pix2pix_tf import config as config_lib

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif",
                    ".tiff", ".gif")
COMMANDS = ("combine", "colorize", "edges", "split")


class Summary:
  """Counts of what a command wrote and skipped, with reasons and names."""

  def __init__(self):
    self.written = 0
    self.skipped: Dict[str, List[str]] = collections.defaultdict(list)
    self.renamed: List[str] = []

  def skip(self, reason: str, name: str) -> None:
    self.skipped[reason].append(name)

  def report(self) -> str:
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


def png_names(files: Sequence[str]) -> List[str]:
  """The PNG name of each input's output: its stem plus ".png".

  Inputs whose stems collide (a.jpg and a.png) keep their extension in the
  name (a_jpg.png, a_png.png) so that no output overwrites another.
  """
  stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
  counts = collections.Counter(stems)
  names = []
  for path, stem in zip(files, stems):
    if counts[stem] > 1:
      stem = os.path.basename(path).replace(".", "_")
    names.append(f"{stem}.png")
  if len(set(names)) != len(names):
    raise ValueError("Inputs whose names differ only in case or punctuation "
                     "would overwrite each other's outputs; rename them.")
  return names


def check_output_folder(output: str, create: bool = True) -> None:
  """`output` is (or can be made) a folder, or ValueError before any work;
  made now if `create`."""
  existing = os.path.abspath(output)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ValueError(f"--output: {existing} is a file, not a folder. Choose "
                     "a folder to write into.")
  if not create:
    return
  try:
    os.makedirs(output, exist_ok=True)
  except OSError as e:
    raise ValueError(f"--output: {output} cannot be created ({e.strerror})."
                     " Choose another folder.") from None


def list_images(folder: str) -> List[str]:
  if not os.path.isdir(folder):
    raise ValueError(f"{folder} is not a folder.")
  return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                if f.lower().endswith(IMAGE_EXTENSIONS)
                and os.path.isfile(os.path.join(folder, f)))


class TooLargeError(ValueError):
  """An image that declares more pixels than --max_pixels."""

  def __init__(self, path: str, message: str):
    super().__init__(message)
    self.path = path


def check_pixels(path: str, max_pixels: int) -> None:
  """Reads the size from the file's header (Pillow decodes nothing until it
  is asked to) and raises TooLargeError above `max_pixels`, so that a small
  file declaring a huge image (a decompression bomb) is never decoded."""
  from PIL import Image
  try:
    with Image.open(path) as image:
      width, height = image.size
  except Image.DecompressionBombError as e:
    raise TooLargeError(path, f"{path}: {e}") from None
  if width * height > max_pixels:
    raise TooLargeError(
        path, f"{path} is {width}x{height} = {width * height} pixels, more than "
        f"--max_pixels={max_pixels}. Shrink it, or raise --max_pixels if "
        "the machine has the memory.")


def read_rgb(path: str, max_pixels: int = None):
  """An image as RGB by the project's one decoding rule, with Pillow.

  The rule is `input_pipeline.decode_image`'s (which training, the
  SavedModel and predict use): the Exif orientation of a JPEG applied,
  transparency (RGBA, LA, palette with transparency) composited on white,
  16-bit samples reduced to their high byte. Pillow reads more formats
  (TIFF), which the dataset tools accept. Raises OSError (or ValueError) for
  a file Pillow cannot read, TooLargeError above `max_pixels` (default:
  config_lib.DEFAULT_MAX_PIXELS), before decoding.
  """
  from PIL import Image, ImageOps
  check_pixels(path, max_pixels or config_lib.DEFAULT_MAX_PIXELS)
  with Image.open(path) as image:
    image.load()
    source_format = image.format
    if source_format == "JPEG":
      image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I"):
      # 16-bit gray: Pillow's convert() clips at 255; the rule keeps the
      # high byte, as tf.io.decode_image(dtype=uint8) does.
      image = Image.fromarray(
          (np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8), "L")
    # BMP alpha and GIF transparency are ignored, as decode_image does.
    if source_format not in ("BMP", "GIF") and (
        image.mode in ("RGBA", "LA", "PA") or (
            image.mode == "P" and "transparency" in image.info)):
      rgba = np.asarray(image.convert("RGBA"), np.float32)
      # The same arithmetic as input_pipeline's, so both give equal bytes.
      opacity = rgba[..., 3:] / 255.0
      on_white = rgba[..., :3] * opacity + 255.0 * (1.0 - opacity)
      return Image.fromarray(np.round(on_white).astype(np.uint8), "RGB")
    return image.convert("RGB")


def is_grayscale(image, tolerance: int = 2) -> bool:
  array = np.asarray(image, np.int16)
  return bool(np.abs(array - array.mean(axis=2, keepdims=True)).max()
              <= tolerance)


def write_pair(left, right, path: str) -> None:
  """Saves left | right side by side, atomically (temporary name, rename)."""
  from PIL import Image
  pair = Image.new("RGB", (left.width + right.width, left.height))
  pair.paste(left, (0, 0))
  pair.paste(right, (left.width, 0))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  temporary = path + ".tmp"
  pair.save(temporary, format="PNG")
  os.replace(temporary, path)


def resized(image, size: Optional[Tuple[int, int]]):
  from PIL import Image
  if size is None or image.size == size:
    return image
  return image.resize(size, Image.BICUBIC)


def progress(count: int):
  from keras.utils import Progbar
  return Progbar(count, unit_name="file",
                 verbose=1 if sys.stdout.isatty() else 2)


def make_pairs(photos: Sequence[str], output: str, size: Optional[int],
               make_a: Callable, skip_photo: Callable = None,
               max_pixels: Optional[int] = None) -> Summary:
  """For each photo: A = make_a(photo), B = photo, written to output."""
  summary = Summary()
  check_output_folder(output)
  names = png_names(photos)
  bar = progress(len(photos))
  for i, (path, name) in enumerate(zip(photos, names)):
    target = os.path.join(output, name)
    if name != os.path.splitext(os.path.basename(path))[0] + ".png":
      summary.renamed.append(f"{os.path.basename(path)} -> {name}")
    if os.path.exists(target):
      summary.skip("already written", name)
    else:
      try:
        photo = read_rgb(path, max_pixels)
        reason = skip_photo(photo) if skip_photo else None
        if reason:
          summary.skip(reason, os.path.basename(path))
        else:
          photo = resized(photo, (size, size) if size else None)
          write_pair(make_a(photo), photo, target)
          summary.written += 1
      except TooLargeError:
        summary.skip("larger than --max_pixels", path)
      except (OSError, ValueError) as e:
        summary.skip("unreadable", f"{path} ({type(e).__name__})")
    bar.update(i + 1)
  return summary


def colorize(photos: Sequence[str], output: str,
             size: Optional[int] = 256,
             max_pixels: Optional[int] = None) -> Summary:
  """A = grayscale (as RGB), B = colour photo; grayscale photos skipped."""
  return make_pairs(
      photos, output, size,
      make_a=lambda photo: photo.convert("L").convert("RGB"),
      skip_photo=lambda photo: "already grayscale" if is_grayscale(photo)
      else None, max_pixels=max_pixels)


def canny_edges(photo, low: int = 100, high: int = 200):
  """Canny edges of a photo, black lines on white (edges2shoes style)."""
  import cv2
  from PIL import Image
  gray = np.asarray(photo.convert("L"))
  edges = cv2.Canny(gray, low, high)
  return Image.fromarray(255 - edges).convert("RGB")


def edges(photos: Sequence[str], output: str, size: Optional[int] = 256,
          low: int = 100, high: int = 200,
          max_pixels: Optional[int] = None) -> Summary:
  return make_pairs(photos, output, size,
                    make_a=lambda photo: canny_edges(photo, low, high),
                    max_pixels=max_pixels)


def pair_key(path: str, pattern: Optional[str]) -> Optional[str]:
  stem = os.path.splitext(os.path.basename(path))[0]
  if not pattern:
    return stem
  match = re.search(pattern, stem)
  if not match:
    return None
  return match.group(1) if match.groups() else match.group(0)


def combine(a_files: Sequence[str], b_files: Sequence[str], output: str,
            size: Optional[int] = None, pattern: Optional[str] = None,
            max_pixels: Optional[int] = None) -> Summary:
  """Pairs A and B files by name (or --pattern key) into A|B images."""
  summary = Summary()
  check_output_folder(output)
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
  bar = progress(len(keys))
  for i, key in enumerate(keys):
    target = os.path.join(output, f"{key}.png")
    if os.path.exists(target):
      summary.skip("already written", f"{key}.png")
    else:
      try:
        image_a = read_rgb(a_keys[key], max_pixels)
        image_b = read_rgb(b_keys[key], max_pixels)
        shape = (size, size) if size else image_a.size
        write_pair(resized(image_a, shape), resized(image_b, shape), target)
        summary.written += 1
      except TooLargeError as e:
        summary.skip("larger than --max_pixels", e.path)
      except (OSError, ValueError) as e:
        bad = a_keys[key]
        try:
          read_rgb(bad)
          bad = b_keys[key]
        except (OSError, ValueError):
          pass
        summary.skip("unreadable", f"{bad} ({type(e).__name__})")
    bar.update(i + 1)
  return summary


def split(data_dir: str, val: float, test: float, seed: int = 0,
          copy: bool = False, force: bool = False) -> Summary:
  """Distributes the pairs of data_dir (or data_dir/train) into splits."""
  if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
    raise ValueError(f"--val={val} and --test={test} must be fractions in "
                     "[0, 1) leaving some pairs for training.")
  existing = [s for s in ("val", "test")
              if os.path.isdir(os.path.join(data_dir, s))
              and os.listdir(os.path.join(data_dir, s))]
  if existing and not force:
    raise ValueError(
        f"{data_dir} already has {' and '.join(existing)} splits; pass "
        "--force to split again (their files are moved back first).")
  train_dir = os.path.join(data_dir, "train")
  files = list_images(data_dir)
  if force:  # Gather every split back before splitting again.
    for name in ("train", "val", "test"):
      if os.path.isdir(os.path.join(data_dir, name)):
        files += list_images(os.path.join(data_dir, name))
  elif not files and os.path.isdir(train_dir):
    files = list_images(train_dir)
  if not files:
    raise ValueError(f"{data_dir} holds no images to split.")
  # Nothing is moved until every move is known to be safe: no two files of
  # one name, and no move onto a file that is not itself being moved.
  by_name = collections.defaultdict(list)
  for path in files:
    by_name[os.path.basename(path)].append(path)
  shared = {n: p for n, p in by_name.items() if len(p) > 1}
  if shared:
    name, paths = sorted(shared.items())[0]
    raise ValueError(
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
    raise ValueError(
        f"{len(in_the_way)} file(s) in the splits share a name with a file "
        f"to split, e.g. {in_the_way[0]}; splitting would overwrite them. "
        "Rename or remove them (or pass --force to split every split "
        "again), then split again.")
  names = sorted(files, key=os.path.basename)
  random.Random(seed).shuffle(names)
  n_val, n_test = round(len(names) * val), round(len(names) * test)
  plan = {"val": names[:n_val], "test": names[n_val:n_val + n_test],
          "train": names[n_val + n_test:]}
  summary = Summary()
  for name, paths in plan.items():
    folder = os.path.join(data_dir, name)
    os.makedirs(folder, exist_ok=True)
    for path in paths:
      target = os.path.join(folder, os.path.basename(path))
      if os.path.abspath(path) == os.path.abspath(target):
        summary.written += 1
        continue
      if copy:
        shutil.copy2(path, target + ".tmp")
        os.replace(target + ".tmp", target)
      else:
        os.replace(path, target)
      summary.written += 1
  print(", ".join(f"{name}: {len(paths)}" for name, paths in plan.items()))
  return summary


def define_flags():
  """Defines this command's flags (at start-up, like export's)."""
  flags.DEFINE_string("a_dir", None, "combine: folder of A (input) images.")
  flags.DEFINE_string("b_dir", None, "combine: folder of B (target) images.")
  flags.DEFINE_string("pattern", None,
                      "combine: a regular expression whose first group (or "
                      "whole match) in the file name pairs A with B, e.g. "
                      r"'(\d+)'. Default: the same file name.")
  flags.DEFINE_string("photos", None, "colorize, edges: folder of photos.")
  flags.DEFINE_string("output", None, "Dataset folder to write into.")
  flags.DEFINE_string("split", "train",
                      "Subfolder of --output to write pairs into.")
  flags.DEFINE_integer("size", None,
                       "Resize each half to size x size (combine default: "
                       "A's size; colorize and edges default: 256; 0 keeps "
                       "the photo's size).")
  flags.DEFINE_integer("low", 100, "edges: Canny's lower threshold.")
  flags.DEFINE_integer("high", 200, "edges: Canny's upper threshold.")
  flags.DEFINE_string("data_dir", None, "split: the dataset folder.")
  flags.DEFINE_float("val", 0.1, "split: share of pairs for val/.")
  flags.DEFINE_float("test", 0.1, "split: share of pairs for test/.")
  flags.DEFINE_integer("seed", 0, "split: seed of the shuffle.")
  flags.DEFINE_bool("copy", False, "split: copy instead of moving.")
  flags.DEFINE_bool("force", False, "split: split again over existing "
                    "splits.")
  flags.DEFINE_integer("max_pixels", config_lib.DEFAULT_MAX_PIXELS,
                       "colorize, edges, combine: images whose header "
                       "declares more pixels (width x height) are skipped, "
                       "before they are decoded.", lower_bound=1)


def _require(*names):
  missing = [n for n in names if not flags.FLAGS[n].value]
  if missing:
    raise app.UsageError(f"needs {', '.join('--' + n for n in missing)}.")


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f"Give one command: {', '.join(COMMANDS)}.")
  command, FLAGS = argv[1], flags.FLAGS
  try:
    if command == "split":
      _require("data_dir")
      summary = split(FLAGS.data_dir, FLAGS.val, FLAGS.test, FLAGS.seed,
                      FLAGS.copy, FLAGS.force)
    else:
      _require("output", *(("a_dir", "b_dir") if command == "combine"
                           else ("photos",)))
      output = os.path.join(FLAGS.output, FLAGS.split)
      if command == "combine":
        summary = combine(list_images(FLAGS.a_dir), list_images(FLAGS.b_dir),
                          output, FLAGS.size, FLAGS.pattern,
                          FLAGS.max_pixels)
      else:
        size = 256 if FLAGS.size is None else (FLAGS.size or None)
        photos = list_images(FLAGS.photos)
        summary = (colorize(photos, output, size, FLAGS.max_pixels)
                   if command == "colorize" else
                   edges(photos, output, size, FLAGS.low, FLAGS.high,
                         FLAGS.max_pixels))
  except ValueError as e:
    sys.exit(f"pix2pix_tf.datasets {command}: error: {e}")
  print(summary.report())
  if not summary.written and not summary.skipped.get("already written"):
    sys.exit(f"pix2pix_tf.datasets {command}: error: no pair was written "
             "(the summary above says why).")


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
