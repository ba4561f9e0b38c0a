r"""Writes the built-in demo dataset (procedural facades) used by `make demo`.

    python tools/make_demo_dataset.py --output=datasets/demo
"""

from absl import app
from absl import flags

from pix2pix_tf import errors
from pix2pix_tf.data import demo

flags.DEFINE_string("output", "datasets/demo", "Folder to write train/ and "
                    "val/ into.")
flags.DEFINE_integer("num_train", 200, "Training pairs.")
flags.DEFINE_integer("num_val", 20, "Validation pairs.")
flags.DEFINE_integer("size", 64, "Height and width of each half.")
flags.DEFINE_integer("seed", 0, "Seed; the same seed gives the same files.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  demo.write_dataset(FLAGS.output, FLAGS.num_train, FLAGS.num_val,
                          FLAGS.size, FLAGS.seed)
  print(f"Wrote {FLAGS.num_train} train and {FLAGS.num_val} val pairs of "
        f"{FLAGS.size}x{FLAGS.size} to {FLAGS.output}.")


if __name__ == "__main__":
  app.run(errors.guarded("make_demo_dataset", main))
