"""`make_dataset`: a split as batches of (input_image, target_image) in
[-1, 1], for training (shuffled, jittered, repeated) or evaluation."""

import glob
import hashlib
import json
import os
from typing import Optional, Sequence, Union

import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf.data import decoding
from pix2pix_tf.data import headers
from pix2pix_tf.data import sources
from pix2pix_tf.data import transforms


# Bumped whenever what the cache holds changes (the decoding rule, say), so
# that no cache written by an older version is read back.
# 2: decode_image (Exif orientation, alpha on white); 3: 16-bit PNGs rounded
# to 8 bits (not their high byte).
_CACHE_FORMAT = 3


def cache_path(prefix: str, split: sources.Split,
               config: config_lib.Config,
               input_context: Optional[tf.distribute.InputContext] = None
               ) -> str:
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
  what = {
      "format": _CACHE_FORMAT,
      "files": files,
      "tfrecord": split.tfrecord,
      "shard": shard,
      "direction": config.data.direction,
      "load_size": config.data.load_size,
      "crop_size": config.data.crop_size,
      "input_channels": config.data.input_channels,
      "output_channels": config.data.output_channels
  }
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


def make_dataset(split: Union[sources.Split, Sequence[str]],
                 config: config_lib.Config, batch_size: int, training: bool,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 with_names: bool = False,
                 skip: int = 0, cache: str = "",
                 resolution: str = "training") -> tf.data.Dataset:
  """The batched dataset of (input_image, target_image) in [-1, 1].

  Args:
    split: a `sources.Split` from `open_split`, or a list of image paths.
    config: the run's Config (direction, sizes, flip, channels, seed,
      shuffle_buffer, deterministic, on_bad_image).
    batch_size: the batch size of this input pipeline (per replica under
      `distribute_datasets_from_function`).
    training: jitter, shuffle and repeat forever; otherwise one pass at
      `resolution`, in order (by size, where sizes differ).
    input_context: a `tf.distribute.InputContext`; shards the files across
      input pipelines (workers).
    with_names: evaluation only: yield (names, input_image, target_image).
    skip: training only: leave out this many elements of the stream first
      (a resumed run skips what it already trained on).
    cache: training only: "memory", or a path prefix for a disk cache of the
      decoded pairs (`cache_path` names the file). Evaluation makes one pass
      and is never cached.
    resolution: evaluation only: "training" resizes each half to the scale
      the generator was trained at (the crop_size square; width load_size,
      aspect kept, for scale_width*); "native" keeps its size. Pairs of
      different sizes are batched with others of their size.
  """
  if not isinstance(split, sources.Split):
    split = sources.Split(tuple(split), len(split))
  if cache and not training:
    raise ValueError("Only training data is cached: evaluation makes one "
                     "pass over its split.")
  paths = sources.shard_paths(split, input_context)
  if training:
    dataset = _training_stream(split, paths, config, skip, cache,
                               input_context)
  else:
    dataset = sources.read_contents(split, paths, deterministic=True).map(
        _evaluation_pairs(config, with_names, resolution),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if config.data.on_bad_image == "skip":
      dataset = dataset.ignore_errors()  # Named before training.
  return _batched(dataset, config, batch_size, training, resolution).prefetch(
      tf.data.AUTOTUNE)


def _decode(config: config_lib.Config, contents):
  """Float pixels of `contents`, once its header declares at most
  --max_pixels (the gate every image passes before it is decoded)."""
  return decoding.decode_float(
      headers.check_encoded_pixels(contents, config.data.max_pixels))


def _pair(config: config_lib.Config, image):
  return transforms.split_pair(image, config.data.direction,
                               config.data.input_channels,
                               config.data.output_channels)


def _fitted(config: config_lib.Config, name, input_image, target_image):
  """A pair of one (uncropped) size fitted to the generator: reflect-padded
  to a multiple of 2**depth (--size_policy=pad), or checked to be one
  (reject: folders were checked by name before training; this stops a
  record that is not, naming it)."""
  multiple = 2 ** config.model.generator_depth
  if config.data.size_policy == "pad":
    return (transforms.fit_to_multiple(input_image, multiple),
            transforms.fit_to_multiple(target_image, multiple))
  shape = tf.shape(input_image)
  check = tf.debugging.Assert(
      tf.reduce_all(tf.equal(shape[:2] % multiple, 0)),
      [name, "(height, width):", shape[:2], "is not a multiple of "
       f"{multiple} as the generator needs. Pass --size_policy=pad."])
  with tf.control_dependencies([check]):
    return tf.identity(input_image), tf.identity(target_image)


def _batched(dataset: tf.data.Dataset, config: config_lib.Config,
             batch_size: int, training: bool,
             resolution: str = "training") -> tf.data.Dataset:
  """Batches; pairs of different sizes (training under --preprocess without
  a crop, evaluation at native resolution or after scale_width) are batched
  with others of their size, so that any batch size works on images of any
  sizes."""
  if training:
    same_size = config.data.preprocess.endswith("crop")
  else:
    same_size = (resolution == "training" and
                 not config.data.preprocess.startswith("scale_width"))
  if same_size or batch_size == 1:
    # Under a strategy every replica needs a full batch: drop the remainder
    # in training. Evaluation keeps every example.
    return dataset.batch(batch_size, drop_remainder=training)

  def size(*element):
    shape = tf.cast(tf.shape(element[-2]), tf.int64)  # The input image.
    return shape[0] * 2 ** 32 + shape[1]

  return dataset.group_by_window(
      size, lambda _, same: same.batch(batch_size, drop_remainder=training),
      window_size=batch_size)


def _evaluation_pairs(config: config_lib.Config, with_names: bool,
                      resolution: str = "training"):
  """(name, contents) -> the pair at `resolution` (see `make_dataset`), in
  [-1, 1]."""

  def preprocess(name, contents):
    halves = _pair(config, _decode(config, contents))
    # An odd-width pair's right half is one column wider: both halves take
    # the narrower one's size (as in training).
    height = tf.shape(halves[0])[0]
    width = tf.minimum(tf.shape(halves[0])[1], tf.shape(halves[1])[1])
    if resolution == "native":
      halves = [half[:, :width] for half in halves]
    elif config.data.preprocess.startswith("scale_width"):
      size = tf.cast(tf.stack(transforms.scaled_size(
          height, width, "scale_width", config.data.load_size,
          config.data.crop_size)), tf.int32)
      halves = [tf.clip_by_value(tf.image.resize(
          half, size, method="bicubic", antialias=True), 0.0, 255.0)
                for half in halves]
    else:
      halves = [
          transforms.resize(half, config.data.crop_size) for half in halves
      ]
    input_image, target_image = (transforms.normalize(half)
                                 for half in halves)
    if with_names:
      return name, input_image, target_image
    return input_image, target_image

  return preprocess


def _shuffled_contents(split: sources.Split, paths: tf.data.Dataset,
                       config: config_lib.Config, cache: str,
                       input_context) -> tf.data.Dataset:
  """One epoch of training elements in a new order each epoch: decoded
  pairs (cached), file names (folders) or (name, contents) (TFRecords)."""
  deterministic = config.run.deterministic
  # --shuffle_buffer counts elements (file names, records, or cached pairs);
  # 0 shuffles the whole split, as the reference's data loader does.
  buffer = config.data.shuffle_buffer or max(split.count, 1)
  if cache:
    # The decoded pairs are cached after the first pass and shuffled after
    # the cache, so each epoch still comes in a new order. (The first pass
    # reads every file to fill the cache, resumed or not.) Decoded pairs
    # stay uint8 until after the cache: a quarter of float32.
    # Cached as uint8 (a quarter of float32): 16-bit PNGs rounded to the
    # nearest 8-bit value, so that cached and uncached runs differ by at
    # most half a level.
    dataset = sources.read_contents(split, paths, deterministic).map(
        lambda name, contents: (name, tf.cast(tf.round(
            _decode(config, contents)), tf.uint8)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if config.data.on_bad_image == "skip":
      dataset = dataset.ignore_errors()
    if cache != "memory":
      cache = cache_path(cache, split, config, input_context)
      _remove_stale_cache_files(cache)
    dataset = dataset.cache("" if cache == "memory" else cache)
  elif not split.tfrecord:
    # Folders: the file names are shuffled (cheap) and nothing is read
    # before the skip in `_training_stream`, so resuming late in a run costs
    # no reads.
    dataset = paths
  else:
    # TFRecords: shards in a new order each epoch, then records through a
    # shuffle buffer. Records must be read to be counted, so a resumed run
    # reads (but does not decode) the records it skips.
    dataset = sources.read_contents(
        split, paths.shuffle(len(split.paths), seed=config.optimisation.seed,
                             reshuffle_each_iteration=True), deterministic)
  return dataset.shuffle(buffer, seed=config.optimisation.seed,
                         reshuffle_each_iteration=True)


def _training_stream(split: sources.Split, paths: tf.data.Dataset,
                     config: config_lib.Config, skip: int, cache: str,
                     input_context) -> tf.data.Dataset:
  """Jittered training pairs in [-1, 1], forever, `skip` elements in."""
  deterministic = config.run.deterministic
  dataset = _shuffled_contents(split, paths, config, cache, input_context)
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
    # (The cache holds uint8 pairs; otherwise 16-bit PNGs keep 16 bits.)
    image = contents if cache else _decode(config, contents)
    input_image, target_image = _pair(config, image)
    seed = tf.stack([tf.constant(config.optimisation.seed, tf.int64), index])
    input_image, target_image = transforms.preprocess(
        input_image, target_image, seed, config.data.preprocess,
        config.data.load_size, config.data.crop_size, config.data.flip)
    if not config.data.preprocess.endswith("crop"):
      input_image, target_image = _fitted(config, name, input_image,
                                          target_image)
    return (transforms.normalize(input_image),
            transforms.normalize(target_image))

  dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=deterministic)
  if config.data.on_bad_image == "skip" and not cache:
    # Bad files were named before training (find_undecodable); this drops
    # any that remain, e.g. records of a TFRecord dataset.
    dataset = dataset.ignore_errors()
  return dataset
