r"""Trains the segmenter behind the FCN-score on a dataset's train split.

    python -m pix2pix_tf.segmenter --data_dir=datasets/cityscapes \
        --label_palette=cityscapes --output=segmenters/cityscapes

The paper's FCN-8s weights cannot be had offline: this trains a U-Net that
segments the real photos into the palette's classes and saves it as a
SavedModel for `evaluate --segmenter` (scores comparable within this
project, not to the paper's FCN-8s numbers; see evaluation/segmenter.py).
"""

from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import options as options_lib
from pix2pix_tf.options import Option, SEED

FLAGS = flags.FLAGS

# This command's flags (an option several commands take is defined once, in
# options).
OPTIONS = (
    Option("data_dir", str, None, "Dataset with train/ A|B pairs."),
    Option("label_palette", str, None,
           "cityscapes, facades, or a palette JSON file."),
    Option("labels", str, "auto", "Which half of the pairs is the label "
           "map (auto: the one that looks like one).",
           choices=("auto", "A", "B")),
    Option("output", str, None, "Where to write the SavedModel."),
    Option("image_size", int, 256, "Training size (a multiple of 2^depth).",
           lower_bound=1),
    Option("depth", int, 6, "U-Net downsamplings.", lower_bound=1),
    Option("filters", int, 32, "Filters of the first layer.", lower_bound=1),
    Option("epochs", int, 20, "Passes over the train split.", lower_bound=1),
    Option("batch_size", int, 8, "Batch size.", lower_bound=1),
    Option("learning_rate", float, 1e-3, "Adam learning rate.",
           lower_bound=0),
    SEED.but(help="Seed of the weights and the order."))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  for name in ("data_dir", "label_palette", "output"):
    if not FLAGS[name].value:
      raise app.UsageError(f"--{name} is required.")
  logging.set_verbosity(logging.WARNING)
  from pix2pix_tf.evaluation import segmenter  # After the flags: fast --help.
  segmenter.train(FLAGS.data_dir, FLAGS.label_palette, FLAGS.labels,
                  FLAGS.output, FLAGS.image_size, FLAGS.depth, FLAGS.filters,
                  FLAGS.epochs, FLAGS.batch_size, FLAGS.learning_rate,
                  FLAGS.seed)


def run():
  options_lib.run_command("segmenter", main, OPTIONS)


if __name__ == "__main__":
  run()
