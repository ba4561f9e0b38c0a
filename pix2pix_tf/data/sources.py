"""Where pairs come from: a folder of image files or the sharded TFRecords of
tools/make_tfrecords.py, opened as a `Split`; and the checks that name a bad
file before training starts."""

import dataclasses
import json
import os
from typing import List, Optional, Sequence, Tuple

import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf import errors
from pix2pix_tf.data import decoding
from pix2pix_tf.data import headers
from pix2pix_tf.data import images
from pix2pix_tf.data import transforms


# The first bytes of each accepted format: a quick check that catches files
# that are not images at all before training starts.
_MAGIC = {
    ".jpg": (b"\xff\xd8",), ".jpeg": (b"\xff\xd8",),
    ".png": (b"\x89PNG",), ".bmp": (images.BMP_SIGNATURE,),
}


STANDARD_DATASETS = ("facades", "cityscapes", "maps", "edges2shoes",
                     "edges2handbags", "night2day")


class DatasetError(errors.CommandError):
  """A missing, empty or unreadable dataset, with the path and the remedy."""


def list_split(data_dir: str, split: str) -> Sequence[str]:
  """The sorted image files of `<data_dir>/<split>`.

  Raises:
    DatasetError: the folder is missing or holds no images.
  """
  folder = os.path.join(data_dir, split)
  if not os.path.isdir(folder):
    name = os.path.basename(os.path.normpath(data_dir))
    dest = os.path.dirname(os.path.normpath(data_dir)) or "."
    download = (f"python -m pix2pix_tf.datasets download {name} "
                f"--output={data_dir}")
    if name not in STANDARD_DATASETS:
      download = (f"python -m pix2pix_tf.datasets download NAME "
                  f"--output={os.path.join(dest, 'NAME')}, NAME one of "
                  f"{', '.join(STANDARD_DATASETS)}")
    raise DatasetError(
        f"Dataset folder {folder} does not exist. Point --data_dir at a "
        "folder with train/ (and optionally val/, test/) subfolders of A|B "
        f"images, or download a standard dataset: {download}.")
  files = images.list_images(folder, images.PAIR_EXTENSIONS)
  if not files:
    raise DatasetError(
        f"Dataset folder {folder} holds no "
        f"{'/'.join(images.PAIR_EXTENSIONS)} "
        "files. Put the A|B image pairs there, or point --data_dir "
        "elsewhere.")
  return files


def has_split(data_dir: str, split: str) -> bool:
  """Whether `<data_dir>/<split>` is a folder holding pair images."""
  folder = os.path.join(data_dir, split)
  return os.path.isdir(folder) and any(
      f.lower().endswith(images.PAIR_EXTENSIONS) for f in os.listdir(folder))


TFRECORD_INFO = "dataset.json"


def shard_name(split: str, index: int, count: int) -> str:
  """The file name of TFRecord shard `index` of `count` of a split."""
  return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def encode_record(contents: bytes, name: str) -> bytes:
  """A tf.train.Example with a pair file's bytes, as they are, and its name."""
  feature = {
      "pair": tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[contents])),
      "name": tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[name.encode()])),
  }
  return tf.train.Example(features=tf.train.Features(
      feature=feature)).SerializeToString()


def parse_record(record: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """(name, contents) of a serialized record."""
  parsed = tf.io.parse_single_example(record, {
      "pair": tf.io.FixedLenFeature([], tf.string),
      "name": tf.io.FixedLenFeature([], tf.string)})
  return parsed["name"], parsed["pair"]


@dataclasses.dataclass(frozen=True)
class Split:
  """A split's data: image files, or TFRecord shards holding `count` pairs."""
  paths: Tuple[str, ...]
  count: int
  tfrecord: bool = False
  description: str = ""

  def without(self, names: Sequence[str]) -> "Split":
    """The split less the named files (folders only)."""
    bad = set(names)
    paths = tuple(p for p in self.paths if p not in bad)
    return dataclasses.replace(self, paths=paths, count=len(paths)) if (
        not self.tfrecord) else self


def is_tfrecord_dataset(data_dir: str) -> bool:
  """Whether `data_dir` holds TFRecords (it has a dataset.json)."""
  return os.path.isfile(os.path.join(data_dir, TFRECORD_INFO))


def open_split(data_dir: str, split: str) -> Split:
  """The `split` of a folder dataset or of a TFRecord dataset.

  Raises:
    DatasetError: the split is missing or empty, naming the path.
  """
  if not is_tfrecord_dataset(data_dir):
    files = list_split(data_dir, split)
    return Split(tuple(files), len(files), False,
                 os.path.join(data_dir, split))
  info_path = os.path.join(data_dir, TFRECORD_INFO)
  try:
    with open(info_path) as f:
      info = json.load(f)["splits"][split]
  except KeyError:
    raise DatasetError(f"{info_path} lists no {split} split. Write it with "
                       "tools/make_tfrecords.py from a folder that has "
                       f"{split}/.") from None
  except ValueError as e:
    raise DatasetError(f"{info_path} is not readable ({e}); write the "
                       "dataset again with tools/make_tfrecords.py.") from e
  shards = tuple(os.path.join(data_dir, shard_name(split, i, info["shards"]))
                 for i in range(info["shards"]))
  missing = [p for p in shards if not os.path.exists(p)]
  if missing:
    raise DatasetError(f"{missing[0]} is missing ({len(missing)} of "
                       f"{len(shards)} {split} shards). Write the dataset "
                       "again with tools/make_tfrecords.py.")
  return Split(shards, int(info["pairs"]), True,
               os.path.join(data_dir, f"{split}-*.tfrecord"))


def split_exists(data_dir: str, split: str) -> bool:
  """Whether the folder or TFRecord dataset has the split."""
  if is_tfrecord_dataset(data_dir):
    try:
      open_split(data_dir, split)
      return True
    except DatasetError:
      return False
  return has_split(data_dir, split)


def check_headers(files: Sequence[str],
                  max_pixels: int = config_lib.DEFAULT_MAX_PIXELS) -> None:
  """Rejects files whose first bytes are not those of their format, images
  narrower than 2 pixels (which hold no two halves) and images that declare
  more than `max_pixels` pixels (decompression bombs included).

  Reads only each file's header, so it is cheap even for large
  datasets. Corrupt image data beyond the header is found
  when decoding (see `find_undecodable`).

  Raises:
    DatasetError: naming the first such file.
    TooLargeError: naming the first image over `max_pixels`.
  """
  for path in files:
    magic = _MAGIC[os.path.splitext(path)[1].lower()]
    with open(path, "rb") as f:
      head = f.read(8)
    if not head.startswith(magic):
      raise DatasetError(
          f"{path} is not a {os.path.splitext(path)[1]} image (its first "
          "bytes do not match the format). Remove or replace it.")
    try:
      width, height, _ = images.check_pixels(path, max_pixels)
    except OSError as e:
      raise DatasetError(f"{path} has an unreadable header ({e}). Remove or "
                         "replace it.") from None
    if width < 2:
      raise DatasetError(
          f"{path} is {width}x{height} pixels, narrower than 2 pixels: it "
          "cannot hold two halves side by side. Remove or replace it.")


def check_pair_sizes(files: Sequence[str], config: config_lib.Config
                     ) -> None:
  """Names the first pair whose halves --preprocess cannot take under
  --size_policy (see `transforms.check_preprocessable`), from the headers
  and the Exif orientation, before training. Only the modes that keep an
  image's size can fail: the others are not read. Files whose header
  cannot be read are left to the other checks (or to --on_bad_image).

  Raises:
    DatasetError: naming the file, its size and what to do.
  """
  if config.data.preprocess not in transforms.SIZE_KEEPING_MODES:
    return
  multiple = 2 ** config.model.generator_depth
  for path in files:
    try:
      width, height = images.declared_size(path, upright=True)
    except (images.TooLargeError, OSError):
      continue
    try:
      transforms.check_preprocessable(path, height, width // 2,
                                      config.data.preprocess,
                                      config.data.load_size,
                                      config.data.crop_size, multiple,
                                      config.data.size_policy == "pad")
    except ValueError as e:
      raise DatasetError(str(e)) from None


def find_undecodable(split: Split, max_pixels: int) -> List[str]:
  """Every file (or record name) of `split` that is no usable A|B pair: its
  header declares more than `max_pixels` pixels, it does not decode, or it
  is narrower than 2 pixels (no two halves).

  One parallel decoding pass; used by --on_bad_image=skip to name each bad
  image once before training, and to name the one that stopped a run.
  """
  def check(name, contents):
    width = tf.shape(decoding.decode_image(
        headers.check_encoded_pixels(contents, max_pixels)))[1]
    with tf.control_dependencies([tf.debugging.assert_greater_equal(
        width, 2, message="narrower than 2 pixels")]):
      return name, tf.identity(width)

  dataset = named_contents(split, input_context=None)
  dataset = dataset.map(check, num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.ignore_errors()
  good = {name.decode() for name, _ in dataset.as_numpy_iterator()}
  if not split.tfrecord:
    return [p for p in split.paths if p not in good]
  names = named_contents(split, None).map(lambda name, _: name)
  return sorted({n.decode() for n in names.as_numpy_iterator()} - good)


def named_contents(split: Split,
                   input_context: Optional[tf.distribute.InputContext]
                   ) -> tf.data.Dataset:
  """(name, encoded bytes) of every pair, in order, sharded across input
  pipelines. (Training streams are built from `shard_paths` and
  `read_contents` by `make_dataset`, which skips before it reads.)"""
  return read_contents(split, shard_paths(split, input_context),
                       deterministic=True)


def shard_paths(split: Split,
                input_context: Optional[tf.distribute.InputContext]
                ) -> tf.data.Dataset:
  """This input pipeline's part of the split's files (or TFRecord shards)."""
  paths = tf.data.Dataset.from_tensor_slices(list(split.paths))
  if input_context is not None and input_context.num_input_pipelines > 1:
    # Shard by file (image files or TFRecord shards) before anything is
    # read, so each worker reads only its own part.
    paths = paths.shard(input_context.num_input_pipelines,
                        input_context.input_pipeline_id)
  return paths


def read_contents(split: Split, paths: tf.data.Dataset,
          deterministic: bool) -> tf.data.Dataset:
  """(name, encoded bytes) for a dataset of image paths or TFRecord shards."""
  if not split.tfrecord:
    return paths.map(lambda path: (path, tf.io.read_file(path)),
                     num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=deterministic)
  # Several shards are read at once; with deterministic=False records come
  # in whichever order the reads finish, so --deterministic fixes it.
  records = paths.interleave(tf.data.TFRecordDataset,
                             cycle_length=tf.data.AUTOTUNE,
                             num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=deterministic)
  return records.map(parse_record, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=deterministic)
