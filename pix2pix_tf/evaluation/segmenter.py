"""The segmenter behind the FCN-score, trained offline on a dataset's train
split (`python -m pix2pix_tf.segmenter`).

The paper scores labels -> photo models by segmenting the generated photos
with an FCN-8s trained on Cityscapes and comparing with the input labels.
Those weights cannot be had offline, so this trains a segmentation network
(a U-Net of this package, ending in per-class logits) on the real photos and
label maps of the train split, and saves it as a SavedModel whose
serving_default maps float32 [batch, h, w, 3] photos in [-1, 1] to
{"logits": [batch, h, w, classes]}, for `evaluate --segmenter`. Its scores
are comparable within this project, not to the paper's FCN-8s numbers.
"""

import json
import math
import sys
from typing import Sequence

import keras
import tensorflow as tf

from pix2pix_tf import data as data_lib
from pix2pix_tf import errors
from pix2pix_tf import kernels
from pix2pix_tf import models
from pix2pix_tf import outputs
from pix2pix_tf.data import Palette
from pix2pix_tf.evaluation.loop import detect_labels_side
from pix2pix_tf.evaluation.segmentation import IGNORE, colors_to_classes


def build_segmenter(num_classes: int, depth: int, filters: int
                    ) -> keras.Model:
  """This package's U-Net, ending in per-class logits instead of tanh,
  trained on the layer kernels a pix2pix run uses on this machine by
  default (`kernels.machines`)."""
  unet = models.unet_generator(depth, 3, num_classes, filters, norm="batch",
                               dropout=0.0, name="segmenter")
  used = kernels.machines.kernels_used()
  return kernels.with_kernels(
      keras.Model(unet.input, unet.get_layer("up0_conv").output,
                  name="segmenter"),
      [option for option in kernels.LAYER_OPTIONS if used[option]])


def segmenter_dataset(files: Sequence[str], palette: Palette,
                      labels_half: str, size: int, batch_size: int,
                      training: bool, seed: int) -> tf.data.Dataset:
  """(photo in [-1, 1], class per pixel) batches of the pairs' photos and
  label maps at size x size; mirrored at random when training."""

  def load(index, path):
    direction = "BtoA" if labels_half == "A" else "AtoB"
    photo, labels = data_lib.load_pair(path, direction)
    photo = data_lib.resize(photo, size)
    # Nearest-neighbour resizing keeps label colours pure.
    labels = tf.image.resize(labels, [size, size], method="nearest")
    if training:
      flip = tf.random.stateless_uniform(
          [], tf.stack([tf.constant(seed, tf.int64), index])) < 0.5
      photo = tf.cond(flip, lambda: photo[:, ::-1], lambda: photo)
      labels = tf.cond(flip, lambda: labels[:, ::-1], lambda: labels)
    classes = colors_to_classes(tf.cast(labels, tf.uint8), palette)
    return data_lib.normalize(photo), classes

  dataset = tf.data.Dataset.from_tensor_slices(list(files))
  if training:
    dataset = dataset.shuffle(len(files), seed=seed)
  dataset = dataset.enumerate().map(load, num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def detect_labels_half(files: Sequence[str], palette: Palette) -> str:
  """Which half ("A" or "B") of the first pair is the label map."""
  a, b = data_lib.load_pair(files[0])  # AtoB: input A, target B.
  side = detect_labels_side(data_lib.normalize(a)[None],
                            data_lib.normalize(b)[None], palette)
  if side is None:
    raise errors.CommandError(
        f"Neither half of {files[0]} looks like a {palette.name} "
        "label map; set --labels=A or --labels=B.")
  return {"input": "A", "target": "B"}[side]


def save_segmenter(model: keras.Model, palette: Palette,
                   output: outputs.Folder, name: str) -> None:
  """Writes the SavedModel as `name` in the outputs.Folder `output`, built
  beside it and swapped in."""

  class Segmenter(tf.Module):

    def __init__(self):
      super().__init__()
      self.model = model
      self.classes_json = tf.Variable(json.dumps(palette.class_names),
                                      trainable=False)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3],
                                                tf.float32, name="images")])
    def serving_default(self, images):
      return {"logits": tf.cast(self.model(images, training=False),
                                tf.float32)}

  module = Segmenter()
  output.replace_folder(name, lambda staging: tf.saved_model.save(
      module, staging, signatures={"serving_default": module.serving_default}))


def train(data_dir: str, label_palette: str, labels: str, output: str,
          image_size: int = 256, depth: int = 6, filters: int = 32,
          epochs: int = 20, batch_size: int = 8, learning_rate: float = 1e-3,
          seed: int = 0) -> None:
  """Trains a segmenter on `data_dir`'s train split and writes it to the
  folder `output` (checked before anything is read). `labels`: "A", "B",
  or "auto" (the half that looks like a `label_palette` label map)."""
  if image_size % 2 ** depth:
    raise errors.CommandError(f"--image_size={image_size} is not a multiple "
                              f"of 2^--depth={2 ** depth}.")
  folder, name = outputs.folder_output(
      output, "output", [outputs.Input(data_dir, "data_dir")],
      kind="segmenter")
  palette = data_lib.load_palette(label_palette)
  files = data_lib.list_split(data_dir, "train")
  data_lib.check_headers(files)
  labels_half = (detect_labels_half(files, palette) if labels == "auto"
                 else labels)
  keras.utils.set_random_seed(seed)
  model = build_segmenter(palette.num_classes, depth, filters)
  model.compile(
      optimizer=keras.optimizers.Adam(learning_rate),
      loss=keras.losses.SparseCategoricalCrossentropy(
          from_logits=True, ignore_class=IGNORE),
      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
  dataset = segmenter_dataset(files, palette, labels_half, image_size,
                              batch_size, True, seed)
  print(f"Training a {palette.name} segmenter on {len(files)} photos "
        f"(labels: {labels_half} half), "
        f"{math.ceil(len(files) / batch_size)} steps per epoch.")
  model.fit(dataset, epochs=epochs, verbose=1 if sys.stdout.isatty() else 2)
  save_segmenter(model, palette, folder, name)
  print(f"Saved the segmenter to {output}")
