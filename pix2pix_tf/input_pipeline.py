"""tf.data pipeline over side-by-side A|B image pairs.

The steps are small pure functions, composed by `make_dataset`:

    load_pair -> random_jitter (training) or resize (evaluation) -> normalize

A split is read from a folder of image files or from the sharded TFRecords of
tools/make_tfrecords.py (a folder with a dataset.json); `open_split` returns
either as a `Split`.

`load_pair` splits a file into its left (A) and right (B) halves and orders
them by `direction` into (input_image, target_image). Both halves then go
through the same resize, crop and flip: they are stacked and transformed once.
"""

import dataclasses
import glob
import hashlib
import json
import os
from typing import List, Sequence, Tuple

import tensorflow as tf

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

# The first bytes of each accepted format: a quick check that catches files
# that are not images at all before training starts.
_MAGIC = {
    ".jpg": (b"\xff\xd8",), ".jpeg": (b"\xff\xd8",),
    ".png": (b"\x89PNG",), ".bmp": (b"BM",),
}

STANDARD_DATASETS = ("facades", "cityscapes", "maps", "edges2shoes",
                     "edges2handbags", "night2day")


class DatasetError(ValueError):
  """A missing, empty or unreadable dataset, with the path and the remedy."""


def list_images(data_dir: str, split: str) -> Sequence[str]:
  """The sorted image files of `<data_dir>/<split>`.

  Raises:
    DatasetError: the folder is missing or holds no images.
  """
  folder = os.path.join(data_dir, split)
  if not os.path.isdir(folder):
    name = os.path.basename(os.path.normpath(data_dir))
    dest = os.path.dirname(os.path.normpath(data_dir)) or "."
    download = f"python tools/download_dataset.py {name} --dest {dest}"
    if name not in STANDARD_DATASETS:
      download = (f"python tools/download_dataset.py NAME --dest {dest}, "
                  f"NAME one of {', '.join(STANDARD_DATASETS)}")
    raise DatasetError(
        f"Dataset folder {folder} does not exist. Point --data_dir at a "
        "folder with train/ (and optionally val/, test/) subfolders of A|B "
        f"images, or download a standard dataset: {download}.")
  files = sorted(
      os.path.join(folder, f) for f in os.listdir(folder)
      if f.lower().endswith(IMAGE_EXTENSIONS))
  if not files:
    raise DatasetError(
        f"Dataset folder {folder} holds no {'/'.join(IMAGE_EXTENSIONS)} "
        "files. Put the A|B image pairs there, or point --data_dir "
        "elsewhere.")
  return files


def has_split(data_dir: str, split: str) -> bool:
  folder = os.path.join(data_dir, split)
  return os.path.isdir(folder) and any(
      f.lower().endswith(IMAGE_EXTENSIONS) for f in os.listdir(folder))


TFRECORD_INFO = "dataset.json"


def shard_name(split: str, index: int, count: int) -> str:
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


def parse_record(record):
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
  return os.path.isfile(os.path.join(data_dir, TFRECORD_INFO))


def open_split(data_dir: str, split: str) -> Split:
  """The `split` of a folder dataset or of a TFRecord dataset.

  Raises:
    DatasetError: the split is missing or empty, naming the path.
  """
  if not is_tfrecord_dataset(data_dir):
    files = list_images(data_dir, split)
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
  if is_tfrecord_dataset(data_dir):
    try:
      open_split(data_dir, split)
      return True
    except DatasetError:
      return False
  return has_split(data_dir, split)


def check_headers(files: Sequence[str]) -> None:
  """Rejects files whose first bytes are not those of their format.

  Reads a few bytes per file, so it is cheap even for large datasets.
  Corrupt image data beyond the header is found when decoding (see
  `find_undecodable`).

  Raises:
    DatasetError: naming the first such file.
  """
  for path in files:
    magic = _MAGIC[os.path.splitext(path)[1].lower()]
    with open(path, "rb") as f:
      head = f.read(8)
    if not head.startswith(magic):
      raise DatasetError(
          f"{path} is not a {os.path.splitext(path)[1]} image (its first "
          "bytes do not match the format). Remove or replace it.")


def _decode(contents, channels):
  # decode_image handles JPEG, PNG, BMP and GIF; channels=3 turns grayscale,
  # palette and RGBA files into RGB (alpha dropped), channels=1 into luma.
  image = tf.io.decode_image(contents, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  if channels == 1:
    image = tf.image.rgb_to_grayscale(image)
  return image


def load_pair(path, direction: str = "AtoB", input_channels: int = 3,
              output_channels: int = 3):
  """Reads an A|B file and returns (input_image, target_image), float32 0..255.

  The left half is A and the right half B (for an odd width B gets the extra
  column, as the reference does). `direction='BtoA'` swaps them.
  """
  return split_pair(_decode(tf.io.read_file(path), 3), direction,
                    input_channels, output_channels)


def split_pair(image, direction: str = "AtoB", input_channels: int = 3,
               output_channels: int = 3):
  """A decoded A|B image (h, w, 3) -> (input_image, target_image) float32."""
  image = tf.cast(image, tf.float32)
  half = tf.shape(image)[1] // 2
  image_a = image[:, :half, :]
  image_b = image[:, half:, :]
  if direction == "BtoA":
    image_a, image_b = image_b, image_a
  return (_to_channels(image_a, input_channels),
          _to_channels(image_b, output_channels))


def _to_channels(image, channels):
  return tf.image.rgb_to_grayscale(image) if channels == 1 else image


def resize(image, size: int):
  """Bicubic, antialiased resize to size x size (the reference uses PIL's)."""
  image = tf.image.resize(image, [size, size], method="bicubic",
                          antialias=True)
  return tf.clip_by_value(image, 0.0, 255.0)


def random_jitter(input_image, target_image, seed, load_size: int = 286,
                  crop_size: int = 256, flip: bool = True):
  """The paper's jitter: resize to load_size, random crop, random mirror.

  Input and target are stacked so that one crop and one flip apply to both.
  Stateless random ops keyed by `seed` (shape [2]) make the result the same
  eagerly and inside tf.data.
  """
  input_image = resize(input_image, load_size)
  target_image = resize(target_image, load_size)
  in_channels = tf.shape(input_image)[-1]
  # Concatenate on channels (the two may differ in channel count).
  stacked = tf.concat([input_image, target_image], axis=-1)
  crop_seed, flip_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 2))
  stacked = tf.image.stateless_random_crop(
      stacked, [crop_size, crop_size, tf.shape(stacked)[-1]], seed=crop_seed)
  if flip:
    stacked = tf.image.stateless_random_flip_left_right(stacked,
                                                        seed=flip_seed)
  return stacked[..., :in_channels], stacked[..., in_channels:]


def normalize(image):
  """Maps 0..255 to [-1, 1], the range of the generator's tanh."""
  return image / 127.5 - 1.0


def to_uint8(image):
  """Maps [-1, 1] back to uint8 0..255."""
  return tf.cast(tf.round(tf.clip_by_value((image + 1.0) * 127.5, 0, 255)),
                 tf.uint8)


def find_undecodable(split: Split) -> List[str]:
  """Every file (or record name) of `split` that does not decode.

  One parallel decoding pass; used by --on_bad_image=skip to name each bad
  image once before training.
  """
  def check(name, contents):
    return name, tf.shape(_decode(contents, 3))[0]

  dataset = _named_contents(split, input_context=None)
  dataset = dataset.map(check, num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.ignore_errors()
  good = {name.decode() for name, _ in dataset.as_numpy_iterator()}
  if not split.tfrecord:
    return [p for p in split.paths if p not in good]
  names = _named_contents(split, None).map(lambda name, _: name)
  return sorted({n.decode() for n in names.as_numpy_iterator()} - good)


def _named_contents(split: Split, input_context) -> tf.data.Dataset:
  """(name, encoded bytes) of every pair, in order, sharded across input
  pipelines. (Training streams are built from `_shard_paths` and `_read` by
  `make_dataset`, which skips before it reads.)"""
  return _read(split, _shard_paths(split, input_context), deterministic=True)


def _shard_paths(split: Split, input_context) -> tf.data.Dataset:
  """This input pipeline's part of the split's files (or TFRecord shards)."""
  paths = tf.data.Dataset.from_tensor_slices(list(split.paths))
  if input_context is not None and input_context.num_input_pipelines > 1:
    # Shard by file (image files or TFRecord shards) before anything is
    # read, so each worker reads only its own part.
    paths = paths.shard(input_context.num_input_pipelines,
                        input_context.input_pipeline_id)
  return paths


def _read(split: Split, paths: tf.data.Dataset,
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


# Bumped whenever what the cache holds changes (the decoding rule, say), so
# that no cache written by an older version is read back.
_CACHE_FORMAT = 1


def cache_path(prefix: str, split: Split, config, input_context=None) -> str:
  """The disk-cache file of this split and configuration under `prefix`.

  The name carries a digest of what is cached: the split's files (names,
  sizes and modification times, or the TFRecord shards'), this pipeline's
  shard, and the settings that shape a pair. Another split, another
  configuration or changed files give another file, so a cache is never read
  back for data it does not hold; it is rebuilt instead.
  """
  files = []
  for path in split.paths:
    try:
      info = os.stat(path)
      files.append([path, info.st_size, info.st_mtime_ns])
    except OSError:
      files.append([path, None, None])
  shard = ([input_context.num_input_pipelines, input_context.input_pipeline_id]
           if input_context is not None else [1, 0])
  what = {"format": _CACHE_FORMAT, "files": files, "tfrecord": split.tfrecord,
          "shard": shard, "direction": config.direction,
          "load_size": config.load_size, "crop_size": config.crop_size,
          "input_channels": config.input_channels,
          "output_channels": config.output_channels}
  digest = hashlib.sha256(json.dumps(what).encode()).hexdigest()[:16]
  return f"{prefix}-{digest}"


def _remove_stale_cache_files(path: str) -> None:
  """Removes what a killed run left of an unfinished cache at `path`.

  TensorFlow finishes a disk cache (writes `<path>.index`) only after a
  whole pass; a run killed before that leaves a lockfile that makes every
  later run fail with "a concurrent caching iterator". The path is unique to
  this split, configuration and input pipeline, so no other live run of the
  same data writes it.
  """
  if os.path.exists(path + ".index"):
    return
  for leftover in glob.glob(glob.escape(path) + "_*.lockfile") + glob.glob(
      glob.escape(path) + "_*.tempstate*"):
    os.remove(leftover)


def make_dataset(split, config, batch_size: int, training: bool,
                 input_context=None, with_names: bool = False,
                 skip: int = 0, cache: str = "") -> tf.data.Dataset:
  """The batched dataset of (input_image, target_image) in [-1, 1].

  Args:
    split: a `Split` from `open_split`, or a list of image paths.
    config: the run's Config (direction, sizes, flip, channels, seed,
      shuffle_buffer, deterministic, on_bad_image).
    batch_size: the batch size of this input pipeline (per replica under
      `distribute_datasets_from_function`).
    training: jitter, shuffle and repeat forever; otherwise one pass, resized
      to crop_size, in order.
    input_context: a `tf.distribute.InputContext`; shards the files across
      input pipelines (workers).
    with_names: evaluation only: yield (names, input_image, target_image).
    skip: training only: leave out this many elements of the stream first
      (a resumed run skips what it already trained on).
    cache: training only: "memory", or a path prefix for a disk cache of the
      decoded pairs (`cache_path` names the file). Evaluation makes one pass
      and is never cached.
  """
  if not isinstance(split, Split):
    split = Split(tuple(split), len(split))
  if cache and not training:
    raise ValueError("Only training data is cached: evaluation makes one "
                     "pass over its split.")
  skip_bad = getattr(config, "on_bad_image", "error") == "skip"
  deterministic = config.deterministic or not training
  # --shuffle_buffer counts elements (file names, records, or cached pairs);
  # 0 shuffles the whole split, as the reference's data loader does.
  buffer = config.shuffle_buffer or max(split.count, 1)

  def decode(name, contents):
    # Decoded pairs stay uint8 until after the cache: a quarter of float32.
    return name, _decode(contents, 3)

  def pair(image):
    return split_pair(image, config.direction, config.input_channels,
                      config.output_channels)

  paths = _shard_paths(split, input_context)
  if not training:
    dataset = _read(split, paths, deterministic=True)
  elif cache:
    # The decoded pairs are cached after the first pass and shuffled after
    # the cache, so each epoch still comes in a new order. (The first pass
    # reads every file to fill the cache, resumed or not.)
    dataset = _read(split, paths, deterministic).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic)
    if skip_bad:
      dataset = dataset.ignore_errors()
    if cache != "memory":
      cache = cache_path(cache, split, config, input_context)
      _remove_stale_cache_files(cache)
    dataset = dataset.cache("" if cache == "memory" else cache)
    dataset = dataset.shuffle(buffer, seed=config.seed,
                              reshuffle_each_iteration=True)
  elif not split.tfrecord:
    # Folders: the file names are shuffled (cheap) and nothing is read
    # before the skip below, so resuming late in a run costs no reads.
    dataset = paths.shuffle(buffer, seed=config.seed,
                            reshuffle_each_iteration=True)
  else:
    # TFRecords: shards in a new order each epoch, then records through a
    # shuffle buffer. Records must be read to be counted, so a resumed run
    # reads (but does not decode) the records it skips.
    dataset = _read(split, paths.shuffle(len(split.paths), seed=config.seed,
                                         reshuffle_each_iteration=True),
                    deterministic)
    dataset = dataset.shuffle(buffer, seed=config.seed,
                              reshuffle_each_iteration=True)
  if training:
    # Shuffle before repeat, so each epoch is a full pass and epochs do not
    # blend into each other.
    dataset = dataset.repeat()
    # A per-element index gives each element its own stateless seed.
    dataset = dataset.enumerate()
    if skip:
      # Before decoding (and, for folders, before reading).
      dataset = dataset.skip(skip)
    if not cache and not split.tfrecord:
      dataset = dataset.map(
          lambda index, path: (index, (path, tf.io.read_file(path))),
          num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)

    def preprocess(index, element):
      name, contents = element
      image = contents if cache else _decode(contents, 3)
      input_image, target_image = pair(image)
      seed = tf.stack([tf.constant(config.seed, tf.int64), index])
      input_image, target_image = random_jitter(
          input_image, target_image, seed, config.load_size,
          config.crop_size, config.flip)
      return normalize(input_image), normalize(target_image)
  else:
    def preprocess(name, contents):
      input_image, target_image = pair(_decode(contents, 3))
      input_image = normalize(resize(input_image, config.crop_size))
      target_image = normalize(resize(target_image, config.crop_size))
      if with_names:
        return name, input_image, target_image
      return input_image, target_image

  dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=deterministic)
  if skip_bad and not cache:
    # Bad files were named before training (find_undecodable); this drops
    # any that remain, e.g. records of a TFRecord dataset.
    dataset = dataset.ignore_errors()
  # Under a strategy every replica needs a full batch: drop the remainder in
  # training. Evaluation keeps every example.
  dataset = dataset.batch(batch_size, drop_remainder=training)
  return dataset.prefetch(tf.data.AUTOTUNE)
