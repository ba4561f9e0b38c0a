"""Trains each flagfile's configuration in this process under
--deterministic, then again from its checkpoint of step 1 as a resumed run
would, and prints, per flagfile, a JSON line of how far the two ended apart
(test_determinism.py runs it in a fresh process: one op at a time can be
set only before TensorFlow starts):

    python tests/training/determinism_check.py --replicas=2 \
        --mixed_precision=none configs/facades.flags configs/demo.flags

Each configuration is the flagfile's, at its own crop size, load size,
batch size (at least one pair per replica), generator and discriminator,
with its default kernels, on a small dataset of generated pairs as large
as its load size. The checkpointed state after `--steps` steps is
compared with the state after a restore of the checkpoint of step 1 and
the rest of the steps from the data stream a resumed run reads: the same
steps again, from the same state, in one process. The traced step is
shared, which makes this fast enough to run for every flagfile.

Flagfiles that train the same thing (every option equal but those that
say where the data and outputs are and how often a run logs, samples,
scores and saves, none of which this check runs) are trained once: the
line of each names the flagfile it shares the run with ("trained_as") and
the digest of the options trained ("trained"), which the test compares
with that of its own flagfile.
"""

import argparse
import glob
import hashlib
import json
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("flagfiles", nargs="+")
  parser.add_argument("--replicas", type=int, default=1)
  parser.add_argument("--mixed_precision", default="auto")
  parser.add_argument("--steps", type=int, default=3)
  return parser.parse_args()


def folder_bytes(folder):
  """The disk the files under folder hold, in bytes: those listed, and
  those deleted but still open in this process (Linux keeps them until
  they are closed)."""
  listed = sum(os.path.getsize(os.path.join(parent, name))
               for parent, _, names in os.walk(folder) for name in names)
  held = 0
  for fd in os.listdir("/proc/self/fd"):
    try:
      target = os.readlink(f"/proc/self/fd/{fd}")
      if target.startswith(folder) and target.endswith(" (deleted)"):
        held += os.stat(f"/proc/self/fd/{fd}").st_size
    except OSError:  # Closed since it was listed.
      continue
  return listed + held


# Checkpoint entries that are not the run's state.
NOT_STATE = ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter")


def saved_state(checkpoint, path, disk):
  """Writes the run's checkpoint at path, as a resumed run would read it,
  and returns where it went; the scratch folder's size once it is written
  is appended to disk."""
  written = checkpoint.write(path)
  disk.append(folder_bytes(os.path.dirname(path)))
  return written


def state_reader(written):
  """A reader of every variable a checkpoint holds (weights, moving
  statistics of the generator, optimizer slots and iterations, the step,
  the noise seeds), and their names. (The discriminators' moving statistics
  are not among them: they always judge with batch statistics, so nothing
  reads them.) Variables are read one at a time, and a reader is dropped
  before its files are deleted (an open reader keeps them on disk): a
  256x256 state with its Adam slots is about 650 MiB, and the suite runs
  beside other work on a machine of 24 GiB."""
  import tensorflow as tf
  reader = tf.train.load_checkpoint(written)
  names = sorted(k for k in reader.get_variable_to_shape_map()
                 if k not in NOT_STATE)
  return reader, names


def delete(written):
  """The files of the checkpoint written at `written`."""
  for leftover in glob.glob(written + ".*"):
    os.remove(leftover)


def digests(written):
  """Each variable's SHA-256, by name, and the state's size in bytes."""
  reader, names = state_reader(written)
  found, size = {}, 0
  for name in names:
    value = reader.get_tensor(name)
    found[name] = hashlib.sha256(np.ascontiguousarray(value).tobytes()
                                 ).hexdigest()
    size += value.nbytes
  return found, size


def farthest(written_a, written_b):
  """(the largest difference, the variables that differ at all) between
  two checkpoints, read one variable at a time."""
  (reader_a, names), (reader_b, names_b) = (state_reader(written_a),
                                            state_reader(written_b))
  assert names == names_b
  worst, differing = 0.0, []
  for name in names:
    x, y = reader_a.get_tensor(name), reader_b.get_tensor(name)
    if not np.array_equal(x, y):
      differing.append(name)
      worst = max(worst, float(np.max(np.abs(x.astype(np.float64) - y))))
  return worst, differing


# Options that do not change what this check trains: where the data and the
# run's outputs are, and how often a run logs, samples, scores and saves
# (it does none of these). The data a flagfile is checked on is generated
# from its batch and load sizes, which stay in the comparison.
NOT_TRAINED = ("data_dir", "model_dir", "label_palette", "segmenter",
               "checkpoint_every_steps", "keep_checkpoints", "log_every_steps",
               "sample_every_steps", "eval_every_steps", "num_samples",
               "profile_steps", "inference_mode", "force_config")


def trained_config(flagfile, replicas, mixed_precision, scratch=""):
  """The configuration the check trains for `flagfile`: its own, under
  --deterministic, with at least one pair per replica, on generated data
  in `scratch`."""
  from pix2pix_tf import config as config_lib
  with open(flagfile) as f:
    config = config_lib.Config().with_flags(f.read())
  name = os.path.splitext(os.path.basename(flagfile))[0]
  return config.replace(data_dir=os.path.join(scratch, name),
                        model_dir=os.path.join(scratch, f"{name}-run"),
                        label_palette="",
                        deterministic=True,
                        batch_size=max(config.optimisation.batch_size,
                                       replicas),
                        mixed_precision=mixed_precision,
                        steps_per_execution=1)


def trained_digest(config):
  """A digest of every option of `config` that changes what is trained."""
  options = {name: value for name, value in config.flat().items()
             if name not in NOT_TRAINED}
  return hashlib.sha256(json.dumps(options, sort_keys=True).encode()
                        ).hexdigest()[:16]


def check(flagfile, args, strategy, scratch):
  import keras
  from pix2pix_tf import data as data_lib
  from pix2pix_tf import training
  from pix2pix_tf.data import demo
  config = trained_config(flagfile, args.replicas, args.mixed_precision,
                          scratch)
  demo.write_dataset(config.data.data_dir,
                     4 * config.optimisation.batch_size, 0,
                     config.data.load_size)
  name = os.path.basename(config.data.data_dir)
  training.check_run(config, strategy)  # As a run starts.
  split = data_lib.open_split(config.data.data_dir, "train")
  steps_per_epoch = split.count // config.optimisation.batch_size
  keras.utils.set_random_seed(config.optimisation.seed)
  built = training.build(config, strategy, steps_per_epoch,
                         steps_per_epoch * 2)
  checkpoint = built.state.checkpoint()
  disk = []
  initial = saved_state(checkpoint, os.path.join(scratch, f"{name}-initial"),
                        disk)
  initial_digests, state_bytes = digests(initial)
  delete(initial)
  step1 = os.path.join(scratch, f"{name}-step1")

  def train(first_step, label):
    iterator = training.train_iterator(strategy, config, split, first_step)
    for step in range(first_step, args.steps):
      built.distributed_step(iterator)
      if step == 0:
        checkpoint.write(step1)
    return saved_state(checkpoint, os.path.join(scratch, f"{name}-{label}"),
                       disk)

  unbroken = train(0, "unbroken")
  # Restored into the built variables at once: the files can go.
  checkpoint.read(step1).assert_existing_objects_matched()
  delete(step1)
  resumed = train(1, "resumed")
  unbroken_digests = digests(unbroken)[0]
  moved = sum(unbroken_digests[k] != initial_digests[k]
              for k in initial_digests)
  result = {  # main() adds the flagfile each row asked for.
      "trained_as": os.path.relpath(os.path.abspath(flagfile), ROOT),
      "trained": trained_digest(config),
      "crop_size": config.data.crop_size,
      "load_size": config.data.load_size,
      "direction": config.data.direction,
      "batch_size": config.optimisation.batch_size,
      "replicas": strategy.num_replicas_in_sync,
      "policy": training.resolve_mixed_precision(config.run.mixed_precision),
      "steps": args.steps,
      "moved": moved,
      "state_bytes": state_bytes,
      "scratch_peak_bytes": max(disk),
      "resumed_run": farthest(unbroken, resumed)
  }
  delete(unbroken)
  delete(resumed)
  return result


def main():
  args = parse_args()
  # As the train command: before anything else starts TensorFlow.
  from pix2pix_tf import training
  print(training.make_deterministic(), file=sys.stderr)
  import tensorflow as tf
  if args.replicas > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * args.replicas)
  # One strategy for every flagfile: a process should not create several
  # (their collective ops would share keys).
  strategy = tf.distribute.MirroredStrategy(
      [f"/cpu:{i}" for i in range(args.replicas)])
  checked = {}  # Results by the digest of what was trained.
  for flagfile in args.flagfiles:
    digest = trained_digest(trained_config(flagfile, args.replicas,
                                           args.mixed_precision))
    if digest not in checked:
      # A scratch folder per configuration, gone before the next starts.
      with tempfile.TemporaryDirectory() as scratch:
        checked[digest] = check(flagfile, args, strategy, scratch)
    result = {**checked[digest],
              "flagfile": os.path.relpath(os.path.abspath(flagfile), ROOT)}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
