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

from pix2pix_tf import config as config_lib

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
  config_lib.run_command("serve", main)


if __name__ == "__main__":
  run()
