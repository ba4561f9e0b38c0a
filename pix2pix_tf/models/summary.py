"""What a configuration builds: parameter counts, sizes, output shapes and
receptive fields of G and D (`python -m pix2pix_tf.summary`)."""

from pix2pix_tf import config as config_lib
from pix2pix_tf.models import discriminators
from pix2pix_tf.models import generators


def network_summary(config: config_lib.Config) -> dict:
  """Parameter counts, size and shapes of G and D for `config`.

  Returns:
    {"generator": {...}, "discriminator": {..., "receptive_field": int}}
    with trainable_params, total_params, size_mb (float32 weights, MiB) and
    output_shape [h, w, c] for a crop_size x crop_size input. With several
    discriminators, output_shape and receptive_field are the first's, and
    output_shapes and receptive_fields list every one.
  """
  generator = generators.build_generator(config)
  discriminator = discriminators.build_discriminators(config)
  size = config.data.crop_size
  gen_shape = generator.compute_output_shape(
      (1, size, size, config.data.input_channels))
  disc_shapes = [d.compute_output_shape(
      [(1, size, size, config.data.input_channels),
       (1, size, size, config.data.output_channels)][
           0 if config.model.conditional_discriminator else 1:])[0]
                 for d in discriminator.discriminators]
  fields = discriminators.receptive_fields(discriminator)
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


def format_summary(summary: dict, config: config_lib.Config) -> str:
  """`network_summary` as the table `python -m pix2pix_tf.summary` prints."""
  lines = [f"{'network':<15}{'trainable':>14}{'total':>14}{'size MB':>10}"
           f"{'output':>16}{'receptive field':>17}"]
  model = config.model
  names = {"generator": model.generator,
           "discriminator": (
               f"receptive fields {model.d_receptive_fields}"
               if model.d_receptive_fields else
               f"{model.num_discriminators} x {model.discriminator}"
               f" (d_layers={model.d_layers})")}
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
  lines.append(f"generator: {names['generator']}, norm {model.norm}; "
               f"discriminator: {names['discriminator']}; input "
               f"{config.data.crop_size}x{config.data.crop_size}x"
               f"{config.data.input_channels}")
  return "\n".join(lines)
