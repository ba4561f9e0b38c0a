r"""Prints the networks a flagfile builds: parameters, size, shapes, receptive field.

    python -m pix2pix_tf.summary --flagfile=configs/facades.flags
    python -m pix2pix_tf.summary --flagfile=configs/facades.flags --format=json

Takes the same flags as `pix2pix_tf.train`. Shapes are for --crop_size inputs.
"""

import json
import sys

from absl import app
from absl import flags

from pix2pix_tf import config as config_lib
FLAGS = flags.FLAGS


def network_summary(config: config_lib.Config) -> dict:
  """Parameter counts, size and shapes of G and D for `config`.

  Returns:
    {"generator": {...}, "discriminator": {..., "receptive_field": int}}
    with trainable_params, total_params, size_mb (float32 weights, MiB) and
    output_shape [h, w, c] for a crop_size x crop_size input. With several
    discriminators, output_shape and receptive_field are the first's, and
    output_shapes and receptive_fields list every one.
  """
  from pix2pix_tf import models

  generator = models.build_generator(config)
  discriminator = models.build_discriminator(config)
  size = config.crop_size
  gen_shape = generator.compute_output_shape(
      (1, size, size, config.input_channels))
  disc_shapes = [d.compute_output_shape(
      [(1, size, size, config.input_channels),
       (1, size, size, config.output_channels)][
           0 if config.conditional_discriminator else 1:])[0]
                 for d in discriminator.discriminators]
  fields = models.receptive_fields(discriminator)
  summary = {
      "generator": _counts(generator, gen_shape),
      "discriminator": _counts(discriminator, disc_shapes[0]),
  }
  summary["discriminator"]["receptive_field"] = fields[0]
  summary["discriminator"]["receptive_fields"] = fields
  summary["discriminator"]["output_shapes"] = [
      [int(d) for d in shape[1:]] for shape in disc_shapes]
  return summary


def _counts(model, output_shape):
  trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
  total = sum(int(w.numpy().size) for w in model.weights)
  return {
      "trainable_params": trainable,
      "total_params": total,
      "size_mb": round(total * 4 / 2**20, 2),
      "output_shape": [int(d) for d in output_shape[1:]],
  }


def format_table(summary: dict, config: config_lib.Config) -> str:
  lines = [f"{'network':<15}{'trainable':>14}{'total':>14}{'size MB':>10}"
           f"{'output':>16}{'receptive field':>17}"]
  names = {"generator": config.generator,
           "discriminator": (
               f"receptive fields {config.d_receptive_fields}"
               if config.d_receptive_fields else
               f"{config.num_discriminators} x {config.discriminator}"
               f" (d_layers={config.d_layers})")}
  for key in ("generator", "discriminator"):
    s = summary[key]
    shapes = s.get("output_shapes", [s["output_shape"]])
    fields = s.get("receptive_fields", [None])
    for i, (shape, rf) in enumerate(zip(shapes, fields)):
      counts = (f"{s['trainable_params']:>14,}{s['total_params']:>14,}"
                f"{s['size_mb']:>10.2f}" if i == 0 else " " * 38)
      lines.append(
          f"{key if i == 0 else '':<15}{counts}"
          f"{'x'.join(map(str, shape)):>16}"
          f"{(f'{rf}x{rf}' if rf else '-'):>17}")
  lines.append(f"generator: {names['generator']}, norm {config.norm}; "
               f"discriminator: {names['discriminator']}; input "
               f"{config.crop_size}x{config.crop_size}x"
               f"{config.input_channels}")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  try:
    config = config_lib.Config.from_flag_values(FLAGS).validate()
  except config_lib.ConfigError as e:
    sys.exit(f"pix2pix_tf.summary: error: {e}")
  summary = network_summary(config)
  if FLAGS.format == "json":
    print(json.dumps(summary, indent=2))
  else:
    print(format_table(summary, config))


def run():
  config_lib.define_flags()  # The training flags.
  flags.DEFINE_enum("format", "table", ["table", "json"], "Output format.")
  app.run(main)


if __name__ == "__main__":
  run()
