"""--deterministic gives bit-identical weights for every shipped flagfile,
at its own crop size, on one replica and on two, in float32 (the default
on CPUs without AMX or AVX-512 BF16) and in this machine's default
precision."""

import ast
import dataclasses
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import determinism_check
from conftest import ENV, ROOT
from pix2pix_tf import config as config_lib
from pix2pix_tf.data import demo

FLAGFILES = sorted(glob.glob(os.path.join(ROOT, "configs", "*.flags")))
CHECK = os.path.join(os.path.dirname(__file__), "determinism_check.py")


def run_check(*args):
  """determinism_check.py's result per flagfile (its own process)."""
  done = subprocess.run([sys.executable, CHECK, *args], capture_output=True,
                        text=True, env=ENV)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "--deterministic: deterministic kernels" in done.stderr
  results = [json.loads(line) for line in done.stdout.splitlines()]
  return {result["flagfile"]: result for result in results}


def set_options(flagfile):
  """What a flagfile's --name=value lines set, read as text: name -> the
  last value given (the shipped flagfiles use no other form)."""
  with open(os.path.join(ROOT, flagfile)) as file:
    lines = [line.strip() for line in file]
  return dict(line[2:].split("=", 1) for line in lines
              if line.startswith("--"))


def own_option(flagfile, name):
  """The value a flagfile sets for --name, as text (Config's default where
  it sets none)."""
  return set_options(flagfile).get(name,
                                   str(config_lib.Config().flat()[name]))


def trained_options(flagfile):
  """What the flagfile sets of the options the check trains with."""
  return {name: value for name, value in set_options(flagfile).items()
          if name not in determinism_check.NOT_TRAINED}


def assert_identical(result, replicas, policy, mixed_precision="none"):
  flagfile = result["flagfile"]
  assert (result["replicas"], result["policy"]) == (replicas, policy)
  for name in ("crop_size", "load_size", "direction"):
    assert str(result[name]) == own_option(flagfile, name), (name, result)
  assert result["batch_size"] == max(int(own_option(flagfile, "batch_size")),
                                     replicas)
  # What was trained is this flagfile's configuration, whichever flagfile
  # the check trained it for: the two set the same trained options.
  assert trained_options(flagfile) == trained_options(result["trained_as"])
  assert result["trained"] == determinism_check.trained_digest(
      determinism_check.trained_config(os.path.join(ROOT, flagfile),
                                       replicas, mixed_precision)), result
  assert result["moved"] > 100  # The steps trained: weights and slots.
  assert result["resumed_run"] == [0.0, []], result
  # At most two states on disk at once (the checkpoint of step 1 and the
  # one being read back), whatever ran before: the check must not fill the
  # disk of the machine the suite runs on.
  assert result["scratch_peak_bytes"] < 2 * result["state_bytes"] + 2**25, (
      result)


ROWS = [os.path.relpath(f, ROOT) for f in FLAGFILES]

# Module-level tests only: pytest-xdist's loadscope keeps a module's
# functions on one worker, one after another, where a class would be given
# a worker of its own. Two checks side by side took 22 of the 24 GB.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def one_replica():
  """Each flagfile in float32, one replica: the same steps twice."""
  return run_check("--replicas=1", "--mixed_precision=none", *FLAGFILES)


@pytest.fixture(scope="module")
def two_replicas():
  """Each flagfile in float32 on two replicas (at least one pair each)."""
  return run_check("--replicas=2", "--mixed_precision=none", *FLAGFILES)


@pytest.mark.parametrize("flagfile", ROWS)
def test_one_replica_repeats_bit_for_bit(one_replica, flagfile):
  assert_identical(one_replica[flagfile], 1, "none")


@pytest.mark.parametrize("flagfile", ROWS)
def test_two_replicas_repeat_bit_for_bit(two_replicas, flagfile):
  assert_identical(two_replicas[flagfile], 2, "none")


def test_in_the_default_precision_too():
  """The default precision of this machine (bfloat16 with AMX or AVX-512
  BF16)."""
  from pix2pix_tf import training
  facades = os.path.join(ROOT, "configs", "facades.flags")
  result = run_check("--replicas=1", facades)["configs/facades.flags"]
  assert_identical(result, 1, training.resolve_mixed_precision("auto"),
                   "auto")


def checkpoint_state(model_dir):
  import tensorflow as tf
  reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def test_two_runs_of_the_facades_flagfile_end_bit_identical(tmp_path):
  """Two train commands of configs/facades.flags (at 128x128, float32, ten
  steps: where, with deterministic kernels alone, the generator's weights
  ended up to 0.17 apart) end with the same checkpoint, bit for bit."""
  data_dir = demo.write_dataset(str(tmp_path / "data"), 12, 0, 143)
  flags = ["--flagfile=" + os.path.join(ROOT, "configs", "facades.flags"),
           f"--data_dir={data_dir}", "--label_palette=", "--deterministic",
           "--seed=7", "--crop_size=128", "--load_size=143",
           "--generator=unet_128", "--mixed_precision=none",
           "--max_steps=10", "--num_samples=0"]
  states = []
  for name in ("first", "second"):
    done = subprocess.run(
        [sys.executable, "-m", "pix2pix_tf.train", *flags,
         f"--model_dir={tmp_path / name}"],
        capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "--deterministic: deterministic kernels, one op at a time" in (
        done.stdout)
    states.append(checkpoint_state(tmp_path / name))
  first, second = states
  assert first.keys() == second.keys() and len(first) > 150
  assert int(first["step/.ATTRIBUTES/VARIABLE_VALUE"]) == 10
  for key in first:
    np.testing.assert_array_equal(first[key], second[key], err_msg=key)


# What the check runs of a run: the state, the step, the objective, the
# optimizers and schedules, the networks, the kernels and the data stream
# (whole modules), and the functions of training/run.py it calls.
TRAINING_PATH = ["training/state.py", "training/step.py", "training/losses.py",
                 "training/optimizers.py", "training/schedules.py",
                 "training/distribution.py", "training/precision.py",
                 "data/*.py", "models/*.py", "kernels/*.py"]
RUN_FUNCTIONS = ("build", "train_iterator", "check_run")


def reads_output_options(tree):
  """The lines of `tree` that read a config's output options."""
  return [node.lineno for node in ast.walk(tree)
          if isinstance(node, ast.Attribute) and node.attr == "outputs" and
          ast.unparse(node.value).endswith("config")]


def test_flagfiles_share_a_check_only_when_they_train_alike():
  """The options left out of the comparison are where a run's data and
  outputs go and how often it writes them, which nothing the check runs
  reads; changing a trained option (here the direction, the seed, the
  generator's width) makes another check."""
  outputs = {f.name for f in dataclasses.fields(config_lib.OutputConfig)}
  assert set(determinism_check.NOT_TRAINED) <= outputs | {"data_dir"}
  package = os.path.join(ROOT, "pix2pix_tf")
  for pattern in TRAINING_PATH:
    paths = glob.glob(os.path.join(package, pattern))
    assert paths, pattern
    for path in paths:
      with open(path) as file:
        assert not reads_output_options(ast.parse(file.read())), path
  with open(os.path.join(package, "training", "run.py")) as file:
    functions = {node.name: node for node in ast.parse(file.read()).body
                 if isinstance(node, ast.FunctionDef)}
  for name in RUN_FUNCTIONS:
    assert not reads_output_options(functions[name]), name
  assert reads_output_options(functions["setup"])  # What it finds.
  base = determinism_check.trained_config(FLAGFILES[0], 1, "none")
  digest = determinism_check.trained_digest
  assert digest(base) == digest(base.replace(
      data_dir="elsewhere", model_dir="other", eval_every_steps=7,
      label_palette="facades", num_samples=1))
  for change in (dict(direction="AtoB" if base.data.direction == "BtoA"
                      else "BtoA"),
                 dict(seed=base.optimisation.seed + 1),
                 dict(ngf=base.model.ngf // 2)):
    assert digest(base) != digest(base.replace(**change)), change
