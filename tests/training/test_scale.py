"""Running at scale: multi-worker training, kills and preemption, TFRecords,
bad data and numerical faults."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import (ENV, ROOT, Lines, scalar_tags, small_config,
                      truncate_after_header)
from pix2pix_tf import config as config_lib
from pix2pix_tf.data import demo
from pix2pix_tf import data as data_lib
from pix2pix_tf import outputs as outputs_lib
from pix2pix_tf.training import losses
from pix2pix_tf import training

SMALL_FLAGS = ["--load_size=36", "--crop_size=32", "--generator=unet",
               "--unet_depth=5", "--ngf=8", "--ndf=8", "--num_samples=2",
               "--log_every_steps=1", "--sample_every_steps=100",
               "--eval_every_steps=100"]


def free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def train_command(*flags):
  return [sys.executable, "-m", "pix2pix_tf.train", *SMALL_FLAGS, *flags]


def digest(output):
  lines = [l for l in output.splitlines() if "weights digest at step" in l]
  assert lines, output
  return lines[-1].split()[-1]


@pytest.mark.slow
def test_two_workers_train_in_step_and_only_the_chief_writes(tmp_path):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 8, 2, 32)
  model_dir = tmp_path / "run"
  ports = free_ports(2)
  workers = []
  for index in range(2):
    scratch = tmp_path / f"tmp{index}"
    scratch.mkdir()
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                 "task": {"type": "worker", "index": index}}
    workers.append(subprocess.Popen(
        train_command(f"--data_dir={data_dir}", f"--model_dir={model_dir}",
                      "--strategy=multi_worker", "--batch_size=4",
                      "--max_steps=3", "--checkpoint_every_steps=2"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**ENV, "TF_CONFIG": json.dumps(tf_config),
             "TMPDIR": str(scratch)}))
  outputs = [w.communicate(timeout=600) for w in workers]
  for worker, (stdout, stderr) in zip(workers, outputs):
    assert worker.returncode == 0, stderr
    assert "Training on 2 replica(s)" in stdout
  # Both workers end with the same weights.
  assert digest(outputs[0][0]) == digest(outputs[1][0])
  # Only the chief's outputs exist; the other worker cleaned up after itself.
  assert sorted(os.listdir(model_dir)) == sorted([
      outputs_lib.MANIFEST, "checkpoints", "config.json", "export",
      "flags.txt", "logs", "samples"])
  assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith(
      "ckpt-3")
  assert "SavedModel:" in outputs[0][0] and "SavedModel:" not in outputs[1][0]
  assert os.listdir(tmp_path / "tmp1") == []


def wait_for_checkpoint(model_dir, at_least, process, timeout=300):
  """Waits until the checkpoint state (written atomically after a
  checkpoint's files are complete) names a step >= at_least."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    state = tf.train.get_checkpoint_state(os.path.join(model_dir,
                                                       "checkpoints"))
    if state and int(state.model_checkpoint_path.rsplit("-", 1)[1]) >= (
        at_least):
      return
    if process.poll() is not None:
      raise AssertionError(process.communicate()[1])
    time.sleep(0.05)
  raise AssertionError(f"no checkpoint of step >= {at_least} recorded")


def checkpoint_weights(model_dir):
  """Every variable of the latest checkpoint: weights, moving statistics,
  optimizer slots, step and random states."""
  reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def make_tfrecords(data_dir, output, shards):
  made = subprocess.run(
      [sys.executable, os.path.join(ROOT, "tools", "make_tfrecords.py"),
       f"--data_dir={data_dir}", f"--output={output}", f"--shards={shards}"],
      capture_output=True, text=True, env=ENV)
  assert made.returncode == 0, made.stderr
  return str(output)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["folder", "tfrecords"])
def test_killed_run_resumes_to_the_same_weights(tmp_path, source):
  """A run killed (SIGKILL) and resumed under --deterministic ends with the
  weights, statistics, optimizer state and random states of an unbroken run:
  the resumed data stream, skip included, is the same for folders and for
  TFRecord shards (interleaved in a fixed order)."""
  data_dir = demo.write_dataset(str(tmp_path / "data"), 8, 0, 32)
  if source == "tfrecords":
    data_dir = make_tfrecords(data_dir, tmp_path / "records", shards=3)
  flags = [f"--data_dir={data_dir}", "--batch_size=2", "--max_steps=20",
           "--checkpoint_every_steps=2", "--keep_checkpoints=20",
           "--deterministic", "--seed=3"]
  whole = subprocess.run(train_command(*flags,
                                       f"--model_dir={tmp_path}/whole"),
                         capture_output=True, text=True, env=ENV)
  assert whole.returncode == 0, whole.stderr

  killed = tmp_path / "killed"
  process = subprocess.Popen(train_command(*flags, f"--model_dir={killed}"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=ENV)
  # Killed once a checkpoint of step 4 or later is recorded; the kill may
  # land anywhere after that, even in the middle of writing the next one.
  wait_for_checkpoint(killed, 4, process)
  process.send_signal(signal.SIGKILL)
  process.communicate()
  saved = tf.train.get_checkpoint_state(str(killed / "checkpoints"))
  assert saved is not None
  # Every checkpoint the run recorded restores.
  for path in saved.all_model_checkpoint_paths:
    reader = tf.train.load_checkpoint(path)
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == int(
        path.rsplit("-", 1)[1])
  resumed_from = int(saved.model_checkpoint_path.rsplit("-", 1)[1])
  assert 4 <= resumed_from < 20

  again = subprocess.run(train_command(*flags, f"--model_dir={killed}"),
                         capture_output=True, text=True, env=ENV)
  assert again.returncode == 0, again.stderr
  assert f"at step {resumed_from}." in again.stdout
  expected = checkpoint_weights(tmp_path / "whole")
  got = checkpoint_weights(killed)
  assert expected.keys() == got.keys() and len(expected) > 100
  for key in expected:
    np.testing.assert_array_equal(expected[key], got[key], err_msg=key)


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly(tmp_path):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 8, 0, 32)
  model_dir = tmp_path / "run"
  process = subprocess.Popen(
      train_command(f"--data_dir={data_dir}", f"--model_dir={model_dir}",
                    "--batch_size=2", "--max_steps=100000",
                    "--checkpoint_every_steps=100000"),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
  stdout_lines, stderr_lines = Lines(process.stdout), Lines(process.stderr)
  # "Epoch 1/..." is printed once the loop (and its SIGTERM handler) runs.
  stdout_lines.wait_for("Epoch 1/", process)
  process.send_signal(signal.SIGTERM)
  process.wait(timeout=120)
  stdout, stderr = stdout_lines.text(), stderr_lines.text()
  assert process.returncode == 0, stderr
  assert "Stopped by SIGTERM at step" in stdout
  step = int(stdout.split("Stopped by SIGTERM at step ")[1].split(";")[0])
  assert step > 0
  assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith(
      f"ckpt-{step}")


def start_workers(tmp_path, data_dir, model_dir, *flags):
  """Two workers of a --strategy=multi_worker run on 127.0.0.1."""
  ports = free_ports(2)
  workers = []
  for index in range(2):
    scratch = tmp_path / f"tmp{index}"
    scratch.mkdir(exist_ok=True)
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                 "task": {"type": "worker", "index": index}}
    process = subprocess.Popen(
        train_command(f"--data_dir={data_dir}", f"--model_dir={model_dir}",
                      "--strategy=multi_worker", "--batch_size=4", *flags),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**ENV, "TF_CONFIG": json.dumps(tf_config),
             "TMPDIR": str(scratch)})
    workers.append((process, Lines(process.stdout), Lines(process.stderr)))
  return workers


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_every_worker_with_a_checkpoint(
    tmp_path):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 8, 0, 32)
  model_dir = tmp_path / "run"
  workers = start_workers(tmp_path, data_dir, model_dir,
                          "--max_steps=100000",
                          "--checkpoint_every_steps=100000")
  for process, stdout, _ in workers:
    stdout.wait_for("Epoch 1/", process)
  # The non-chief worker is preempted; the chief must save all the same.
  workers[1][0].send_signal(signal.SIGTERM)
  steps = []
  for process, stdout, stderr in workers:
    process.wait(timeout=300)
    out = stdout.text()
    assert process.returncode == 0, stderr.text()[-3000:]
    assert "Stopped by SIGTERM to a worker at step " in out, out
    steps.append(int(out.split("at step ")[-2].split(";")[0]))
  assert steps[0] == steps[1] > 0
  saved = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
  assert saved.endswith(f"ckpt-{steps[0]}")

  resumed = start_workers(tmp_path, data_dir, model_dir,
                          f"--max_steps={steps[0] + 2}",
                          "--checkpoint_every_steps=100000")
  for process, stdout, stderr in resumed:
    process.wait(timeout=300)
    out = stdout.text()
    assert process.returncode == 0, stderr.text()[-3000:]
    assert f"at step {steps[0]}." in out
  assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith(
      f"ckpt-{steps[0] + 2}")


@pytest.mark.slow
def test_tfrecords_hold_the_files_and_train(tmp_path):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 6, 3, 32)
  records = tmp_path / "records"
  make_tfrecords(data_dir, records, shards=4)
  assert sorted(os.listdir(records)) == [
      "dataset.json", *[f"train-0000{i}-of-00004.tfrecord" for i in range(4)],
      *[f"val-0000{i}-of-00003.tfrecord" for i in range(3)]]
  # The bytes are the files' own: nothing was re-encoded.
  split = data_lib.open_split(str(records), "train")
  assert split.tfrecord and split.count == 6
  stored = {}
  for path in split.paths:
    for record in tf.data.TFRecordDataset(path):
      name, contents = data_lib.parse_record(record)
      stored[name.numpy().decode()] = contents.numpy()
  for name in os.listdir(os.path.join(data_dir, "train")):
    with open(os.path.join(data_dir, "train", name), "rb") as f:
      assert stored[name] == f.read()

  # The same pairs in the same order as the folder, for evaluation.
  config = small_config(str(records), tmp_path)
  from_records = list(data_lib.make_dataset(
      data_lib.open_split(str(records), "val"), config, 3, False,
      with_names=True))[0]
  from_folder = list(data_lib.make_dataset(
      data_lib.open_split(data_dir, "val"), config, 3, False))[0]
  names = sorted(n.decode() for n in from_records[0].numpy())
  assert names == ["0001.png", "0002.png", "0003.png"]
  order = np.argsort([n.decode() for n in from_records[0].numpy()])
  np.testing.assert_allclose(from_records[1].numpy()[order],
                             from_folder[0].numpy(), atol=1e-6)

  # Training reads them (detected from dataset.json).
  results = training.train_and_evaluate(
      small_config(str(records), tmp_path / "run", max_steps=2),
      tf.distribute.OneDeviceStrategy("/cpu:0"))
  assert results["step"] == 2 and "val_l1" in results


@pytest.mark.slow
def test_tfrecord_shards_split_by_file_across_workers(tmp_path):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 8, 0, 32)
  records = tmp_path / "records"
  subprocess.run([sys.executable, os.path.join(ROOT, "tools",
                                               "make_tfrecords.py"),
                  f"--data_dir={data_dir}", f"--output={records}",
                  "--shards=4"], check=True, capture_output=True, env=ENV)
  split = data_lib.open_split(str(records), "train")
  seen = []
  for worker in range(2):
    context = tf.distribute.InputContext(num_input_pipelines=2,
                                         input_pipeline_id=worker,
                                         num_replicas_in_sync=2)
    names = data_lib.named_contents(split, context).map(
        lambda name, _: name)
    seen.append({n.decode() for n in names.as_numpy_iterator()})
  assert len(seen[0]) == len(seen[1]) == 4
  assert not seen[0] & seen[1]


@pytest.mark.parametrize("cache", ["memory", "disk"])
@pytest.mark.slow
def test_cache_gives_the_same_data(tmp_path, cache):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 4, 0, 32)
  split = data_lib.open_split(data_dir, "train")
  value = "memory" if cache == "memory" else str(tmp_path / "cache")
  # Whole-image crops, no flip: each element is exactly its pair.
  plain = small_config(data_dir, tmp_path, load_size=32, crop_size=32,
                       flip=False, deterministic=True)
  cached = plain.replace(cache=value)

  def epochs(config):
    dataset = data_lib.make_dataset(split, config, 1, True,
                                          cache=config.data.cache)
    return [b[0].numpy() for b in dataset.take(8)]

  uncached, from_cache = epochs(plain), epochs(cached)
  for start in (0, 4):
    assert (sorted(x.tobytes() for x in uncached[start:start + 4]) ==
            sorted(x.tobytes() for x in from_cache[start:start + 4]))
  # Training batches come from the cache in a new order each epoch.
  assert not all(np.array_equal(a, b)
                 for a, b in zip(from_cache[:4], from_cache[4:]))
  if cache == "disk":
    assert glob.glob(str(tmp_path / "cache-*.index"))


def add_bad_files(data_dir):
  good = os.path.join(data_dir, "train", "0001.png")
  truncated = os.path.join(data_dir, "train", "truncated.jpg")
  Image.open(good).convert("RGB").save(truncated)
  truncate_after_header(truncated)
  text = os.path.join(data_dir, "train", "notes.jpg")
  with open(text, "w") as f:
    f.write("this is not an image")
  return truncated, text


def add_large_file(data_dir):
  """A pair of 40x80 pixels among the demo's 32x64: over --max_pixels=2048."""
  large = os.path.join(data_dir, "train", "large.png")
  Image.open(os.path.join(data_dir, "train", "0001.png")).resize(
      (80, 40)).save(large)
  return large


@pytest.mark.slow
def test_bad_images_stop_the_run_in_error_mode(tmp_path):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 6, 2, 32)
  truncated, text = add_bad_files(data_dir)
  result = subprocess.run(train_command(f"--data_dir={data_dir}",
                                        f"--model_dir={tmp_path}/run",
                                        "--max_steps=4"),
                          capture_output=True, text=True, env=ENV)
  assert result.returncode != 0
  assert f"{text} is not a .jpg image" in result.stderr
  os.remove(text)
  result = subprocess.run(train_command(f"--data_dir={data_dir}",
                                        f"--model_dir={tmp_path}/run",
                                        "--max_steps=20", "--batch_size=1",
                                        "--checkpoint_every_steps=1"),
                          capture_output=True, text=True, env=ENV)
  assert result.returncode != 0
  assert f"{truncated} is not a usable image pair" in result.stderr
  assert "--on_bad_image=skip" in result.stderr
  # An image over --max_pixels is named from its header, before training.
  os.remove(truncated)
  large = add_large_file(data_dir)
  result = subprocess.run(train_command(f"--data_dir={data_dir}",
                                        f"--model_dir={tmp_path}/new",
                                        "--max_steps=4", "--max_pixels=2048"),
                          capture_output=True, text=True, env=ENV)
  assert result.returncode == 1
  assert (f"{large} is 80x40 = 3200 pixels, more than --max_pixels=2048"
          in result.stderr), result.stderr
  assert not os.path.exists(f"{tmp_path}/new")


@pytest.mark.slow
def test_bad_images_are_named_counted_and_skipped(tmp_path):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 6, 2, 32)
  truncated, text = add_bad_files(data_dir)
  large = add_large_file(data_dir)
  result = subprocess.run(train_command(f"--data_dir={data_dir}",
                                        f"--model_dir={tmp_path}/run",
                                        "--max_steps=8", "--batch_size=2",
                                        "--on_bad_image=skip",
                                        "--max_pixels=2048"),
                          capture_output=True, text=True, env=ENV)
  assert result.returncode == 0, result.stderr
  for bad in (truncated, text, large):
    assert result.stdout.count(f"Skipping {bad}:") == 1
  assert "6 training pairs" in result.stdout
  tags = scalar_tags(str(tmp_path / "run" / "logs" / "train"))
  assert tags["skipped_images"] == [(0, 3.0)]
  assert tags["gen_l1_loss"][-1][0] == 8


@pytest.mark.slow
def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 4, 0, 32)
  calls = tf.Variable(0)
  original = losses.l1_loss

  def poisoned(views):
    # From the fourth step on, the L1 term is NaN.
    calls.assign_add(1)
    return original(views) + tf.where(calls > 3, np.nan, 0.0)

  monkeypatch.setattr(losses, "l1_loss", poisoned)
  config = small_config(data_dir, tmp_path / "run", batch_size=1,
                        max_steps=10, checkpoint_every_steps=2)
  with pytest.raises(training.NumericalError,
                     match="gen_total_loss, gen_l1_loss became nan at step 4"):
    training.train_and_evaluate(config,
                               tf.distribute.OneDeviceStrategy("/cpu:0"))
  latest = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
  assert latest.endswith("ckpt-2")
  weights = checkpoint_weights(tmp_path / "run")
  assert all(np.all(np.isfinite(v)) for v in weights.values()
             if np.issubdtype(v.dtype, np.floating))


@pytest.mark.slow  # --model_dir's check runs after TensorFlow's import.
def test_flag_errors_before_anything_is_written(tmp_path):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 4, 0, 32)
  locked = tmp_path / "locked"
  locked.mkdir()
  locked.chmod(0o500)
  cases = [
      (["--crop_size=64", "--load_size=48"], "is larger than --load_size"),
      (["--crop_size=48", "--load_size=48"], "is not a multiple of 32"),
      ([f"--model_dir={locked}/run"], "cannot be written"),
  ]
  if os.geteuid() == 0:  # root writes anywhere: use a file as the parent.
    (tmp_path / "file").write_text("x")
    cases[-1] = ([f"--model_dir={tmp_path}/file/run"],
                 "is a file, not a folder")
  for flags, message in cases:
    result = subprocess.run(train_command(f"--data_dir={data_dir}",
                                          f"--model_dir={tmp_path}/run",
                                          *flags),
                            capture_output=True, text=True, env=ENV)
    assert result.returncode != 0
    errors = [l for l in result.stderr.splitlines()
              if l.startswith("pix2pix_tf.train: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert not (tmp_path / "run").exists()
  flagfile = tmp_path / "bad.flags"
  flagfile.write_text(f"--data_dir={data_dir}\n--not_a_flag=1\n")
  result = subprocess.run(train_command(f"--flagfile={flagfile}"),
                          capture_output=True, text=True, env=ENV)
  assert result.returncode != 0
  assert "Unknown command line flag 'not_a_flag'" in result.stderr


def test_batch_size_must_divide_across_replicas(tmp_path):
  """Refused when the run starts on its strategy, before anything is
  written."""
  data_dir = demo.write_dataset(str(tmp_path / "data"), 4, 0, 36)
  config = small_config(data_dir, tmp_path / "run", batch_size=3)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  with pytest.raises(config_lib.ConfigError, match="--batch_size=3 is not "
                     "divisible by the 2 replicas"):
    training.train_and_evaluate(config, strategy)
  assert not (tmp_path / "run").exists()
