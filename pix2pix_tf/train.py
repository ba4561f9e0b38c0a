r"""Trains pix2pix on a folder of side-by-side A|B image pairs.

    python -m pix2pix_tf.train --flagfile=configs/facades.flags
    python -m pix2pix_tf.train --data_dir=datasets/maps --model_dir=runs/maps

Running the same command again resumes from the latest checkpoint in
<model_dir>/checkpoints. Every flag's default is the paper's value.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import config as config_lib

_D = config_lib.Config()

# Data.
flags.DEFINE_string("data_dir", _D.data_dir,
                    "Folder with train/ (and optionally val/, test/) "
                    "subfolders of A|B image pairs (.jpg, .jpeg, .png, .bmp).")
flags.DEFINE_enum("direction", _D.direction, config_lib.DIRECTIONS,
                  "AtoB translates the left half into the right half; BtoA "
                  "the reverse.")
flags.DEFINE_integer("load_size", _D.load_size,
                     "Each half is resized to load_size x load_size before "
                     "the random crop.")
flags.DEFINE_integer("crop_size", _D.crop_size,
                     "Training crop size; the size the networks are trained "
                     "at. A multiple of 2**generator depth.")
flags.DEFINE_bool("flip", _D.flip, "Random horizontal mirroring in training.")
flags.DEFINE_integer("input_channels", _D.input_channels,
                     "Channels of the input image: 3 (RGB) or 1 (grayscale).")
flags.DEFINE_integer("output_channels", _D.output_channels,
                     "Channels of the target image: 3 (RGB) or 1.")
flags.DEFINE_integer("shuffle_buffer", _D.shuffle_buffer,
                     "Training shuffle buffer, in elements: file names for "
                     "a folder, records for TFRecords, decoded pairs with "
                     "--cache. 0: the whole split (a full shuffle each "
                     "epoch, as the reference); for large TFRecord datasets "
                     "set a number, as the buffer holds the records' bytes.")
flags.DEFINE_string("cache", _D.cache,
                    "Cache the training split's decoded pairs: 'memory', or "
                    "a file path prefix for a disk cache, one file per "
                    "split and configuration (PREFIX-<digest>). Val data is "
                    "never cached. Empty: no cache.")
flags.DEFINE_enum("on_bad_image", _D.on_bad_image, ["error", "skip"],
                  "error: stop at an unreadable image, naming it; skip: name "
                  "each bad image once, count them in TensorBoard, and train "
                  "on the rest.")
flags.DEFINE_bool("deterministic", _D.deterministic,
                  "Bit-identical runs: fixed element order in the input "
                  "pipeline and deterministic ops (slower). --seed alone "
                  "fixes the weights' init, dropout, shuffling and jitter.")

# Models.
flags.DEFINE_enum("generator", _D.generator, config_lib.GENERATORS,
                  "unet_256 (8 downsamplings), unet_128 (7), unet with "
                  "--unet_depth, or the reference's resnet_9blocks and "
                  "resnet_6blocks.")
flags.DEFINE_integer("unet_depth", _D.unet_depth,
                     "Downsamplings of --generator=unet.")
flags.DEFINE_integer("ngf", _D.ngf, "Generator filters in the first layer.")
flags.DEFINE_integer("ndf", _D.ndf,
                     "Discriminator filters in the first layer.")
flags.DEFINE_enum("discriminator", _D.discriminator,
                  config_lib.DISCRIMINATORS,
                  "patchgan, or pixel (1x1 receptive field).")
flags.DEFINE_integer("d_layers", _D.d_layers,
                     "PatchGAN stride-2 layers: 1, 2, 3, 4, 5 give receptive "
                     "fields 16, 34, 70, 142, 286.")
flags.DEFINE_integer("num_discriminators", _D.num_discriminators,
                     "Multi-scale discriminator (pix2pixHD): K discriminators, "
                     "the k-th on the pair downsampled 2^k times; their "
                     "losses are summed.")
flags.DEFINE_string("d_receptive_fields", _D.d_receptive_fields,
                    "Discriminators given by receptive field, all at full "
                    "resolution, losses summed: e.g. 16,286. Fields: 1, 16, "
                    "34, 70, 142, 286.")
flags.DEFINE_bool("conditional_discriminator", _D.conditional_discriminator,
                  "D sees the input with the candidate (cGAN); false: the "
                  "candidate alone (the paper's unconditional GAN).")
flags.DEFINE_enum("norm", _D.norm, config_lib.NORMS,
                  "Normalisation in both networks. instance is "
                  "keras.layers.GroupNormalization(groups=-1); sync_batch "
                  "synchronises batch statistics across replicas.")
flags.DEFINE_float("dropout", _D.dropout,
                   "Dropout rate of the U-Net's three dropout layers (the "
                   "paper's only noise source).")
flags.DEFINE_enum("dropout_placement", _D.dropout_placement,
                  config_lib.DROPOUT_PLACEMENTS,
                  "paper: dropout in the first three decoder blocks (the "
                  "paper's CD512 x3, the original Torch code); reference: "
                  "one block further out, as the PyTorch reference's U-Net "
                  "(for runs and imported models that match it exactly).")

# Objective and optimisation.
flags.DEFINE_enum("gan_mode", _D.gan_mode, config_lib.GAN_MODES,
                  "vanilla: the paper's cGAN loss (BCE on logits); lsgan: "
                  "least squares; hinge; wgangp: Wasserstein with gradient "
                  "penalty; none: no discriminator (distance terms only).")
flags.DEFINE_enum("update_order", _D.update_order, config_lib.UPDATE_ORDERS,
                  "alternating: one D step, then one G step against the "
                  "updated D (the paper and the reference); simultaneous: "
                  "both gradients from one forward pass against the old D "
                  "(one D forward cheaper; for comparison).")
flags.DEFINE_float("lambda_l1", _D.lambda_l1,
                   "Weight of the L1 term (0 disables it).")
flags.DEFINE_float("lambda_l2", _D.lambda_l2,
                   "Weight of the L2 (mean squared error) term (0 disables "
                   "it).")
flags.DEFINE_float("lambda_feature_matching", _D.lambda_feature_matching,
                   "Weight of pix2pixHD's discriminator feature-matching "
                   "term (0 disables it).")
flags.DEFINE_float("lambda_gp", _D.lambda_gp,
                   "Weight of the gradient penalty with --gan_mode=wgangp.")
flags.DEFINE_float("learning_rate", _D.learning_rate,
                   "Adam learning rate for both networks.")
flags.DEFINE_enum("lr_policy", _D.lr_policy, config_lib.LR_POLICIES,
                  "linear: constant for --epochs, then linearly to 0 over "
                  "--epochs_decay; step: x0.1 every --lr_decay_epochs; "
                  "cosine: to 0 over the run; constant.")
flags.DEFINE_integer("lr_decay_epochs", _D.lr_decay_epochs,
                     "Epochs between x0.1 steps of --lr_policy=step.")
flags.DEFINE_float("beta_1", _D.beta_1, "Adam beta_1.")
flags.DEFINE_float("beta_2", _D.beta_2, "Adam beta_2.")
flags.DEFINE_integer("batch_size", _D.batch_size,
                     "Global batch size, split across replicas.")
flags.DEFINE_integer("epochs", _D.epochs,
                     "Epochs at the initial learning rate.")
flags.DEFINE_integer("epochs_decay", _D.epochs_decay,
                     "Epochs of linear decay of the learning rate to zero.")
flags.DEFINE_integer("max_steps", _D.max_steps,
                     "Stop after this many steps (0: run every epoch).")
flags.DEFINE_integer("seed", _D.seed,
                     "Seed of weights, dropout, shuffling and jitter.")

# Execution.
flags.DEFINE_enum("strategy", _D.strategy, config_lib.STRATEGIES,
                  "mirrored: all local GPUs, else the CPU; one_device; "
                  "multi_worker: MultiWorkerMirroredStrategy from TF_CONFIG.")
flags.DEFINE_bool("jit_compile", _D.jit_compile,
                  "Compile the forward and backward passes with XLA.")
flags.DEFINE_enum("mixed_precision", _D.mixed_precision,
                  config_lib.MIXED_PRECISIONS,
                  "Compute dtype of the layers: none (float32), bf16, "
                  "fp16 with loss scaling, or auto (bf16 on GPUs of compute "
                  "capability 8.0+ and CPUs with AMX, else none). Variables, "
                  "the tanh output, the discriminator logits and the losses "
                  "stay float32.")
flags.DEFINE_integer("steps_per_execution", _D.steps_per_execution,
                     "Training steps per tf.function call.")

# Outputs.
flags.DEFINE_string("model_dir", _D.model_dir,
                    "Where checkpoints, logs, samples and flags are written.")
flags.DEFINE_bool("force_config", _D.force_config,
                  "Resume a --model_dir even though the model flags "
                  "(architecture, channels, direction) differ from the ones "
                  "it was trained with; the new ones are recorded.")
flags.DEFINE_integer("checkpoint_every_steps", _D.checkpoint_every_steps,
                     "Save a checkpoint every this many steps (and at the "
                     "end).")
flags.DEFINE_integer("keep_checkpoints", _D.keep_checkpoints,
                     "How many recent checkpoints to keep.")
flags.DEFINE_integer("log_every_steps", _D.log_every_steps,
                     "Write training scalars every this many steps.")
flags.DEFINE_integer("sample_every_steps", _D.sample_every_steps,
                     "Write an input | generated | target grid every this "
                     "many steps.")
flags.DEFINE_integer("eval_every_steps", _D.eval_every_steps,
                     "Evaluate on the val split every this many steps.")
flags.DEFINE_integer("num_samples", _D.num_samples,
                     "Examples in the sample grid (from val, else train).")
flags.DEFINE_enum("inference_mode", _D.inference_mode,
                  config_lib.INFERENCE_MODES,
                  "How samples and val metrics run the generator. paper: "
                  "dropout on and batch statistics, as the paper; eval: "
                  "moving statistics, no dropout.")

flags.DEFINE_string("label_palette", _D.label_palette,
                    "For label-map datasets (cityscapes, facades, or a "
                    "palette JSON file): also log the segmentation scores "
                    "of photo -> labels, or with --segmenter the FCN-score "
                    "of labels -> photo, at each evaluation.")
flags.DEFINE_string("segmenter", _D.segmenter,
                    "A segmenter SavedModel (tools/train_segmenter.py) for "
                    "the FCN-score during training.")

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  # Imported here so that --help and flag errors do not wait for TensorFlow.
  from pix2pix_tf import input_pipeline
  from pix2pix_tf import trainer

  # TensorFlow's INFO messages (checkpoint sharding and the like) drown the
  # progress bar; warnings and errors still show.
  logging.set_verbosity(logging.WARNING)
  try:
    config = config_lib.Config.from_flag_values(FLAGS)
    config.validate()
    trainer.train_and_evaluate(config)
  except (config_lib.ConfigError, input_pipeline.DatasetError,
          trainer.NumericalError) as e:
    sys.exit(f"pix2pix_tf.train: error: {e}")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
