r"""Exports a trained generator as a SavedModel for serving.

    python -m pix2pix_tf.export --model_dir=runs/facades --export_dir=exports/facades
    python -m pix2pix_tf.export --model_dir=runs/facades \
        --checkpoint=runs/facades/checkpoints/ckpt-40000 --inference_mode=eval \
        --export_dir=exports/facades-eval
    python -m pix2pix_tf.export --model_dir=runs/facades --format=onnx
    python -m pix2pix_tf.export --model_dir=runs/facades --format=litert \
        --precision=fp16
    python -m pix2pix_tf.export --model_dir=runs/facades --format=web \
        --export_dir=site

The SavedModel needs nothing of this package to load; its signatures are
described in pix2pix_tf/serving/signatures.py. The other formats
(--format=keras|litert|onnx) are described in pix2pix_tf/serving/formats.py,
and the static site that translates in the browser (--format=web) in
pix2pix_tf/serving/web_export.py.
"""

from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import options as options_lib
from pix2pix_tf.config import INFERENCE_MODES
from pix2pix_tf.options import (CHECKPOINT, MAX_PIXELS, Option, RESOLUTION,
                                RUN_DIR)

FLAGS = flags.FLAGS

# --format (see serving.formats, serving.web_export).
FORMATS = ("saved_model", "keras", "litert", "onnx", "web")

# This command's flags (an option several commands take is defined once, in
# options).
OPTIONS = (
    RUN_DIR.but(help="The training run to export from."),
    CHECKPOINT.but(help="A checkpoint path (e.g. "
                   "RUN/checkpoints/ckpt-4000); default: the latest in "
                   "<model_dir>/checkpoints."),
    Option("export_dir", str, None, "Where to write (default: "
           "<model_dir>/export, or export.keras, .tflite, .onnx, or the "
           "folder <model_dir>/web)."),
    Option("format", str, FORMATS[0], "The SavedModel, one file "
           "checked with its runtime (litert: [1, S, S, C] at the "
           "training crop size), or web: a folder with the drawing page, "
           "the ONNX model and ONNX Runtime Web, which translates in the "
           "browser.", choices=FORMATS),
    Option("precision", str, None, "litert, onnx, web: fp16 stores the "
           "weights in float16, half the file (computed in float32 where "
           "the runtime has no float16 kernels). Default: fp16 for web, "
           "float32 otherwise.", choices=("float32", "fp16")),
    Option("web_runtime", str, None, "web: the onnxruntime-web package "
           "to take the page's runtime from: an archive (`npm pack "
           "onnxruntime-web@1.31.1`) or an unpacked package folder. "
           "Default: the npm registry's archive of 1.31.1, downloaded "
           "once into ~/.keras/pix2pix_tf and checked by its sha256."),
    Option("inference_mode", str, None, "paper: dropout on and batch "
           "statistics at test time, as the paper; eval: moving "
           "statistics, no dropout. Default: the run's "
           "--inference_mode.", choices=INFERENCE_MODES),
    MAX_PIXELS.but(help="translate_encoded refuses images whose header "
                   "declares more pixels (width x height), before "
                   "decoding them; recorded in the other formats' "
                   "metadata. web: the largest image the page translates "
                   "whole (default 1048576, 1024x1024)."),
    RESOLUTION.but(help="The resolution predict, evaluate and serve "
                   "use by default (recorded in an ONNX file's metadata; "
                   "a LiteRT file takes the training resolution only). "
                   "Default: what the run's --preprocess "
                   "implies (native for crop and none). web: where the "
                   "page translates: native (as serve's page) unless "
                   "training."),
    Option("tile", int, 0, "web: the tiles the page offers at native "
           "resolution, for images too large to translate whole (as "
           "predict --tile). Default: the training crop size.",
           lower_bound=0),
    Option("overlap", int, None, "web: the pixels neighbouring tiles "
           "share, blended (as predict --overlap). Default: 32, or half "
           "the tile if smaller.", lower_bound=0))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  if not FLAGS.model_dir:
    raise app.UsageError("--model_dir is required.")
  for name in ("web_runtime", "tile", "overlap"):
    if FLAGS[name].present and FLAGS.format != "web":
      raise app.UsageError(f"--{name} is for --format=web.")
  from pix2pix_tf import serving  # After the flags: a fast --help.
  if FLAGS.format == "saved_model":
    path = serving.export(FLAGS.model_dir, FLAGS.export_dir,
                          FLAGS.checkpoint, FLAGS.inference_mode,
                          FLAGS.max_pixels, FLAGS.resolution)
  elif FLAGS.format == "web":
    from pix2pix_tf.serving import web_export
    page = web_export.PageOptions(
        resolution=FLAGS.resolution, tile=FLAGS.tile, overlap=FLAGS.overlap,
        max_pixels=(FLAGS.max_pixels if FLAGS["max_pixels"].present
                    else web_export.PAGE_MAX_PIXELS))
    record = web_export.export_site(
        FLAGS.model_dir, FLAGS.export_dir, FLAGS.checkpoint,
        FLAGS.inference_mode, FLAGS.precision or "fp16", FLAGS.web_runtime,
        page)
    print(web_export.summary(record))
    return
  else:
    written = serving.export_format(
        FLAGS.model_dir, FLAGS.format, FLAGS.export_dir, FLAGS.checkpoint,
        FLAGS.inference_mode, FLAGS.precision or "float32",
        FLAGS.max_pixels if FLAGS["max_pixels"].present else None,
        FLAGS.resolution)
  if FLAGS.format == "saved_model":
    print(f"Exported to {path}")
    return
  print(f"Exported to {written.path} ({written.size_bytes / 2**20:.2f} MiB). "
        f"Checked with its runtime on a random image: largest difference to "
        f"the TensorFlow model {written.max_difference:.2g}"
        + (" (compared without dropout, which varies from call to call)"
           if written.checked_without_dropout else "") + ".")


def run():
  options_lib.run_command("export", main, OPTIONS)


if __name__ == "__main__":
  run()
