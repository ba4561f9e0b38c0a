r"""Exports a trained generator as a SavedModel for serving.

    python -m pix2pix_tf.export --model_dir=runs/facades --export_dir=exports/facades
    python -m pix2pix_tf.export --model_dir=runs/facades \
        --checkpoint=runs/facades/checkpoints/ckpt-40000 --inference_mode=eval \
        --export_dir=exports/facades-eval
    python -m pix2pix_tf.export --model_dir=runs/facades --format=onnx
    python -m pix2pix_tf.export --model_dir=runs/facades --format=litert \
        --litert_weights=float16

The SavedModel needs nothing of this package to load; its signatures are
described in pix2pix_tf/serving/signatures.py. The other formats
(--format=keras|litert|onnx) are described in pix2pix_tf/serving/formats.py.
"""

from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import config as config_lib

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  if not FLAGS.model_dir:
    raise app.UsageError("--model_dir is required.")
  from pix2pix_tf import serving  # After the flags: a fast --help.
  if FLAGS.format == "saved_model":
    path = serving.export(FLAGS.model_dir, FLAGS.export_dir,
                          FLAGS.checkpoint, FLAGS.inference_mode,
                          FLAGS.max_pixels, FLAGS.resolution)
  else:
    written = serving.export_format(
        FLAGS.model_dir, FLAGS.format, FLAGS.export_dir, FLAGS.checkpoint,
        FLAGS.inference_mode, FLAGS.litert_weights)
  if FLAGS.format == "saved_model":
    print(f"Exported to {path}")
    return
  print(f"Exported to {written.path} ({written.size_bytes / 2**20:.2f} MiB). "
        f"Checked with its runtime on a random image: largest difference to "
        f"the TensorFlow model {written.max_difference:.2g}"
        + (" (compared without dropout, which varies from call to call)"
           if written.checked_without_dropout else "") + ".")


def run():
  config_lib.run_command("export", main)


if __name__ == "__main__":
  run()
