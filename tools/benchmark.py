r"""Measures pix2pix_tf's speed and memory against a plain baseline, in one run.

    python tools/benchmark.py --flagfile=configs/facades.flags \
        --data_dir=datasets/facades --batch_sizes=1,16 --output=bench.json

In one process, with warm-up (tracing, compilation) excluded and the median
of timed repeats (at most --repeats of --steps_per_repeat steps, fewer where
steps are slow, so that a row takes about --seconds_per_row; the profile
times --repeats rounds whatever a step takes):

  (a) input pipeline images/s alone;
  (b) training images/s of the plain baseline (fp32, no XLA, one step per
      call, Keras's Adam ops and batch norm) and of each optimisation alone and
      combined, as
      ratios to the baseline at the same batch size; by default, reduced
      precisions --mixed_precision=auto does not choose here are not timed;
  (c) SavedModel inference images/s and p50/p95 latency at batch 1 and 8;
  (d) achieved GFLOP/s, from the FLOPs per training step that this tool
      counts from the models' convolution layers;
  (e) each row's peak host memory while it trains (what the process held
      when the row began included), and peak GPU memory on a GPU;
  (f) for the configuration the flags give (the "default" row): a plain
      Keras step (the tutorial's, on the same models, data, precision and
      update order, with Keras's Adam ops, batch norm, convolutions and
      activations; no strategy, metrics or loop) timed in turn with
      pix2pix_tf's step (one repeat of each per round), and pix2pix_tf's
      ratio to it, and when the default uses other kernels (fused updates
      or batch norm, patch-product convolutions, compiled activations),
      also to the plain step with the same kernels; a profile of its step
      (generator forward, discriminator forwards, backward passes,
      optimizer updates, everything else); and the matrix-multiply peak
      of the compute dtype, measured with a large matmul, with the step's
      share of it;
  (g) --train_command_steps=N: the whole train command on the same flags,
      its rate between its first and last logged window against (f)'s;
  (h) --largest_batch: the largest batch that trains, found by running two
      steps per batch size in a child process, doubling until one runs out
      of memory, then bisecting;
  (i) --kernels_in_turn: the default step timed in turn with itself less
      each kernel option, then bfloat16 against float32: what this kind of
      machine's defaults (pix2pix_tf/kernels/machines.py) rest on.

--quality_steps=N also trains the demo configuration N steps in fp32 with
Keras's Adam ops, batch norm, convolutions and activations (the step before any
optimisation), in fp32 with the default's kernels, and in each reduced
precision timed, --quality_seeds runs each, and prints the mean val L1 of
each, to check that the faster step loses no quality. Prints a table and
writes JSON after each part."""

import gc
import json
import os
import resource
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import config as config_lib
from pix2pix_tf import errors
from pix2pix_tf import outputs
from pix2pix_tf import temporaries

config_lib.define_flags()  # The training flags, for the base configuration.
flags.DEFINE_list("batch_sizes", ["1", "16"], "Training batch sizes.")
flags.DEFINE_list("inference_batch_sizes", ["1", "8"],
                  "SavedModel inference batch sizes.")
flags.DEFINE_list("variants", ["default", "baseline"],
                  "Training configurations: default (the flags as given), "
                  "baseline (fp32, no XLA, 1 step per call, Keras's Adam ops "
                  "and batch norm, TensorFlow's convolution kernels, the "
                  "alternating update), simultaneous "
                  "(the baseline with --update_order=simultaneous: what the "
                  "alternating update costs), fused (--fused_updates), "
                  "fused_bn (--fused_batch_norm), matmul_convs "
                  "(--matmul_small_convs), compiled_activations "
                  "(bf16 with --compiled_activations, which applies to "
                  "bf16 only: compare with the bf16 row), one_device "
                  "(--strategy=one_device), bf16, fp16, xla, spe "
                  "(--bench_spe steps per call), combined (every "
                  "optimisation that beat the baseline alone at this batch "
                  "size, the faster of bf16 and fp16); or all: every one, "
                  "less the reduced precisions --mixed_precision=auto "
                  "does not choose here (fp16 without a GPU; bf16 where "
                  "auto is float32).")
flags.DEFINE_integer("matmul_size", 2048, "Side of the square matrices that "
                     "measure the matrix-multiply peak.")
flags.DEFINE_integer("bench_spe", 4, "Steps per call of the spe variants.")
flags.DEFINE_bool("plain", True, "Time the plain Keras step beside the "
                  "default row.")
flags.DEFINE_bool("profile", True, "Profile the default row's step.")
flags.DEFINE_integer("repeats", 5, "Timed repeats at most; the median is "
                     "reported. The profile times exactly this many rounds.",
                     lower_bound=1)
flags.DEFINE_integer("steps_per_repeat", 4, "Training steps per repeat at "
                     "most.")
flags.DEFINE_float("seconds_per_row", 30.0,
                   "Timing budget of one measurement: fewer steps per "
                   "repeat, then fewer repeats (at least 3 of one call), "
                   "where the steps are slow.")
flags.DEFINE_integer("warmup_steps", 2, "Untimed steps before timing.")
flags.DEFINE_integer("quality_steps", 0,
                     "Train the demo configuration this many steps per "
                     "precision and compare val L1 (0: skip).")
flags.DEFINE_integer("quality_seeds", 1,
                     "Runs of each --quality_steps configuration, with seeds "
                     "0..N-1: their mean is compared, each run printed (one "
                     "run's val L1 moves by a few percent with the seed and "
                     "the threads' rounding).", lower_bound=1)
flags.DEFINE_string("quality_data_dir", "datasets/demo",
                    "Demo data for --quality_steps (made if missing).")
flags.DEFINE_integer("train_command_steps", 0,
                     "Also run the whole train command this many steps on "
                     "the flags as given (its data, logging, samples, "
                     "validation and checkpoints at the flags' periods) and "
                     "compare its rate with the default row's (0: skip).")
flags.DEFINE_bool("largest_batch", False,
                  "Also find the largest batch of the flags' configuration "
                  "that trains on this machine: two steps per batch size in "
                  "a child process, doubling from the largest of "
                  "--batch_sizes (up to --largest_batch_limit) until the "
                  "child runs out of memory, then bisecting. The children "
                  "may be stopped by the system's out-of-memory killer: "
                  "run it on a machine of your own.")
flags.DEFINE_integer("largest_batch_limit", 1024,
                     "The largest batch size --largest_batch tries.")
flags.DEFINE_bool("kernels_in_turn", False,
                  "At each batch size, time the default step in turn with "
                  "itself less each kernel option it uses, and with each "
                  "one it leaves off turned on, then bfloat16 against "
                  "float32: what this machine's defaults rest on "
                  "(pix2pix_tf/kernels/machines.py).")
flags.DEFINE_string("output", None, "Write the results as JSON here.")
FLAGS = flags.FLAGS

VARIANTS = {
    "default": {},  # The flags as given.
    "baseline": dict(mixed_precision="none", jit_compile=False,
                     steps_per_execution=1, update_order="alternating",
                     **dict.fromkeys(config_lib.KERNEL_OPTIONS, False)),
    "simultaneous": dict(update_order="simultaneous"),
    "fused": dict(fused_updates=True),
    "fused_bn": dict(fused_batch_norm=True),
    "matmul_convs": dict(matmul_small_convs=True),
    # In bfloat16, the only precision the compiled activations train.
    "compiled_activations": dict(mixed_precision="bf16",
                                 compiled_activations=True),
    # One replica without MirroredStrategy's per-replica wrappers.
    "one_device": dict(strategy="one_device"),
    "bf16": dict(mixed_precision="bf16"),
    "fp16": dict(mixed_precision="fp16"),
    "xla": dict(jit_compile=True),
    "spe": dict(steps_per_execution=None),  # --bench_spe
    "combined": None,  # Chosen from the single optimisations' results.
}


def combined_overrides(rows) -> dict:
  """The optimisations that beat the baseline alone, together."""

  def helped(name):
    return ((rows.get(name) or {}).get("ratio_to_baseline") or 0) > 1.0

  overrides = {}
  precisions = [p for p in ("bf16", "fp16") if helped(p)]
  if precisions:
    overrides["mixed_precision"] = max(
        precisions, key=lambda p: rows[p]["ratio_to_baseline"])
  if helped("xla"):
    overrides["jit_compile"] = True
  if helped("fused"):
    overrides["fused_updates"] = True
  if helped("fused_bn"):
    overrides["fused_batch_norm"] = True
  if helped("matmul_convs"):
    overrides["matmul_small_convs"] = True
  if helped("compiled_activations") and helped("bf16") and (
      rows["compiled_activations"]["ratio_to_baseline"] >
      rows["bf16"]["ratio_to_baseline"]):  # Beyond what bf16 gave.
    overrides["compiled_activations"] = True
  if helped("one_device"):
    overrides["strategy"] = "one_device"
  if helped("spe"):
    overrides["steps_per_execution"] = None  # --bench_spe
  return overrides


def variant_overrides(name: str, rows: dict, bench_spe: int) -> dict:
  """The flags variant `name` changes: none for "default" (the flags as
  given), else the baseline's and the variant's own (for "combined", those
  of the variants in `rows` that helped); --steps_per_execution from
  `bench_spe` where a variant sets it."""
  overrides = {} if name == "default" else dict(VARIANTS["baseline"])
  chosen = combined_overrides(rows) if name == "combined" else VARIANTS[name]
  overrides.update({k: (bench_spe if v is None else v)
                    for k, v in chosen.items()})
  return overrides


def all_variants() -> list:
  """Every variant, less the reduced precisions auto does not choose here."""
  import tensorflow as tf
  from pix2pix_tf.kernels import machines

  names = list(VARIANTS)
  if not tf.config.list_physical_devices("GPU"):
    names.remove("fp16")
  if machines.auto_precision() != "bf16":
    names.remove("bf16")
    names.remove("compiled_activations")
  return names


def fitted_calls(call_seconds, max_calls, budget, max_repeats):
  """(calls per repeat, repeats) that time within `budget` seconds: up to
  `max_calls` calls and `max_repeats` repeats, at least one call and three
  repeats."""
  calls = int(max(1, min(max_calls, budget // (max_repeats * call_seconds))))
  repeats = int(max(min(3, max_repeats),
                    min(max_repeats, budget // (calls * call_seconds))))
  return calls, repeats


def timed_rate(run, images_per_call, max_calls, warmup):
  """Images/s of `run(n)` (n calls, blocking): `warmup` untimed calls
  (tracing, compilation), one more to size the timing, then the median of
  the fitted repeats."""
  import step_profile as profile
  run(warmup)
  start = time.perf_counter()
  run(1)
  calls, repeats = fitted_calls(time.perf_counter() - start, max_calls,
                                FLAGS.seconds_per_row, FLAGS.repeats)
  median = profile.median_seconds(lambda: run(calls), repeats, warmup=0)
  return calls * images_per_call / median


def conv_flops(model, input_shapes) -> int:
  """Multiply-adds x 2 of every convolution for one example of this size.

  Clones the model on fixed-size inputs so that every layer's shapes are
  known, then counts Conv2D (2 k^2 c_in c_out H_out W_out) and
  Conv2DTranspose (2 k^2 c_in c_out H_in W_in) layers. Normalisation and
  activations (a few FLOPs per value) are left out.
  """
  import keras
  from pix2pix_tf import models

  if isinstance(model, models.Discriminators):
    shapes = input_shapes if model.conditional else input_shapes[1:]
    return sum(conv_flops(d, shapes) for d in model.discriminators)
  inputs = [keras.Input(shape=s, batch_size=1) for s in input_shapes]
  clone = keras.models.clone_model(
      model, input_tensors=inputs if len(inputs) > 1 else inputs[0])
  total = 0
  for layer in clone.layers:
    if isinstance(layer, keras.layers.Conv2DTranspose):
      _, h, w, c_in = layer.input.shape
      total += 2 * layer.kernel_size[0] * layer.kernel_size[1] * c_in * (
          layer.filters) * h * w
    elif isinstance(layer, keras.layers.Conv2D):
      c_in = layer.input.shape[-1]
      _, h, w, _ = layer.output.shape
      total += 2 * layer.kernel_size[0] * layer.kernel_size[1] * c_in * (
          layer.filters) * h * w
  return int(total)


def training_flops(config) -> dict:
  """FLOPs per image of one training step.

  simultaneous: forward G once and D twice (real and generated pair);
  backward about twice the forward for D's two passes (input and weight
  gradients), once more through D's generated pass for G's loss (input
  gradients only), and twice G's forward: 3 G + 7 D. alternating adds the
  G step's own forward of D on the generated pair (against the updated D):
  3 G + 8 D.
  """
  from pix2pix_tf import models
  size = config.data.crop_size
  generator = models.build_generator(config)
  discriminator = models.build_discriminators(config)
  g = conv_flops(generator, [(size, size, config.data.input_channels)])
  d = conv_flops(discriminator, [(size, size, config.data.input_channels),
                                 (size, size, config.data.output_channels)])
  d_passes = 8 if config.objective.update_order == "alternating" else 7
  return {"generator_forward": g, "discriminator_forward": d,
          "train_step": 3 * g + d_passes * d}


# The largest peak host memory before the last reset_host_peak.
_peaks_before_resets = [0.0]


def reset_host_peak() -> bool:
  """Starts the peak resident memory afresh, so that `peak_host_memory_mb`
  reads the peak from now on (Linux: 5 written to /proc/self/clear_refs
  sets VmHWM, the peak, to the resident memory now; the peak so far is
  kept first for `process_peak_host_memory_mb`). False where it cannot
  (`host_peak_resets`): the reading is then the process's peak so far."""
  _peaks_before_resets[0] = max(_peaks_before_resets[0],
                                peak_host_memory_mb())
  if not host_peak_resets():
    return False
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
  return True


def host_peak_resets() -> bool:
  """Whether `reset_host_peak` can reset the peak here (Linux, where this
  process may write /proc/self/clear_refs and read VmHWM)."""
  return (os.access("/proc/self/clear_refs", os.W_OK) and
          os.path.exists("/proc/self/status"))


def peak_host_memory_mb() -> float:
  """Peak resident MiB since `reset_host_peak` (or since the process
  began): VmHWM, or ru_maxrss where /proc/self/status does not say (it
  can keep a larger peak from an exited thread)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def process_peak_host_memory_mb() -> float:
  """The process's peak resident MiB, resets or not."""
  return max(_peaks_before_resets[0], peak_host_memory_mb())


def peak_gpu_memory_mb():
  import tensorflow as tf
  if not tf.config.list_physical_devices("GPU"):
    return None
  return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20


def reset_gpu_peak():
  import tensorflow as tf
  if tf.config.list_physical_devices("GPU"):
    tf.config.experimental.reset_memory_stats("GPU:0")


def bench_input_pipeline(config, split, batch_size, repeats):
  from pix2pix_tf import data as data_lib
  import step_profile as profile
  dataset = data_lib.make_dataset(split, config, batch_size, True)
  iterator = iter(dataset)
  for _ in range(3):
    next(iterator)
  batches = 20

  def run():
    for _ in range(batches):
      next(iterator)[0].numpy()

  median = profile.median_seconds(run, repeats, warmup=0)
  return batches * batch_size / median


def training_runner(config, split, batch_size):
  """(run, images per call, steps per call): `run(n)` makes n blocking
  calls of `config`'s training step at `batch_size` (steps_per_execution
  steps each)."""
  from pix2pix_tf import training
  from pix2pix_tf.training import losses

  strategy = training.make_strategy(config.run.strategy)
  config = config.replace(batch_size=batch_size)
  step = training.build(config, strategy, 100, 10000).distributed_step
  iterator = training.train_iterator(strategy, config, split)
  per_call = config.run.steps_per_execution

  def run(n):
    for _ in range(n):
      metrics = step(iterator, per_call)
    float(metrics[losses.GENERATOR_TOTAL])  # Waits for the device.

  return run, per_call * batch_size, per_call


def plain_runner(config, split, batch_size, fused_updates=False):
  """(run, images per call, steps per call) of the plain Keras step
  (step_profile.PlainStep, with Keras's Adam ops or the fused one, and
  `config`'s batch norm and convolution kernels) on the same tf.data
  stream: `for x, y in dataset: step(x, y)`, one step a call."""
  from pix2pix_tf import data as data_lib
  import step_profile as profile

  plain = profile.PlainStep(config, fused_updates)
  iterator = iter(data_lib.make_dataset(split, config, batch_size, True))

  def run(n):
    for _ in range(n):
      loss = plain.step(*next(iterator))
    float(loss)  # Waits for the device.

  return run, batch_size, 1


def fresh_session():
  """A new Keras session, seeded as every timed configuration is."""
  import keras
  keras.backend.clear_session()
  keras.utils.set_random_seed(0)


def bench_training(config, split, batch_size, steps_per_repeat, warmup_steps):
  """Images/s of training `config` at `batch_size`, warm-up excluded."""
  fresh_session()
  run, images, per_call = training_runner(config, split, batch_size)
  reset_gpu_peak()
  # The row's own peak (from what the process holds now), not the
  # largest of the rows before it.
  reset_host_peak()
  return timed_rate(run, images, max(1, steps_per_repeat // per_call),
                    max(1, warmup_steps // per_call) + 1)


def seconds_in_turn(runs, max_steps, warmup_steps):
  """Times `runs` (name -> (run, images per call, steps per call)) in
  turn: after the warm-up, one timed repeat of each per round (the same
  number of steps each, fitted to the budget), the order reversed every
  other round, so that a drift in the machine's speed reaches them alike.
  Each run's input pipeline refills what it gave while the others are
  timed. Returns each run's images per repeat and seconds per round."""
  per_step = 0.0
  for run, _, steps in runs.values():
    run(max(1, warmup_steps // steps))
    start = time.perf_counter()
    run(1)
    per_step += (time.perf_counter() - start) / steps
  steps, repeats = fitted_calls(per_step, max_steps, FLAGS.seconds_per_row,
                                FLAGS.repeats)
  calls = {name: max(1, steps // per_call)
           for name, (_, _, per_call) in runs.items()}
  seconds = {name: [] for name in runs}
  for round_ in range(repeats):
    for name in list(runs)[::1 if round_ % 2 == 0 else -1]:
      start = time.perf_counter()
      runs[name][0](calls[name])
      seconds[name].append(time.perf_counter() - start)
  return {name: calls[name] * runs[name][1] for name in runs}, seconds


def bench_profile(config, split, batch_size, repeats):
  """step_profile.profile_step of `config` (one step per call), and
  on a CPU its ops by kind (step_profile.op_times)."""
  import tensorflow as tf
  from pix2pix_tf import data as data_lib
  from pix2pix_tf import training
  from pix2pix_tf.training import losses
  import step_profile as profile

  fresh_session()
  config = config.replace(steps_per_execution=1)
  strategy = training.make_strategy(config.run.strategy)
  built = training.build(config, strategy, 100, 10000)
  batch = next(iter(data_lib.make_dataset(split, config, batch_size, True)))
  iterators = []

  def whole():
    float(built.distributed_step(iterators[0], 1)[losses.GENERATOR_TOTAL])

  def make_whole():
    # The training input starts here: its threads must not run while the
    # parts are timed (they did, and slowed the first part timed).
    iterators.append(training.train_iterator(strategy, config, split))
    return whole

  found = profile.profile_step(built.train_step, make_whole, batch, repeats,
                               strategy)
  if tf.config.list_logical_devices("GPU"):  # The trace sums CPU ops.
    return found, {}
  with tempfile.TemporaryDirectory() as logdir:
    ops = profile.op_times(whole, 3, logdir)
  return found, ops


def matmul_peak_gflops(dtype, size=2048, repeats=5):
  """GFLOP/s of a size x size matmul chain in `dtype`: the cores' (or the
  GPU's) practical matrix peak, for the step's share of it."""
  import tensorflow as tf
  import step_profile as profile

  device = "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0"
  with tf.device(device):
    a = tf.random.uniform((size, size), dtype=tf.float32)
    a = tf.cast(a, dtype)
    chain = 8

    @tf.function(autograph=False)  # A Python loop, unrolled.
    def run(x):
      for _ in range(chain):
        x = tf.matmul(x, a) * tf.cast(1.0 / size, dtype)
      return x

    fastest = min(profile.call_seconds(lambda: run(a).numpy(), repeats))
  return chain * 2 * size ** 3 / fastest / 1e9


def profile_refusal(config):
  """Why the profile cannot time `config`'s step as training runs it, or
  None."""
  from pix2pix_tf import training
  from pix2pix_tf.training import precision
  if config.objective.update_order != "alternating":
    return "it cuts the alternating update"
  if config.run.jit_compile:
    return ("its cuts would compile the updates with XLA, which the "
            "training step does not")
  if precision.resolve_mixed_precision(config.run.mixed_precision) == "fp16":
    return "its cuts do not scale the loss as float16 training does"
  if training.make_strategy(config.run.strategy).num_replicas_in_sync > 1:
    return "its cuts run the whole batch on each replica"
  return None


def compare_plain(config, split, batch_size):
  """The default row's configuration against the plain Keras step as the
  tutorial writes it (Keras's Adam ops, batch norm, convolutions and
  activations) and, when the default uses other kernels
  (`config_lib.KERNEL_OPTIONS`: fused updates or batch norm, patch-product
  convolutions, compiled activations), against the plain step with the
  same kernels: like for like, the cost of the strategy, the metrics and the
  loop. Each pair is timed in turn (`seconds_in_turn`); the ratio is the
  median over the rounds of the two rates within a round."""
  from pix2pix_tf.kernels import machines

  result = {}
  plains = {"": (config.replace(**dict.fromkeys(
      config_lib.KERNEL_OPTIONS, False)), False)}
  used = machines.kernels_used(config.kernels)
  if any(used.values()):
    plains["_same_kernels"] = (config.replace(**used), used["fused_updates"])
  for suffix, (plain_config, fused) in plains.items():
    try:
      rates, ratio = plain_pair(config, plain_config, fused, split,
                                batch_size)
    except ValueError as e:  # What the tutorial's step does not do.
      print(f"batch {batch_size}: plain Keras step skipped: {e}", flush=True)
      return result
    gc.collect()  # The pair's models, before the next pair's.
    result.update({f"plain{suffix}_images_per_second": rates["plain"],
                   f"images_per_second_beside_plain{suffix}":
                       rates["pix2pix_tf"],
                   f"ratio_to_plain{suffix}": ratio})
    kernels = ("the same kernels" if suffix else
               "Keras's Adam ops, batch norm, convolutions and activations")
    print(f"batch {batch_size}: plain Keras step with {kernels} "
          f"{rates['plain']:.2f} images/s, pix2pix_tf beside it "
          f"{rates['pix2pix_tf']:.2f}: x{ratio:.2f}", flush=True)
  return result


def plain_pair(config, plain_config, fused_updates, split, batch_size):
  """pix2pix_tf's step of `config` and the plain step of `plain_config`
  timed in turn: each one's images/s and pix2pix_tf's ratio to the plain
  step (`pair_in_turn`)."""
  fresh_session()
  return pair_in_turn({
      "plain": plain_runner(plain_config, split, batch_size, fused_updates),
      "pix2pix_tf": training_runner(config, split, batch_size)})


def pair_in_turn(runs):
  """Two runs (name -> (run, images per call, steps per call)) timed in
  turn (`seconds_in_turn`): each one's images/s (median over the rounds)
  and the second's rate over the first's, the median over the rounds of
  the two rates within a round."""
  images, seconds = seconds_in_turn(runs, FLAGS.steps_per_repeat,
                                    FLAGS.warmup_steps + 1)
  rates = {name: images[name] / statistics.median(times)
           for name, times in seconds.items()}
  first, second = runs
  ratio = statistics.median(
      images[second] / ours / (images[first] / theirs)
      for ours, theirs in zip(seconds[second], seconds[first]))
  return rates, ratio


def kernel_toggles(config):
  """(name, the flags without it, the flags with it) of each choice this
  machine's defaults make: every kernel option, then bfloat16 against
  float32 (both with `config`'s kernels). The compiled activations apply
  in bfloat16 only: in a float32 configuration they are timed in
  bfloat16. Where neither --mixed_precision=auto nor the flags train in
  bfloat16, nothing is timed in bfloat16 (without AVX-512 TensorFlow's own
  kernels compute it, slowly)."""
  from pix2pix_tf.kernels import machines
  from pix2pix_tf.training import precision

  used = machines.kernels_used(config.kernels)
  mode = precision.resolve_mixed_precision(config.run.mixed_precision)
  bfloat16 = "bf16" in (mode, machines.auto_precision())
  toggles = []
  for name in config_lib.KERNEL_OPTIONS:
    if name == "compiled_activations" and not bfloat16:
      continue
    fixed = {**used, "mixed_precision": (
        "bf16" if name == "compiled_activations" else mode)}
    toggles.append((name, {**fixed, name: False}, {**fixed, name: True}))
  if bfloat16:
    toggles.append(("bf16", {**used, "mixed_precision": "none"},
                    {**used, "mixed_precision": "bf16"}))
  return toggles


def kernels_in_turn(config, split, batch_size):
  """Each of `kernel_toggles` timed in turn, off and on: images/s each way
  and x, on over off (the median within a round)."""
  rows = {}
  for name, off, on in kernel_toggles(config):
    fresh_session()
    rates, ratio = pair_in_turn({
        "off": training_runner(config.replace(**off), split, batch_size),
        "on": training_runner(config.replace(**on), split, batch_size)})
    gc.collect()  # The pair's models, before the next pair's.
    # The precision of both sides; of the off side first for bf16's row.
    precisions = dict.fromkeys((off["mixed_precision"], on["mixed_precision"]))
    rows[name] = {"off_images_per_second": rates["off"],
                  "on_images_per_second": rates["on"], "ratio": ratio,
                  "precision": " -> ".join(precisions)}
    print(f"batch {batch_size}: {name} off {rates['off']:.2f} images/s, on "
          f"{rates['on']:.2f} ({rows[name]['precision']}): x{ratio:.2f}, "
          "timed in turn", flush=True)
  return rows


def compare_default(config, split, batch_size, rate):
  """The default row against the plain Keras step, its profile, and the
  matmul peak of its compute dtype."""
  from pix2pix_tf.training import precision

  result = {"images_per_second": rate}
  mode = precision.resolve_mixed_precision(config.run.mixed_precision)
  dtype = {"none": "float32", "bf16": "bfloat16", "fp16": "float16"}[mode]
  peak = matmul_peak_gflops(dtype, FLAGS.matmul_size)
  flops = training_flops(config)["train_step"]
  result.update(compute_dtype=dtype, matmul_peak_gflops=peak,
                share_of_peak=rate * flops / 1e9 / peak)
  print(f"batch {batch_size}: {dtype} matmul peak {peak:.0f} GFLOP/s; the "
        f"default step reaches {100 * result['share_of_peak']:.0f}% of it",
        flush=True)
  if FLAGS.plain:
    result.update(compare_plain(config, split, batch_size))
  unprofiled = profile_refusal(config)
  if FLAGS.profile and unprofiled:
    print(f"batch {batch_size}: profile skipped: {unprofiled}", flush=True)
  elif FLAGS.profile:
    # --repeats rounds of the seven prefixes, and as many whole steps,
    # however long a step: the shortest parts (the optimizer updates) need
    # that many rounds to stand out from the machine's noise.
    found, ops = bench_profile(config, split, batch_size, FLAGS.repeats)
    result["profile_ms"] = {name: 1000 * seconds for name, seconds in
                            {**found.parts(), "step": found.step}.items()}
    print(f"batch {batch_size} profile (ms per step): " + ", ".join(
        f"{name} {ms:.1f}" for name, ms in result["profile_ms"].items()),
          flush=True)
    if ops:
      result["op_ms"] = {kind: 1000 * seconds for kind, seconds in
                         ops.items()}
      print(f"batch {batch_size} ops (ms per step, summed over threads; "
            f"{sum(ops.values()) * 1000:.0f} in all): " + ", ".join(
                f"{kind} {ms:.1f}" for kind, ms in result["op_ms"].items()),
            flush=True)
  return result


def bench_train_command(config, steps):
  """The train command run as a user runs it (a subprocess, at `config`'s
  periods) for `steps` steps: its images/s from the first logged window's
  end to the last's (tracing and start-up before, the final export after,
  are not steps; every periodic action in between is), from the wall times
  TensorBoard recorded, and the command's wall time."""
  import subprocess
  import tensorflow as tf
  from pix2pix_tf import training

  with tempfile.TemporaryDirectory() as folder:
    run_dir = os.path.join(folder, "run")
    training.write_run_config(config, outputs.Folder(folder, "model_dir",
                                                     kind=training.RUN))
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pix2pix_tf.train",
         f"--flagfile={os.path.join(folder, 'flags.txt')}",
         f"--model_dir={run_dir}", f"--max_steps={steps}"],
        check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    logs = training.RunPaths(run_dir).logs("train")
    logged = sorted(
        (event.step, event.wall_time)
        for name in os.listdir(logs)
        for event in tf.compat.v1.train.summary_iterator(
            os.path.join(logs, name))
        if any(v.tag == "images_per_second" for v in event.summary.value))
  if len(logged) < 2:
    raise ValueError(
        f"--train_command_steps={steps} logs fewer than two "
        f"windows at --log_every_steps={config.outputs.log_every_steps}.")
  (first, start_time), (last, end_time) = logged[0], logged[-1]
  images = (last - first) * config.optimisation.batch_size
  return {"steps": steps, "wall_seconds": wall, "timed_steps": [first, last],
          "images_per_second": images / (end_time - start_time)}


# Two training steps at one batch size, in a child process: an allocation
# that fails there cannot take the benchmark (or anything it wrote) along.
ONE_STEP = """
import json, resource, sys
import tensorflow as tf
from pix2pix_tf import config as config_lib, training
from pix2pix_tf.training import losses
config = config_lib.Config.from_json(sys.stdin.read())
strategy = training.make_strategy(config.run.strategy)
built = training.build(config, strategy, 100, 10000)
shape = (config.optimisation.batch_size,) + (config.data.crop_size,) * 2
batch = (tf.random.uniform(shape + (config.data.input_channels,), -1, 1),
         tf.random.uniform(shape + (config.data.output_channels,), -1, 1))
iterator = iter(strategy.experimental_distribute_dataset(
    tf.data.Dataset.from_tensors(batch).repeat()))
for _ in range(2):
  float(built.distributed_step(iterator, 1)[losses.GENERATOR_TOTAL])
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
"""


# How a child that ran out of memory ends: killed (by the kernel's
# out-of-memory killer), or with TensorFlow's or Python's allocation error.
OUT_OF_MEMORY = ("ResourceExhaustedError", "MemoryError", "OOM when allocating")


def step_fits(config, batch_size):
  """Peak host MiB of two training steps at `batch_size`, or None if the
  child ran out of memory; any other failure is raised (ValueError)."""
  import subprocess
  config = config.replace(batch_size=batch_size, steps_per_execution=1)
  child = subprocess.run([sys.executable, "-c", ONE_STEP],
                         input=config.to_json(), capture_output=True,
                         text=True)
  if child.returncode == 0:
    peak = float(child.stdout.split()[-1])
    print(f"largest batch: {batch_size} fits (peak host memory "
          f"{peak / 1024:.1f} GiB)", flush=True)
    return peak
  if child.returncode > 0 and not any(
      sign in child.stderr for sign in OUT_OF_MEMORY):
    last = (child.stderr.strip().splitlines() or ["no message"])[-1]
    raise ValueError(f"Training at batch {batch_size} failed for "
                     f"another reason than memory: {last}")
  print(f"largest batch: {batch_size} is out of memory (exit "
        f"{child.returncode})", flush=True)
  return None


def largest_batch(config, start, limit):
  """The largest batch size that trains (doubling from `start` up to
  `limit`, then bisecting), with the peak host memory of each batch size
  tried; first_failing is None when `limit` fits."""
  tried = {}
  fits, fails = 0, None
  size = start
  while fails is None:
    if size > limit:
      return {"largest": fits, "first_failing": None,
              "peak_host_memory_mb": tried}
    tried[size] = step_fits(config, size)
    if tried[size] is None:
      fails = size
    else:
      fits, size = size, size * 2
  while fails - fits > max(1, fits // 8):  # Within 1/8 of the answer.
    size = (fits + fails) // 2
    tried[size] = step_fits(config, size)
    if tried[size] is None:
      fails = size
    else:
      fits = size
  return {"largest": fits, "first_failing": fails,
          "peak_host_memory_mb": tried}


def largest_batch_line(found):
  """One line for `largest_batch`'s answer."""
  if found["first_failing"] is None:
    return (f"largest batch that trains: every one tried up to "
            f"{found['largest']} (--largest_batch_limit)")
  return (f"largest batch that trains: {found['largest']} (out of memory at "
          f"{found['first_failing']})")


def bench_inference(config, batch_sizes, repeats):
  """SavedModel serving_default: images/s and p50/p95 latency per batch."""
  import keras
  import numpy as np
  import tensorflow as tf
  from pix2pix_tf import serving
  from pix2pix_tf import models

  keras.backend.clear_session()
  generator = models.build_generator(config)
  with temporaries.scratch("benchmark") as folder:
    path = serving.save(generator, config, 0, os.path.join(folder, "export"),
                       config.outputs.inference_mode)
    serving = tf.saved_model.load(path).signatures["serving_default"]
  results = {}
  for batch in batch_sizes:
    images = tf.constant(np.random.uniform(
        -1, 1, (batch, config.data.crop_size, config.data.crop_size,
                config.data.input_channels)).astype(np.float32))
    for _ in range(3):
      serving(images=images)["generated_image"].numpy()
    latencies = []
    for _ in range(max(repeats, 20)):
      start = time.perf_counter()
      serving(images=images)["generated_image"].numpy()
      latencies.append(time.perf_counter() - start)
    p50 = float(np.percentile(latencies, 50))
    results[batch] = {"images_per_second": batch / p50,
                      "p50_ms": 1000 * p50,
                      "p95_ms": 1000 * float(np.percentile(latencies, 95))}
  return results


def quality_check(steps, data_dir, precisions, seeds=1):
  """val L1 of the demo configuration after `steps` steps per precision
  (with this machine's default kernels), and in fp32 with Keras's
  Adam, batch norm, convolutions and activations ("keras_kernels", the
  reference point: the step before any optimisation): a list per
  configuration, one run per seed in range(`seeds`)."""
  import tensorflow as tf
  from pix2pix_tf.data import demo
  from pix2pix_tf import training

  if not os.path.isdir(os.path.join(data_dir, "train")):
    demo.write_dataset(data_dir)
  demo_flags = os.path.join(os.path.dirname(__file__), "..", "configs",
                            "demo.flags")
  with open(demo_flags) as f:
    base = config_lib.Config().with_flags(f.read())
  results = {}
  for name in ["keras_kernels"] + list(precisions):
    results[name] = []
    for seed in range(seeds):
      with tempfile.TemporaryDirectory() as folder:
        config = base.replace(
            data_dir=data_dir,
            model_dir=folder,
            max_steps=steps,
            seed=seed,
            mixed_precision="none" if name == "keras_kernels" else name,
            # Keras's kernels, or this machine's default ones.
            **dict.fromkeys(config_lib.KERNEL_OPTIONS,
                            False if name == "keras_kernels" else None),
            num_samples=0,
            label_palette="",
            eval_every_steps=steps,
            checkpoint_every_steps=steps,
            sample_every_steps=steps,
            log_every_steps=max(1, steps // 10),
            lr_policy="constant")
        result = training.train_and_evaluate(
            config, tf.distribute.OneDeviceStrategy(
                "/gpu:0" if tf.config.list_logical_devices("GPU")
                else "/cpu:0"))
      results[name].append(result["val_l1"])
  return results


def quality_report(steps, runs):
  """The JSON and the printed lines of `quality_check`'s `runs`: each
  configuration's mean val L1 against keras_kernels'."""
  means = {name: statistics.mean(values) for name, values in runs.items()}
  reference = means["keras_kernels"]
  report = {"steps": steps, "val_l1": means, "val_l1_per_seed": runs,
            "relative_to_fp32_keras_kernels": {
                name: mean / reference - 1 for name, mean in means.items()}}
  lines = [
      f"quality: val L1 after {steps} demo steps, {name}: {mean:.4f}"
      + (f" (mean of {', '.join(f'{v:.4f}' for v in runs[name])})"
         if len(runs[name]) > 1 else "")
      + f" {100 * (mean / reference - 1):+.1f}% vs fp32 with Keras's "
      "kernels" for name, mean in means.items()]
  return report, lines


def machine_description():
  import platform
  import tensorflow as tf
  from pix2pix_tf.kernels import machines
  gpus = tf.config.list_physical_devices("GPU")
  names = [tf.config.experimental.get_device_details(g).get("device_name",
                                                           g.name)
           for g in gpus]
  kind, limit = machines.this_machine(), machines.onednn_limit()
  return {"cpu": machines.cpu_model(), "kind": kind,
          "kind_description": machines.KINDS[kind].description,
          "onednn_max_cpu_isa": machines.limit_value(limit),
          "cpu_cores": os.cpu_count(), "gpus": names,
          "platform": platform.platform(), "tensorflow": tf.__version__,
          "date": time.strftime("%Y-%m-%d")}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  from pix2pix_tf import data as data_lib
  if FLAGS.deterministic:  # Every row, before TensorFlow starts.
    from pix2pix_tf import training
    print(training.make_deterministic(), flush=True)

  started = time.perf_counter()
  variants = all_variants() if FLAGS.variants == ["all"] else FLAGS.variants
  unknown = set(variants) - set(VARIANTS)
  if unknown:
    raise app.UsageError(f"Unknown --variants {', '.join(sorted(unknown))}.")
  print("variants: " + ", ".join(variants) + " (--variants=all for every "
        "one)", flush=True)
  base = config_lib.Config.from_flag_values(FLAGS)
  batch_sizes = [int(b) for b in FLAGS.batch_sizes]
  report_output = (outputs.file_output(
      FLAGS.output, "output", [outputs.Input(base.data.data_dir, "data_dir")],
      kind="benchmark")
                   if FLAGS.output else None)
  split = data_lib.open_split(base.data.data_dir, "train")
  if base.outputs.label_palette:  # For the export, after the training parts.
    data_lib.load_palette(base.outputs.label_palette)
  flops = training_flops(base)
  report = {
      "machine": machine_description(),
      "model": {
          "generator": base.model.generator,
          "crop_size": base.data.crop_size,
          "discriminator_layers": base.model.d_layers,
          "flops_per_image": flops
      },
      "input_pipeline": {},
      "training": {},
      "default": {},
      "inference": {}
  }
  print(f"FLOPs per image of a training step ({base.objective.update_order} "
        f"update): {flops['train_step'] / 1e9:.1f} G (generator forward "
        f"{flops['generator_forward'] / 1e9:.1f} G, discriminator forward "
        f"{flops['discriminator_forward'] / 1e9:.2f} G)", flush=True)

  for batch in batch_sizes:
    rate = bench_input_pipeline(base, split, batch, FLAGS.repeats)
    report["input_pipeline"][batch] = rate
    print(f"input pipeline, batch {batch}: {rate:.1f} images/s", flush=True)

  for batch in batch_sizes:
    rows = {}
    for name in variants:
      overrides = variant_overrides(name, rows, FLAGS.bench_spe)
      config = base.replace(batch_size=batch, **overrides)
      rate = bench_training(config, split, batch, FLAGS.steps_per_repeat,
                            FLAGS.warmup_steps)
      step_flops = training_flops(config)["train_step"]
      rows[name] = {
          "images_per_second": rate,
          "flops_per_image": step_flops,
          "gflops_per_second": rate * step_flops / 1e9,
          "peak_host_memory_mb": peak_host_memory_mb(),
          "peak_gpu_memory_mb": peak_gpu_memory_mb(),
          "overrides": overrides,
      }
      baseline = rows.get("baseline", {}).get("images_per_second")
      rows[name]["ratio_to_baseline"] = rate / baseline if baseline else None
      print(f"train batch {batch:>3} {name:<10} {rate:8.2f} images/s  "
            f"{rows[name]['gflops_per_second']:8.1f} GFLOP/s  "
            + (f"x{rows[name]['ratio_to_baseline']:.2f}"
               if baseline else ""), flush=True)
    report["training"][batch] = rows
    if "default" in rows:
      default = base.replace(batch_size=batch)
      report["default"][batch] = compare_default(
          default, split, batch, rows["default"]["images_per_second"])
    if FLAGS.kernels_in_turn:
      report.setdefault("kernels_in_turn", {})[batch] = kernels_in_turn(
          base.replace(batch_size=batch), split, batch)
    write_report(report, report_output)

  if FLAGS.train_command_steps:
    command = bench_train_command(base, FLAGS.train_command_steps)
    default = (report["training"].get(base.optimisation.batch_size) or
               {}).get("default")
    if default:
      command["ratio_to_benchmark"] = (command["images_per_second"]
                                       / default["images_per_second"])
    report["train_command"] = command
    print(f"train command, steps {command['timed_steps'][0]}-"
          f"{command['timed_steps'][1]}: {command['images_per_second']:.2f} "
          "images/s" + (f" = x{command['ratio_to_benchmark']:.2f} the "
                        "benchmark's default row" if default else "")
          + f"; {command['wall_seconds']:.0f} s in all", flush=True)
    write_report(report, report_output)

  if FLAGS.largest_batch:
    report["largest_batch"] = largest_batch(base, max(batch_sizes),
                                            FLAGS.largest_batch_limit)
    print(largest_batch_line(report["largest_batch"]), flush=True)
    write_report(report, report_output)

  report["inference"] = bench_inference(
      base, [int(b) for b in FLAGS.inference_batch_sizes], FLAGS.repeats)
  for batch, row in report["inference"].items():
    print(f"SavedModel batch {batch}: {row['images_per_second']:.1f} "
          f"images/s, p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms",
          flush=True)
  report["peak_host_memory_mb"] = process_peak_host_memory_mb()
  report["peak_host_memory_per_row"] = host_peak_resets()
  write_report(report, report_output)

  if FLAGS.quality_steps:
    # float16 has no fast CPU kernels: it is compared on GPUs only.
    import tensorflow as tf
    reduced = ["bf16", "fp16"] if tf.config.list_physical_devices("GPU") else (
        ["bf16"])
    from pix2pix_tf.training import precision
    default = precision.resolve_mixed_precision(base.run.mixed_precision)
    precisions = ["none"] + [p for p in reduced if p in variants or (
        p == default and "default" in variants)]
    report["quality"], lines = quality_report(
        FLAGS.quality_steps,
        quality_check(FLAGS.quality_steps, FLAGS.quality_data_dir,
                      precisions, FLAGS.quality_seeds))
    print("\n".join(lines), flush=True)

  report["wall_seconds"] = time.perf_counter() - started
  print(format_report(report))
  print(f"benchmark: {report['wall_seconds'] / 60:.1f} min", flush=True)
  write_report(report, report_output)
  if FLAGS.output:
    print(f"Wrote {FLAGS.output}")


def write_report(report, output):
  """Writes the JSON to `output`, (an outputs.Folder, a name) or None;
  again after each part, so that a failure keeps the rest."""
  if output:
    output[0].write_text(output[1],
                         json.dumps(report, indent=2, default=str))


def format_report(report) -> str:
  """The report's training rows (and, if measured, the comparison with
  plain Keras) as Markdown tables."""
  memory = ("peak host MiB while training"
            if report.get("peak_host_memory_per_row") else
            "peak host MiB of the process so far")
  lines = ["", "| batch | configuration | images/s | x baseline | GFLOP/s "
           f"| {memory} |", "|---|---|---|---|---|---|"]
  for batch, rows in report["training"].items():
    for name, row in rows.items():
      ratio = row["ratio_to_baseline"]
      lines.append(f"| {batch} | {name} | {row['images_per_second']:.2f} | "
                   f"{'' if ratio is None else f'{ratio:.2f}'} | "
                   f"{row['gflops_per_second']:.1f} | "
                   f"{row['peak_host_memory_mb']:.0f} |")
  if report.get("default"):
    # Each plain step and pix2pix_tf's step beside it were timed in turn;
    # the ratio is the median of theirs within a round.
    lines += ["", "| batch | dtype | default images/s | plain Keras images/s "
              "| pix2pix_tf beside it | x plain | plain, same kernels "
              "| pix2pix_tf beside it | x plain, same kernels "
              "| % of matmul peak |", "|---" * 10 + "|"]
    for batch, row in report["default"].items():
      cells = [row.get(key) for key in (
          "plain_images_per_second", "images_per_second_beside_plain",
          "ratio_to_plain", "plain_same_kernels_images_per_second",
          "images_per_second_beside_plain_same_kernels",
          "ratio_to_plain_same_kernels")]
      lines.append(
          f"| {batch} | {row['compute_dtype']} | "
          f"{row['images_per_second']:.2f} | " + " | ".join(
              "" if cell is None else f"{cell:.2f}" for cell in cells) +
          f" | {100 * row['share_of_peak']:.0f} |")
    for key in ("profile_ms", "op_ms"):  # The parts; the ops' kinds.
      profiles = {b: r[key] for b, r in report["default"].items()
                  if key in r}
      if profiles:
        names = list(next(iter(profiles.values())))
        lines += ["", "| batch | " + " | ".join(names) + " |",
                  "|---" * (len(names) + 1) + "|"]
        for batch, ms in profiles.items():
          lines.append(f"| {batch} | " + " | ".join(
              f"{ms[n]:.1f} ms" for n in names) + " |")
  if report.get("kernels_in_turn"):
    lines += ["", "| batch | choice | precision | off, images/s | on, images/s "
              "| x on over off, timed in turn |", "|---" * 6 + "|"]
    for batch, rows in report["kernels_in_turn"].items():
      lines += [f"| {batch} | {name} | {row['precision']} | "
                f"{row['off_images_per_second']:.2f} | "
                f"{row['on_images_per_second']:.2f} | x{row['ratio']:.2f} |"
                for name, row in rows.items()]
  best = max(row["images_per_second"] for rows in report["training"].values()
             for row in rows.values())
  pipeline = max(report["input_pipeline"].values())
  lines.append("")
  lines.append(f"input pipeline: {pipeline:.1f} images/s = "
               f"{pipeline / best:.1f}x the best training rate")
  command = report.get("train_command")
  if command:
    lines.append(f"train command: {command['images_per_second']:.2f} "
                 "images/s" + (f" = x{command['ratio_to_benchmark']:.2f} the "
                               "default row" if "ratio_to_benchmark" in
                               command else ""))
  if report.get("largest_batch"):
    lines.append(largest_batch_line(report["largest_batch"]))
  return "\n".join(lines)


if __name__ == "__main__":
  app.run(errors.guarded("benchmark", main))
