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
  256x256 state with its Adam slots is about 650 MB, and the suite runs
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


def check(flagfile, args, strategy, scratch):
  import keras
  from pix2pix_tf import config as config_lib
  from pix2pix_tf import data as data_lib
  from pix2pix_tf import training
  from pix2pix_tf.data import demo
  with open(flagfile) as f:
    config = config_lib.Config().with_flags(f.read())
  name = os.path.splitext(os.path.basename(flagfile))[0]
  data_dir = demo.write_dataset(os.path.join(scratch, name), 4 * max(
      config.optimisation.batch_size, args.replicas), 0, config.data.load_size)
  config = config.replace(data_dir=data_dir,
                          model_dir=os.path.join(scratch, f"{name}-run"),
                          label_palette="",
                          deterministic=True,
                          batch_size=max(config.optimisation.batch_size,
                                         args.replicas),
                          mixed_precision=args.mixed_precision,
                          steps_per_execution=1)
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
  result = {
      "flagfile": os.path.relpath(os.path.abspath(flagfile), ROOT),
      "crop_size": config.data.crop_size,
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
  for flagfile in args.flagfiles:
    # A scratch folder per flagfile, gone before the next one starts.
    with tempfile.TemporaryDirectory() as scratch:
      result = check(flagfile, args, strategy, scratch)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
