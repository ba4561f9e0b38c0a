"""tf.data pipeline over side-by-side A|B image pairs.

The steps are small pure functions, composed by `make_dataset`:

    load_pair -> random_jitter (training) or resize (evaluation) -> normalize

`load_pair` splits a file into its left (A) and right (B) halves and orders
them by `direction` into (input_image, target_image). Both halves then go
through the same resize, crop and flip: they are stacked and transformed once.
"""

import os
from typing import Optional, Sequence

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


def check_headers(files: Sequence[str]) -> None:
  """Rejects files whose first bytes are not those of their format.

  Reads a few bytes per file, so it is cheap even for large datasets.
  Corrupt image data beyond the header is found when decoding (see
  `find_unreadable`).

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


def find_unreadable(files: Sequence[str]) -> Optional[str]:
  """Decodes each file and returns the first that fails, else None.

  Used after the pipeline reported a decode error, which TensorFlow raises
  without the file's name.
  """
  for path in files:
    try:
      _decode(tf.io.read_file(path), 3)
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError):
      return path
  return None


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
  image = tf.io.read_file(path)
  image = tf.cast(_decode(image, 3), tf.float32)
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


def make_dataset(files: Sequence[str], config, batch_size: int,
                 training: bool, input_context=None) -> tf.data.Dataset:
  """The batched dataset of (input_image, target_image) in [-1, 1].

  Args:
    files: image paths, from `list_images`.
    config: the run's Config (direction, sizes, flip, channels, seed,
      shuffle_buffer, deterministic).
    batch_size: the batch size of this input pipeline (per replica under
      `distribute_datasets_from_function`).
    training: jitter, shuffle and repeat forever; otherwise one pass, resized
      to crop_size, in file order.
    input_context: a `tf.distribute.InputContext`; shards the files across
      input pipelines (workers).
  """
  dataset = tf.data.Dataset.from_tensor_slices(list(files))
  if input_context is not None and input_context.num_input_pipelines > 1:
    # Shard by file, before anything is read, so each worker reads only its
    # own part.
    dataset = dataset.shard(input_context.num_input_pipelines,
                            input_context.input_pipeline_id)

  def load(path):
    return load_pair(path, config.direction, config.input_channels,
                     config.output_channels)

  if training:
    # Shuffle file names (cheap) before repeat, so each epoch is a full pass
    # in a new order and epochs do not blend into each other.
    dataset = dataset.shuffle(min(len(files), config.shuffle_buffer)
                              if config.shuffle_buffer else len(files),
                              seed=config.seed, reshuffle_each_iteration=True)
    dataset = dataset.repeat()
    # A per-element index gives each element its own stateless seed.
    dataset = dataset.enumerate()

    def preprocess(index, path):
      input_image, target_image = load(path)
      seed = tf.stack([tf.constant(config.seed, tf.int64), index])
      input_image, target_image = random_jitter(
          input_image, target_image, seed, config.load_size,
          config.crop_size, config.flip)
      return normalize(input_image), normalize(target_image)
  else:
    def preprocess(path):
      input_image, target_image = load(path)
      return (normalize(resize(input_image, config.crop_size)),
              normalize(resize(target_image, config.crop_size)))

  dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=config.deterministic or not training)
  # Under a strategy every replica needs a full batch: drop the remainder in
  # training. Evaluation keeps every example.
  dataset = dataset.batch(batch_size, drop_remainder=training)
  return dataset.prefetch(tf.data.AUTOTUNE)
