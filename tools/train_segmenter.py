r"""Trains the segmenter behind the FCN-score, offline, on a dataset's train split.

    python tools/train_segmenter.py --data_dir=datasets/cityscapes \
        --label_palette=cityscapes --output=segmenters/cityscapes

The paper scores labels -> photo models by segmenting the generated photos
with an FCN-8s trained on Cityscapes and comparing with the input labels.
Those weights cannot be had offline, so this trains a segmentation network
(a U-Net of this package, ending in per-class logits) on the real photos and
label maps of the train split, and saves it as a SavedModel whose
serving_default maps float32 [batch, h, w, 3] photos in [-1, 1] to
{"logits": [batch, h, w, classes]}. Pass it to `pix2pix_tf.evaluate
--segmenter`. Its scores are comparable within this project, not to the
paper's FCN-8s numbers.
"""

import json
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import errors

flags.DEFINE_string("data_dir", None, "Dataset with train/ A|B pairs.")
flags.DEFINE_string("label_palette", None,
                    "cityscapes, facades, or a palette JSON file.")
flags.DEFINE_enum("labels", "auto", ["auto", "A", "B"],
                  "Which half of the pairs is the label map.")
flags.DEFINE_string("output", None, "Where to write the SavedModel.")
flags.DEFINE_integer("image_size", 256, "Training size (a multiple of 2^depth).")
flags.DEFINE_integer("depth", 6, "U-Net downsamplings.")
flags.DEFINE_integer("filters", 32, "Filters of the first layer.")
flags.DEFINE_integer("epochs", 20, "Passes over the train split.")
flags.DEFINE_integer("batch_size", 8, "Batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_integer("seed", 0, "Seed.")
FLAGS = flags.FLAGS


def build_segmenter(num_classes, depth, filters):
  """This package's U-Net, ending in per-class logits instead of tanh."""
  import keras
  from pix2pix_tf import models
  unet = models.unet_generator(depth, 3, num_classes, filters, norm="batch",
                               dropout=0.0, name="segmenter")
  return keras.Model(unet.input, unet.get_layer("up0_conv").output,
                     name="segmenter")


def make_dataset(files, palette, labels_half, size, batch_size, training,
                 seed):
  import tensorflow as tf
  from pix2pix_tf import data as data_lib
  from pix2pix_tf.evaluation import segmentation

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
    classes = segmentation.colors_to_classes(tf.cast(labels, tf.uint8),
                                             palette)
    return data_lib.normalize(photo), classes

  dataset = tf.data.Dataset.from_tensor_slices(list(files))
  if training:
    dataset = dataset.shuffle(len(files), seed=seed)
  dataset = dataset.enumerate().map(load, num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def detect_labels_half(files, palette):
  from pix2pix_tf import data as data_lib
  from pix2pix_tf.evaluation import segmentation
  a, b = data_lib.load_pair(files[0])
  fractions = {half: segmentation.labels_fraction(
      data_lib.normalize(image)[None], palette)
               for half, image in (("A", a), ("B", b))}
  half = max(fractions, key=fractions.get)
  if fractions[half] < 0.5:
    raise errors.CommandError(
        f"Neither half of {files[0]} looks like a {palette.name} "
        "label map; set --labels=A or --labels=B.")
  return half


def save(model, palette, output, name):
  """Writes the SavedModel as `name` in the outputs.Folder `output`, built
  beside it and swapped in."""
  import tensorflow as tf

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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  for name in ("data_dir", "label_palette", "output"):
    if not FLAGS[name].value:
      raise app.UsageError(f"--{name} is required.")
  if FLAGS.image_size % 2 ** FLAGS.depth:
    raise app.UsageError(f"--image_size={FLAGS.image_size} is not a multiple "
                         f"of 2^--depth={2 ** FLAGS.depth}.")
  logging.set_verbosity(logging.WARNING)
  import keras
  from pix2pix_tf import data as data_lib
  from pix2pix_tf import outputs
  from pix2pix_tf.evaluation import segmentation

  output, name = outputs.folder_output(
      FLAGS.output, "output", [outputs.Input(FLAGS.data_dir, "data_dir")],
      kind="segmenter")
  palette = data_lib.load_palette(FLAGS.label_palette)
  files = data_lib.list_split(FLAGS.data_dir, "train")
  data_lib.check_headers(files)
  labels_half = (detect_labels_half(files, palette)
                 if FLAGS.labels == "auto" else FLAGS.labels)
  keras.utils.set_random_seed(FLAGS.seed)
  model = build_segmenter(palette.num_classes, FLAGS.depth, FLAGS.filters)
  model.compile(
      optimizer=keras.optimizers.Adam(FLAGS.learning_rate),
      loss=keras.losses.SparseCategoricalCrossentropy(
          from_logits=True, ignore_class=segmentation.IGNORE),
      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
  dataset = make_dataset(files, palette, labels_half, FLAGS.image_size,
                         FLAGS.batch_size, True, FLAGS.seed)
  print(f"Training a {palette.name} segmenter on {len(files)} photos "
        f"(labels: {labels_half} half), "
        f"{math.ceil(len(files) / FLAGS.batch_size)} steps per epoch.")
  model.fit(dataset, epochs=FLAGS.epochs,
            verbose=1 if sys.stdout.isatty() else 2)
  save(model, palette, output, name)
  print(f"Saved the segmenter to {FLAGS.output}")


if __name__ == "__main__":
  app.run(errors.guarded("train_segmenter", main))
