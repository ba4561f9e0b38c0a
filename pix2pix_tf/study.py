r"""A real-vs-fake perceptual study page, as the pix2pix paper ran on AMT.

    python -m pix2pix_tf.study --real_dir=results/facades/targets \
        --generated_dir=results/facades --answers=facades_study.jsonl
    python -m pix2pix_tf.study --protocol=single ...

Serves, on 127.0.0.1 by default, the page of pix2pix_tf/serving/study.py:
with --protocol=2afc (the paper's) a real and a generated image of the same
input side by side for --seconds, then "which is fake?"; with single, one
image, then "real or fake?". Every answer is appended to --answers as it is
given; the table (share of generated images taken for real, with its 95%
interval) at the end.
"""


from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import config as config_lib
from pix2pix_tf import options as options_lib
from pix2pix_tf import data as data_lib
from pix2pix_tf.options import HOST, MAX_PIXELS, Option, PORT, SEED
from pix2pix_tf.serving import study as study_lib
from pix2pix_tf.serving import web

# This command's flags (an option several commands take is defined once, in
# options).
OPTIONS = (
    Option("real_dir", str, None, "Folder of real images (e.g. "
           "predict --paired's targets/)."),
    Option("generated_dir", str, None, "Folder of generated images."),
    Option("answers", str, "study_answers.jsonl", "JSON-lines file the "
           "answers are appended to; an existing one resumes its "
           "session."),
    Option("protocol", str, "2afc", "2afc: a real and a generated image "
           "of the same input side by side (paired by file name), then "
           "'which is fake?', as the paper's; single: one image, then "
           "'real or fake?'.", choices=("2afc", "single")),
    Option("seconds", float, 1.0, "How long each trial's images are "
           "shown (the paper: 1)."),
    SEED.but(help="Seed of the presentation order."), HOST, PORT,
    MAX_PIXELS.but(help="Every image is checked at start-up: larger "
                   "ones (from the header) and undecodable ones stop "
                   "it."))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  FLAGS = flags.FLAGS
  if not FLAGS.real_dir or not FLAGS.generated_dir:
    raise app.UsageError("--real_dir and --generated_dir are required.")
  logging.set_verbosity(logging.WARNING)
  study = study_lib.STUDIES[FLAGS.protocol](
      data_lib.list_images(FLAGS.real_dir, required=True),
      data_lib.list_images(FLAGS.generated_dir, required=True), FLAGS.answers,
      FLAGS.seconds, FLAGS.seed, FLAGS.max_pixels)
  server = web.make_server(FLAGS.host, FLAGS.port,
                           study_lib.create_app(study),
                           config_lib.DEFAULT_REQUEST_TIMEOUT)
  print(f"{FLAGS.protocol} study of {len(study.trials)} trials "
        f"({len(study.answers)} answered before), answers in "
        f"{FLAGS.answers}: http://{FLAGS.host}:"
        f"{server.server_port}/", flush=True)
  server.serve_forever()


def run():
  options_lib.run_command("study", main, OPTIONS)


if __name__ == "__main__":
  run()
