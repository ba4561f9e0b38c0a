r"""Serves an exported generator behind an interactive drawing page.

    python -m pix2pix_tf.serve --saved_model=runs/facades/export
    # then open http://127.0.0.1:8000/

The page, TensorFlow Serving's REST API (predict in row and columnar format
for every signature, model status, metadata) and /healthz: see
pix2pix_tf/serving/server.py. The page can talk
to a TensorFlow Serving deployment of the same export instead: open it with
?api=http://serving-host:8501/v1/models/pix2pix.
"""


from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import options as options_lib
from pix2pix_tf.config import DEFAULT_REQUEST_TIMEOUT
from pix2pix_tf.options import (HOST, MAX_PIXELS, Option, PORT, RESOLUTION,
                                SAVED_MODEL)

# This command's flags (an option several commands take is defined once, in
# options).
OPTIONS = (
    SAVED_MODEL, HOST, PORT,
    Option("palette", str, None, "A palette (cityscapes, facades or a "
           "JSON file) for a label-map model's brush; default: the "
           "model's --label_palette, else an edges pen."),
    Option("max_upload_mb", float, 8.0, "Largest request body accepted."),
    RESOLUTION,
    MAX_PIXELS.but(default=None, help="Images whose header declares more "
                   "pixels (width x height) are answered 413 before "
                   "decoding; default: the export's limit (its "
                   "--max_pixels), which is also the most this can be."),
    Option("request_timeout", float, DEFAULT_REQUEST_TIMEOUT, "Seconds a "
           "connection may stay silent, and a request may wait for the "
           "model (then 503).", lower_bound=0.1),
    Option("version_labels", str, "", "Comma-separated labels that name "
           "the served version in /v1/models/pix2pix/labels/LABEL paths, "
           "as TensorFlow Serving's version_labels do (none: a label is "
           "refused, as there)."))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  FLAGS = flags.FLAGS
  if not FLAGS.saved_model:
    raise app.UsageError("--saved_model is required.")
  logging.set_verbosity(logging.WARNING)
  # After the flags: a fast --help.
  from pix2pix_tf.serving import web
  # Before the model loads (seconds): a port in use is said at once.
  sock = web.listen(FLAGS.host, FLAGS.port)
  from pix2pix_tf.serving import server as server_lib
  translator = server_lib.Translator(FLAGS.saved_model, FLAGS.resolution)
  palette = (server_lib.load_palette_colors(FLAGS.palette) if FLAGS.palette
             else translator.metadata.get("palette"))
  server = web.make_server(
      FLAGS.host, FLAGS.port,
      server_lib.create_app(translator, palette, FLAGS.max_upload_mb,
                            FLAGS.max_pixels, FLAGS.request_timeout,
                            [label for label in
                             FLAGS.version_labels.split(",") if label]),
      FLAGS.request_timeout, sock)
  print(f"Serving {FLAGS.saved_model} on http://{FLAGS.host}:"
        f"{server.server_port}/", flush=True)
  server.serve_forever()


def run():
  options_lib.run_command("serve", main, OPTIONS)


if __name__ == "__main__":
  run()
