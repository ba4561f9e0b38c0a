r"""Makes a pix2pix_tf run from the reference implementation's PyTorch
checkpoints.

    python -m pix2pix_tf.convert --from_pytorch=latest_net_G.pth \
        --from_pytorch_discriminator=latest_net_D.pth \
        --generator=unet_256 --norm=batch --model_dir=runs/imported

Reads the `.pth` files without PyTorch and without running anything in
them, checks every tensor against the model the training flags describe
(a mismatch names the tensor and the flag to change), and writes a run:
config.json and flags.txt, a checkpoint at step 0 (resume it with `train`
to fine-tune, with fresh optimizers) and export/, which predict, evaluate
and serve use. U-Nets get --dropout_placement=reference (the reference's
dropout blocks) unless the flag is given.

    python -m pix2pix_tf.convert --pretrained=facades_label2photo
    python -m pix2pix_tf.convert --pretrained=list

downloads one of the reference's published generators by name (into
Keras's cache, once) and converts it, into runs/NAME_pretrained, with its
dataset's shipped configuration and direction; training flags given with
it override those.
"""

import os
import shlex
import sys

from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import config as config_lib
from pix2pix_tf import options as options_lib
from pix2pix_tf import pretrained
from pix2pix_tf.options import Option

FLAGS = flags.FLAGS

# This command's flags (an option several commands take is defined once, in
# options).
OPTIONS = (
    options_lib.CONFIG,
    Option("from_pytorch", str, None, "The reference's generator "
           "weights (latest_net_G.pth), for the model the training "
           "flags describe (--generator, --norm, --ngf, ...)."),
    Option("from_pytorch_discriminator", str, None, "Its "
           "discriminator (latest_net_D.pth), if fine-tuning should "
           "start from it too."),
    Option("pretrained", str, None, "One of the reference's published "
           "generators, by name, downloaded and converted with its "
           "dataset's configuration (`list`: the names, what each "
           "translates and its size).",
           choices=("list",) + tuple(pretrained.PRETRAINED)),
    Option("base_url", str, pretrained.URL, "--pretrained: "
           "where NAME.pth is downloaded from."),
    *options_lib.download_options("--pretrained"))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  if FLAGS.pretrained == "list":
    print(pretrained.table())
    return
  if bool(FLAGS.from_pytorch) == bool(FLAGS.pretrained):
    raise app.UsageError("Give one of --from_pytorch (the reference's .pth "
                         "file) and --pretrained (a name; --pretrained=list "
                         "lists them).")
  if FLAGS.pretrained:
    check_pretrained_flags()
  from pix2pix_tf.training import importing  # After the flags.
  if FLAGS.pretrained:
    export = importing.import_pretrained(
        FLAGS.pretrained, pretrained.config_for(
            FLAGS.pretrained, given_training_flags()),
        FLAGS.base_url, FLAGS.sha256, FLAGS.timeout, FLAGS.retries)
  else:
    config = config_lib.Config.from_flag_values(FLAGS)
    if not FLAGS["dropout_placement"].present:
      # Where the reference's U-Net drops out (paper mode keeps dropout).
      config = config.replace(dropout_placement="reference")
    export = importing.import_pytorch(config, FLAGS.from_pytorch,
                                      FLAGS.from_pytorch_discriminator)
  model_dir = os.path.dirname(export)
  print(f"Converted into {model_dir}: checkpoint at step 0 (train "
        f"--model_dir={model_dir} fine-tunes it), export at {export}.")


def check_pretrained_flags() -> None:
  """What --pretrained cannot take: a discriminator's file (the reference
  publishes generators only) or a shipped configuration (the name brings
  its dataset's own)."""
  if FLAGS.from_pytorch_discriminator:
    raise app.UsageError("--pretrained brings the reference's generator; "
                         "it publishes no discriminator. Leave out "
                         "--from_pytorch_discriminator.")
  # --config=NAME reaches absl as the flagfile it names (flagfiles.expand),
  # so the command line is where it shows.
  given = [arg for arg in sys.argv[1:]
           if arg.lstrip("-").partition("=")[0] == "config"]
  if given:
    entry = pretrained.PRETRAINED[FLAGS.pretrained]
    raise app.UsageError(
        f"--pretrained={FLAGS.pretrained} is converted with --config="
        f"{entry.config} --direction={entry.direction}; leave out "
        f"{given[0]} (a flag given with it overrides one of them).")


def given_training_flags() -> str:
  """The training flags given on the command line (or by a flagfile), as
  flags again."""
  return " ".join(shlex.quote(FLAGS[name].serialize())
                  for name in config_lib.GROUP_OF if FLAGS[name].present)


def run():
  options_lib.run_command("convert", main, OPTIONS)


if __name__ == "__main__":
  run()
