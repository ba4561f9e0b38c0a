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
"""


from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import config as config_lib
from pix2pix_tf import options as options_lib
from pix2pix_tf.options import Option

FLAGS = flags.FLAGS

# This command's flags (an option several commands take is defined once, in
# config).
OPTIONS = (
    options_lib.CONFIG,
    Option("from_pytorch", str, None, "The reference's generator "
           "weights (latest_net_G.pth), for the model the training "
           "flags describe (--generator, --norm, --ngf, ...)."),
    Option("from_pytorch_discriminator", str, None, "Its "
           "discriminator (latest_net_D.pth), if fine-tuning should "
           "start from it too."))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  if not FLAGS.from_pytorch:
    raise app.UsageError("--from_pytorch is required.")
  from pix2pix_tf.training import importing  # After the flags.
  config = config_lib.Config.from_flag_values(FLAGS)
  if not FLAGS["dropout_placement"].present:
    # Where the reference's U-Net drops out (paper mode keeps dropout).
    config = config.replace(dropout_placement="reference")
  export = importing.import_pytorch(config, FLAGS.from_pytorch,
                                    FLAGS.from_pytorch_discriminator)
  model_dir = config.outputs.model_dir
  print(f"Converted into {model_dir}: checkpoint at step 0 (train "
        f"--model_dir={model_dir} fine-tunes it), export at {export}.")


def run():
  options_lib.run_command("convert", main, OPTIONS)


if __name__ == "__main__":
  run()
