"""Shared fixtures. Tests run on the CPU, split into two logical devices."""

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

# Two logical CPU devices, so a 2-replica MirroredStrategy can run here. This
# must happen before TensorFlow initialises its devices.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

# The repository root (configs/, tools/, README.md).
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# The tools are scripts that import each other (benchmark uses
# step_profile), as they do run from tools/.
sys.path.insert(0, os.path.join(ROOT, "tools"))
import browser  # noqa: E402  (tools/browser.py)
# The environment of the commands the tests start: TensorFlow's C++ log quiet.
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def browser_needed(message):
  """Skips a browser test that cannot run here, saying why; where
  PIX2PIX_REQUIRE_BROWSER=1 (set by .ci/run) it fails instead."""
  if os.environ.get("PIX2PIX_REQUIRE_BROWSER") == "1":
    pytest.fail(message)
  pytest.skip(message)


def chromium_needed():
  """Skips (or fails) a test that needs Debian's Chromium where it is not
  installed."""
  if browser.missing():
    browser_needed(browser.missing())


def headless_chromium(**options):
  """tools/browser.py's headless Chromium (`chromium_driver(**options)`);
  the caller quits it."""
  chromium_needed()
  return browser.chromium_driver(**options)


def load_tool(name):
  """tools/<name>.py as a module: the tools are scripts, not a package."""
  import importlib
  return importlib.import_module(name)


@contextlib.contextmanager
def serving_in_thread(server):
  """Serves `server` (a socketserver, werkzeug's included) from a daemon
  thread for the block, then stops it and closes its socket.

  The thread looks for the stop every 10 ms rather than socketserver's
  default half second: each test waits for its server to stop, and the
  suite starts about a hundred of them."""
  thread = threading.Thread(target=server.serve_forever,
                            kwargs={"poll_interval": 0.01}, daemon=True)
  thread.start()
  try:
    yield server
  finally:
    server.shutdown()
    server.server_close()


def run_command(command, *args, timeout=600):
  """`python -m pix2pix_tf.<command> args...`, its output captured as text."""
  return subprocess.run([sys.executable, "-m", f"pix2pix_tf.{command}",
                         *args], capture_output=True, text=True, env=ENV,
                        timeout=timeout)


class Lines:
  """Collects a process's output lines on a thread, so that a test can wait
  for a line (a condition the program states) without filling the pipe."""

  def __init__(self, stream):
    self.lines = []
    self._thread = threading.Thread(target=self._read, args=(stream,),
                                    daemon=True)
    self._thread.start()

  def _read(self, stream):
    for line in stream:
      self.lines.append(line)

  def wait_for(self, text, process, timeout=300):
    """The first line holding text, once it is printed; an AssertionError
    with the output if the process ends first or timeout seconds pass."""
    deadline = time.time() + timeout
    while time.time() < deadline:
      # Whether the output had ended, asked before the lines are read: a
      # line printed just before the end is then never missed.
      ended = process.poll() is not None and not self._thread.is_alive()
      for line in list(self.lines):
        if text in line:
          return line
      if ended:
        raise AssertionError(f"exited before printing {text!r}:\n"
                             + self.text())
      time.sleep(0.05)
    raise AssertionError(f"{text!r} not printed in {timeout} s")

  def text(self):
    """All the output, once the stream has ended."""
    self._thread.join(timeout=600)
    return "".join(self.lines)


# A command's run that ends by saying whether it imported TensorFlow.
_SAYING_IMPORTS = (
    "import atexit, runpy, sys; atexit.register(lambda: print('tensorflow "
    "imported:', 'tensorflow' in sys.modules)); sys.argv[0] = {name!r}; "
    "runpy.{run}({target!r}, run_name='__main__')")
NO_TENSORFLOW = "tensorflow imported: False"


def run_saying_imports(command, *args, timeout=600):
  """run_command's run (or, for a path ending in .py, the script's) whose
  output ends with NO_TENSORFLOW if it never imported TensorFlow."""
  script = command.endswith(".py")
  code = _SAYING_IMPORTS.format(
      name=command, run="run_path" if script else "run_module",
      target=command if script else f"pix2pix_tf.{command}")
  return subprocess.run([sys.executable, "-c", code, *args],
                        capture_output=True, text=True, env=ENV,
                        timeout=timeout)

from pix2pix_tf import config as config_lib  # noqa: E402
from pix2pix_tf.data import demo


def small_config(data_dir, model_dir, **overrides):
  """A shallow, fast configuration for 32x32 crops."""
  values = dict(
      data_dir=str(data_dir), model_dir=str(model_dir), load_size=36,
      crop_size=32, generator="unet", unet_depth=5, ngf=8, ndf=8,
      batch_size=2, epochs=1, epochs_decay=1, num_samples=2,
      log_every_steps=2, sample_every_steps=2, eval_every_steps=2,
      checkpoint_every_steps=2, strategy="one_device",
      mixed_precision="none", steps_per_execution=1,
      # The same kernels on every machine (unset: the machine's own).
      **dict.fromkeys(config_lib.KERNEL_OPTIONS, True))
  values.update(overrides)
  return config_lib.Config().replace(**values)


def fixed_pair():
  """One 32x32 training pair: a random image and its mirror image."""
  source = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3))
  source = source.astype(np.float32)
  return tf.constant(source), tf.constant(source[..., ::-1])


def built_small(tmp_path, **overrides):
  """(training.build of `small_config` with `overrides`, dropout off and a
  learning rate of 1e-3, on one device; the strategy)."""
  from pix2pix_tf import training
  config = small_config(tmp_path, tmp_path / "run", dropout=0.0,
                        learning_rate=1e-3, **overrides)
  strategy = training.make_strategy("one_device")
  return training.build(config, strategy, steps_per_epoch=100), strategy


# One Adam step moves a weight by about the learning rate, 2e-4. Two
# implementations of one update (another op order, another replica count)
# round the gradients differently, and Adam's normalisation, with the
# reference's epsilon of 1e-8, turns a rounding difference on a weight whose
# gradients are near zero into up to a whole step (seen: 1.3e-4 on 1 of 384
# weights). Nearly every weight agrees to UPDATE_TOLERANCE; the few that do
# not, still to two steps.
UPDATE_TOLERANCE = 2e-5


def assert_same_update(ours, theirs, learning_rate):
  """`ours` and `theirs` (weights after the same Adam steps taken two ways)
  agree to UPDATE_TOLERANCE but for at most 1% of the weights (at least 2
  allowed), which agree to two steps of the learning rate."""
  off = np.abs(ours - theirs) > UPDATE_TOLERANCE
  assert off.sum() <= max(2, 0.01 * ours.size), (
      f"{off.sum()} of {ours.size} weights differ by more than "
      f"{UPDATE_TOLERANCE}")
  np.testing.assert_allclose(ours, theirs, atol=2 * learning_rate)


def l1_losses(built, strategy, steps=30):
  """The L1 loss of each of `steps` training steps of `built` (made under
  `strategy`) on `fixed_pair`."""
  dataset = tf.data.Dataset.from_tensors(fixed_pair()).repeat()
  iterator = iter(strategy.experimental_distribute_dataset(dataset))
  return [float(built.distributed_step(iterator)["gen_l1_loss"])
          for _ in range(steps)]


def networks_layers(built, kinds):
  """The layers of `built`'s generator and discriminator that are
  instances of `kinds`."""
  from pix2pix_tf import models
  return [layer for model in (built.state.generator,
                              built.state.discriminator)
          for layer in models.flat_layers(model)
          if isinstance(layer, kinds)]


def share_random_weights(layers, draw):
  """Gives `layers` (built alike) the same random weights: `draw(rng,
  shape)` for each of their variables in turn, from a fixed seed."""
  rng = np.random.default_rng(0)
  for variables in zip(*(layer.weights for layer in layers)):
    value = draw(rng, variables[0].shape).astype(np.float32)
    for variable in variables:
      variable.assign(value)
  return layers


def step_ops(built, strategy):
  """The ops of `built`'s training step traced on `fixed_pair`."""
  step = tf.function(lambda: strategy.run(built.train_step,
                                          args=(fixed_pair(),)))
  return step.get_concrete_function().graph.get_operations()


def weighted_loss(x, y):
  """The sum of y * sin(y) in float32: weighted, so that the gradients
  are not those of a plain sum."""
  y = tf.cast(y, tf.float32)
  return tf.reduce_sum(y * tf.sin(y))


def trained_once(layer, x, weights=(), loss=weighted_loss, training=True):
  """One call of `layer` on `x` under a gradient tape: its output and the
  gradients of `loss(x, output)` with respect to `x` and to `layer`'s
  `weights` (attribute names), as numpy arrays in their own dtypes; and
  the ops the call and its gradients ran."""

  @tf.function
  def call(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x, training=training)
      value = loss(x, y)
    return [y] + tape.gradient(
        value, [x] + [getattr(layer, name).value for name in weights])

  results = [t.numpy() for t in call(x)]
  return results, call.get_concrete_function(x).graph.get_operations()


def visible_generator(config):
  """A fresh generator of `config` whose output shows its input and the
  normalisation used: a freshly initialised one answers near 0 whatever it
  is given, so its last layer is made larger."""
  from pix2pix_tf import models
  generator = models.build_generator(config)
  last = generator.get_layer("up0_conv")
  last.kernel.assign(last.kernel * 30.0)
  return generator


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory):
  """A run of three steps on four 32x32 demo pairs (two in val); the training
  loop exports it to <model_dir>/export. Trained once per test process and
  never written to: the tests use trained_run's copies."""
  from pix2pix_tf import training
  root = tmp_path_factory.mktemp("shared_run")
  data_dir = demo.write_dataset(str(root / "data"), 4, 2, 32)
  config = small_config(data_dir, root / "model", max_steps=3)
  training.train_and_evaluate(config,
                             tf.distribute.OneDeviceStrategy("/cpu:0"))
  return config


@pytest.fixture(scope="module")
def trained_run(shared_run, tmp_path_factory):
  """shared_run's run and data, copied for one test module, which may
  write into them (exports beside the run's, edited files). The config and
  the copy's flags.txt and config.json name the copies, so that a command
  resumed from them writes into the copy."""
  from pix2pix_tf import training
  root = tmp_path_factory.mktemp("run")
  data_dir, model_dir = str(root / "data"), str(root / "model")
  shutil.copytree(shared_run.data.data_dir, data_dir)
  shutil.copytree(shared_run.outputs.model_dir, model_dir)
  config = shared_run.replace(data_dir=data_dir, model_dir=model_dir)
  training.write_run_config(config,
                            training.open_run_folder(model_dir, data_dir))
  return config


@pytest.fixture
def tiny_dataset(tmp_path):
  """Eight train and two val demo pairs of 32x32 halves."""
  return demo.write_dataset(str(tmp_path / "tiny"), num_train=8,
                                 num_val=2, size=32)


def write_pair(path, left, right):
  """Saves two HxWxC uint8 arrays side by side."""
  pair = np.concatenate([left, right], axis=1)
  Image.fromarray(pair.squeeze()).save(path)
  return str(path)


def truncate_after_header(path):
  """Cuts an image file in half, past its header: its size can still be
  read, and decoding it fails (a copy interrupted midway)."""
  with open(path, "rb") as f:
    contents = f.read()
  with open(path, "wb") as f:
    f.write(contents[:len(contents) // 2])
  with Image.open(path) as image:
    assert image.size[0] >= 2  # The header survived.
  return str(path)


def gradient_image(height, width, channels=3, offset=0):
  """A deterministic, asymmetric uint8 image (no two pixels alike)."""
  y, x = np.mgrid[0:height, 0:width]
  planes = [(x * 7 + y * 3 + offset + 60 * c) % 256 for c in range(channels)]
  return np.stack(planes, axis=-1).astype(np.uint8)


def scalar_tags(log_dir):
  """TensorBoard values of a log folder: tag -> sorted [(step, value)]."""
  tags = {}
  for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        tags.setdefault(value.tag, []).append(
            (event.step, float(tf.make_ndarray(value.tensor))
             if value.tensor.dtype != tf.string.as_datatype_enum else 0.0))
  return {tag: sorted(values) for tag, values in tags.items()}
