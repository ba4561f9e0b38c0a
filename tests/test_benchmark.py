"""tools/benchmark.py: FLOPs counted from the layers, and a tiny full run."""

import json
import mmap
import os
import subprocess
import sys
import types

import keras
import numpy as np
import pytest

from conftest import ENV, ROOT, load_tool, small_config
from pix2pix_tf import config as config_lib
from pix2pix_tf.data import demo

TOOL = os.path.join(ROOT, "tools", "benchmark.py")


@pytest.fixture(scope="module")
def benchmark():
  return load_tool("benchmark")


def test_conv_flops_are_counted_from_the_layers(benchmark):
  inputs = keras.Input((None, None, 2))
  x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8x8 out
  x = keras.layers.Conv2DTranspose(5, 4, strides=2, padding="same")(x)
  model = keras.Model(inputs, x)
  conv = 2 * 3 * 3 * 2 * 4 * 8 * 8
  transposed = 2 * 4 * 4 * 4 * 5 * 8 * 8  # Over the 8x8 input.
  assert benchmark.conv_flops(model, [(8, 8, 2)]) == conv + transposed


@pytest.mark.slow
def test_paper_model_costs_about_90_gflop_per_image(benchmark):
  flops = benchmark.training_flops(config_lib.Config())
  assert 11e9 < flops["generator_forward"] < 13e9
  assert 80e9 < flops["train_step"] < 95e9
  # The alternating update's G step runs D once more on the generated pair.
  simultaneous = benchmark.training_flops(
      config_lib.Config().replace(update_order="simultaneous"))
  assert (flops["train_step"] - simultaneous["train_step"] ==
          flops["discriminator_forward"])
  assert 1.05 < flops["train_step"] / simultaneous["train_step"] < 1.10


def test_combined_takes_what_helped(benchmark):
  rows = {"baseline": {"ratio_to_baseline": 1.0},
          "bf16": {"ratio_to_baseline": 1.5},
          "fp16": {"ratio_to_baseline": 0.1},
          "xla": {"ratio_to_baseline": 0.8},
          "spe": {"ratio_to_baseline": 1.1},
          "one_device": {"ratio_to_baseline": 0.99}}
  assert benchmark.combined_overrides(rows) == {
      "mixed_precision": "bf16", "steps_per_execution": None}
  rows["one_device"]["ratio_to_baseline"] = 1.02
  assert benchmark.combined_overrides(rows)["strategy"] == "one_device"
  # The compiled activations run in bf16: they count where they beat bf16.
  rows["compiled_activations"] = {"ratio_to_baseline": 1.4}
  assert "compiled_activations" not in benchmark.combined_overrides(rows)
  rows["compiled_activations"]["ratio_to_baseline"] = 1.6
  assert benchmark.combined_overrides(rows)["compiled_activations"] is True
  rows["bf16"]["ratio_to_baseline"] = 0.9
  assert "compiled_activations" not in benchmark.combined_overrides(rows)


def test_all_variants_skip_precisions_without_fast_kernels(
    benchmark, monkeypatch):
  from pix2pix_tf.kernels import machines
  monkeypatch.setattr(machines, "auto_precision", lambda: "none")
  variants = benchmark.all_variants()
  assert "bf16" not in variants and "default" in variants
  assert "compiled_activations" not in variants
  assert "fused" in variants and "baseline" in variants
  # No GPU here: float16 is emulated and not timed by default.
  assert "fp16" not in variants
  monkeypatch.setattr(machines, "auto_precision", lambda: "bf16")
  assert {"bf16", "compiled_activations"} <= set(benchmark.all_variants())


def test_slow_steps_get_fewer_timed_calls(benchmark):
  def fitted(call_seconds):  # 30 s, up to 4 calls and 5 repeats.
    return benchmark.fitted_calls(call_seconds, 4, 30.0, 5)

  assert fitted(0.1) == (4, 5)  # Fast: every call.
  assert fitted(2.0) == (3, 5)  # 5 x 3 x 2 s = 30 s.
  assert fitted(45.0) == (1, 3)  # At least 3 repeats of one call ...
  assert benchmark.fitted_calls(45.0, 4, 30.0, 2) == (1, 2)  # ... or fewer.


# The variants the end-to-end run times: all but bf16, fp16, xla (slow to
# trace and run on a small CPU) and compiled_activations (in bf16).
def test_each_variant_changes_its_own_flags_from_the_baseline(benchmark):
  """What each row trains: the flags as given for "default", else the
  baseline (every option off, float32, one step per call, the paper's
  update) with the variant's own change on top."""
  baseline = benchmark.variant_overrides("baseline", {}, 2)
  assert baseline["update_order"] == "alternating"
  assert baseline["mixed_precision"] == "none"
  assert baseline["steps_per_execution"] == 1
  assert baseline["jit_compile"] is False
  assert all(baseline[name] is False for name in config_lib.KERNEL_OPTIONS)
  assert benchmark.variant_overrides("default", {}, 2) == {}
  changes = [
      ("simultaneous", {"update_order": "simultaneous"}),
      ("fused", {"fused_updates": True}),
      ("fused_bn", {"fused_batch_norm": True}),
      ("matmul_convs", {"matmul_small_convs": True}),
      ("compiled_activations", {"mixed_precision": "bf16",
                                "compiled_activations": True}),
      ("one_device", {"strategy": "one_device"}),
      ("bf16", {"mixed_precision": "bf16"}),
      ("fp16", {"mixed_precision": "fp16"}),
      ("xla", {"jit_compile": True}),
      ("spe", {"steps_per_execution": 2}),  # --bench_spe
      ("combined", {})]  # Nothing helped yet.
  # Every variant the tool has is here.
  assert {"default", "baseline"} | {name for name, _ in changes} == set(
      benchmark.VARIANTS)
  for name, changed in changes:
    assert benchmark.variant_overrides(name, {}, 2) == {
        **baseline, **changed}, name
  # Combined takes what helped, --bench_spe included.
  rows = {"fused": {"ratio_to_baseline": 1.2},
          "spe": {"ratio_to_baseline": 1.1}}
  assert benchmark.variant_overrides("combined", rows, 3) == {
      **baseline, "fused_updates": True, "steps_per_execution": 3}


# The rows whose paths through the tool differ: the flags as given (and its
# comparisons), the baseline (the ratios), another update (its FLOPs), a
# strategy, several steps per call, and the combination. The kernel
# variants differ from the baseline by their flags alone (above).
VARIANT_NAMES = ("default", "baseline", "simultaneous", "one_device", "spe",
                 "combined")


@pytest.mark.slow
def test_benchmark_runs_and_writes_json(tmp_path):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 8, 2, 32)
  output = tmp_path / "bench.json"
  result = subprocess.run(
      [sys.executable, TOOL, f"--data_dir={data_dir}", "--crop_size=32",
       "--load_size=36", "--generator=unet", "--unet_depth=5", "--ngf=8",
       "--ndf=8", "--batch_sizes=2", "--inference_batch_sizes=1",
       f"--variants={','.join(VARIANT_NAMES)}",
       "--bench_spe=2", "--repeats=3", "--steps_per_repeat=2",
       "--warmup_steps=1", "--matmul_size=128", "--batch_size=2",
       "--train_command_steps=6", "--log_every_steps=2",
       "--sample_every_steps=3", "--checkpoint_every_steps=3",
       "--eval_every_steps=100", f"--output={output}"],
      capture_output=True, text=True, env=ENV, timeout=600)
  assert result.returncode == 0, result.stderr
  report = json.loads(output.read_text())
  rows = report["training"]["2"]
  assert set(rows) == set(VARIANT_NAMES)
  assert rows["baseline"]["ratio_to_baseline"] == 1.0
  for row in rows.values():
    assert row["images_per_second"] > 0 and row["peak_host_memory_mb"] > 0
  assert rows["spe"]["overrides"]["steps_per_execution"] == 2
  assert rows["baseline"]["overrides"]["update_order"] == "alternating"
  assert rows["simultaneous"]["overrides"]["update_order"] == "simultaneous"
  for kernels in config_lib.KERNEL_OPTIONS:
    assert rows["baseline"]["overrides"][kernels] is False
  assert rows["one_device"]["overrides"]["strategy"] == "one_device"
  assert rows["default"]["overrides"] == {}
  default = report["default"]["2"]
  # Against the tutorial's step and, since the default fuses its updates
  # and batch norm, like for like the plain step with the same kernels:
  # each timed in turn with pix2pix_tf's step (the ratio's arithmetic is
  # tested on a scripted clock above).
  for suffix in ("", "_same_kernels"):
    beside = (default[f"images_per_second_beside_plain{suffix}"] /
              default[f"plain{suffix}_images_per_second"])
    assert 0.5 * beside < default[f"ratio_to_plain{suffix}"] < 2 * beside
  assert default["profile_ms"]["step"] == pytest.approx(
      sum(v for k, v in default["profile_ms"].items() if k != "step"))
  assert tuple(default["op_ms"]) == load_tool("step_profile").OP_KINDS
  assert default["op_ms"]["convolution_forward"] > 0
  assert 0 < default["share_of_peak"] and default["matmul_peak_gflops"] > 0
  # The whole command, timed from the end of its first logged window (step
  # 2) to its last (step 6), a sample and a checkpoint in between.
  command = report["train_command"]
  assert command["timed_steps"] == [2, 6]
  assert command["ratio_to_benchmark"] == pytest.approx(
      command["images_per_second"] / rows["default"]["images_per_second"])
  assert (rows["baseline"]["flops_per_image"] >
          rows["simultaneous"]["flops_per_image"])
  assert report["input_pipeline"]["2"] > 0
  assert report["inference"]["1"]["p95_ms"] >= report["inference"]["1"][
      "p50_ms"] > 0
  assert "x baseline" in result.stdout and "input pipeline:" in result.stdout
  assert "train command:" in result.stdout and "x plain" in result.stdout


# None of the kernel options, all of them, and each alone.
@pytest.mark.parametrize("kernels", [
    tuple(on == i for on in range(len(config_lib.KERNEL_OPTIONS)))
    for i in range(-1, len(config_lib.KERNEL_OPTIONS))] + [
        (True,) * len(config_lib.KERNEL_OPTIONS)])
def test_the_default_meets_the_plain_step_with_its_own_kernels(
    benchmark, monkeypatch, kernels, tmp_path):
  """The tutorial's plain step uses Keras's Adam, batch norm,
  convolutions and activations; when the default uses any other kernel, a
  second plain step with the same kernels gives the like for like ratio
  (what the strategy, metrics and loop cost). On a scripted clock whose speed
  changes from one timed repeat to the next: each pair is timed in turn,
  the order reversed every other round, the same steps on both sides
  (pix2pix_tf's calls take two steps here), and the ratio is the median
  over the rounds of the two rates within a round (the ratio of the two
  medians would be 2/3 of it)."""
  clock, timed, calls = [0.0], [], []

  def runner(name, seconds, images, steps, factors):
    count = [0]

    def run(n):
      calls.append((name, n))
      count[0] += 1  # The first two: warm-up and sizing, at speed 1.
      clock[0] += n * seconds * ([1, 1] + factors)[count[0] - 1]

    return run, images, steps

  def plain(config, split, batch_size, fused_updates=False):
    used = tuple(fused_updates if name == "fused_updates" else
                 getattr(config.kernels, name)
                 for name in config_lib.KERNEL_OPTIONS)
    timed.append(used)
    return runner("plain", 2.0 if any(used) else 4.0, 2, 1,
                  [1, 2, 3, 1, 2])

  monkeypatch.setattr(benchmark, "plain_runner", plain)
  monkeypatch.setattr(benchmark, "training_runner", lambda *_: runner(
      "ours", 3.0, 4, 2, [3, 1, 2, 3, 1]))
  monkeypatch.setattr(benchmark, "time", types.SimpleNamespace(
      perf_counter=lambda: clock[0]))
  monkeypatch.setattr(benchmark, "FLAGS", types.SimpleNamespace(
      steps_per_repeat=4, warmup_steps=2, seconds_per_row=1e6, repeats=5))
  config = small_config(tmp_path, tmp_path, **dict(zip(
      config_lib.KERNEL_OPTIONS, kernels)))
  result = benchmark.compare_plain(config, None, 2)
  assert timed == [(False,) * len(kernels)] + ([kernels] if any(kernels)
                                               else [])
  # Warm-up (3 steps) and sizing (1 call), then five rounds of 4 steps.
  plain_first, ours_first = [("plain", 4), ("ours", 2)], [
      ("ours", 2), ("plain", 4)]
  pair = ([("plain", 3), ("plain", 1), ("ours", 1), ("ours", 1)] +
          plain_first + ours_first + plain_first + ours_first + plain_first)
  assert calls == pair * len(timed)
  # At speed 1: 4 images in 3 s against 2 in 4 s (Keras's kernels) or in
  # 2 s; the rounds' speeds make the median ratio 3/2 of that.
  assert result["ratio_to_plain"] == pytest.approx(8 / 3 * 1.5)
  assert result["plain_images_per_second"] == pytest.approx(8 / 32)
  assert result["images_per_second_beside_plain"] == pytest.approx(8 / 12)
  if any(kernels):
    assert result["ratio_to_plain_same_kernels"] == pytest.approx(
        4 / 3 * 1.5)
    assert result["plain_same_kernels_images_per_second"] == (
        pytest.approx(8 / 16))
  else:
    assert "ratio_to_plain_same_kernels" not in result


@pytest.mark.parametrize("precision, auto", [
    ("none", "bf16"), ("bf16", "bf16"), ("none", "none")])
def test_each_default_is_timed_in_turn_with_the_step_without_it(
    benchmark, monkeypatch, tmp_path, precision, auto):
  """--kernels_in_turn: every kernel option, then bfloat16 against float32,
  timed in turn off and on with the rest of the step as the defaults make
  it here (a kind whose row turns on two kernels), the compiled activations
  in bfloat16 (the only precision they train); x is on over off. Where
  auto is float32, nothing in bfloat16 (AVX2 has no bfloat16
  convolutions)."""
  from pix2pix_tf.kernels import machines
  monkeypatch.setitem(machines.KINDS, "test", machines.Kind(
      "test", auto, frozenset({"fused_updates", "matmul_small_convs"})))
  monkeypatch.setattr(machines, "this_machine", lambda: "test")
  clock, built = [0.0], []

  def runner(config, split, batch_size):
    used = machines.kernels_used(config.kernels, "none-set")
    built.append((config.run.mixed_precision, used))
    seconds = 1.0 if len(built) % 2 == 0 else 2.0  # "on" twice as fast.

    def run(n):
      clock[0] += n * seconds

    return run, batch_size, 1

  monkeypatch.setitem(machines.KINDS, "none-set", machines.Kind(
      "none set", "none", frozenset()))
  monkeypatch.setattr(benchmark, "training_runner", runner)
  monkeypatch.setattr(benchmark, "time", types.SimpleNamespace(
      perf_counter=lambda: clock[0]))
  monkeypatch.setattr(benchmark, "FLAGS", types.SimpleNamespace(
      steps_per_repeat=2, warmup_steps=1, seconds_per_row=1e6, repeats=3))
  config = small_config(tmp_path, tmp_path, mixed_precision=precision,
                        **dict.fromkeys(config_lib.KERNEL_OPTIONS, None))
  rows = benchmark.kernels_in_turn(config, None, 2)
  defaults = {"fused_updates": True, "fused_batch_norm": False,
              "matmul_small_convs": True, "compiled_activations": False}
  names = list(config_lib.KERNEL_OPTIONS) + ["bf16"]
  if auto == "none":
    names = names[:-1]
    names.remove("compiled_activations")
  assert list(rows) == names and len(built) == 2 * len(names)
  for i, name in enumerate(names):
    (off_precision, off), (on_precision, on) = built[2 * i:2 * i + 2]
    if name == "bf16":
      assert (off_precision, on_precision) == ("none", "bf16")
      assert off == on == defaults
      assert rows[name]["precision"] == "none -> bf16"
      continue
    expected = "bf16" if name == "compiled_activations" else precision
    assert off_precision == on_precision == expected
    assert rows[name]["precision"] == expected
    assert off == {**defaults, name: False} and on == {**defaults, name: True}
    assert rows[name]["ratio"] == pytest.approx(2.0)
    assert rows[name]["on_images_per_second"] == pytest.approx(2.0)
    assert rows[name]["off_images_per_second"] == pytest.approx(1.0)


def test_largest_batch_doubles_then_bisects(benchmark, monkeypatch):
  """Against a machine where batches up to 37 fit: the answer is within an
  eighth of 37, and a batch that fails is named."""
  tried = []

  def fits(config, batch_size):
    tried.append(batch_size)
    return 100.0 * batch_size if batch_size <= 37 else None

  monkeypatch.setattr(benchmark, "step_fits", fits)
  found = benchmark.largest_batch(None, 4, 1024)
  assert tried[:5] == [4, 8, 16, 32, 64]
  assert 37 - 37 // 8 <= found["largest"] <= 37 < found["first_failing"]
  assert found["first_failing"] - found["largest"] <= found["largest"] // 8
  assert found["peak_host_memory_mb"][32] == 3200.0
  assert found["peak_host_memory_mb"][64] is None
  assert "37" not in benchmark.largest_batch_line(found)
  # A machine where everything up to the limit fits: the search stops there.
  tried.clear()
  found = benchmark.largest_batch(None, 4, 20)
  assert tried == [4, 8, 16] and found["largest"] == 16
  assert found["first_failing"] is None
  assert "up to 16" in benchmark.largest_batch_line(found)


@pytest.mark.slow
def test_a_step_that_fits_reports_its_memory(benchmark, tmp_path):
  """The child process really trains: two steps of a tiny configuration
  report a peak memory; one that fails for another reason than memory (a
  perceptual loss whose weights file is missing) fails in the child, and is
  reported as that failure, not as the batch being too large."""
  config = small_config(tmp_path, tmp_path / "run")
  assert benchmark.step_fits(config, 2) > 100  # MB: TensorFlow itself.
  with pytest.raises(ValueError, match="another reason than memory"):
    benchmark.step_fits(
        config.replace(lambda_vgg=1.0, vgg_weights=str(tmp_path / "none.h5")),
        2)


def test_the_profile_refuses_steps_it_would_not_time_as_they_run(
    benchmark, tmp_path):
  config = small_config(tmp_path, tmp_path / "run")
  assert benchmark.profile_refusal(config) is None
  for overrides, reason in ((dict(update_order="simultaneous"), "alternating"),
                            (dict(jit_compile=True), "XLA"),
                            (dict(mixed_precision="fp16"), "scale the loss")):
    assert reason in benchmark.profile_refusal(
        config.replace(**overrides))


def test_the_quality_check_compares_means_over_seeds(
    benchmark, monkeypatch, tmp_path):
  """Each configuration trains once per seed (its own seed and kernels),
  and the report compares the means: one run's val L1 moves by a few
  percent with the seed alone."""
  from pix2pix_tf import training
  trained = []

  def train(config, strategy):
    kernels = tuple(getattr(config.kernels, name)
                    for name in config_lib.KERNEL_OPTIONS)
    trained.append((config.run.mixed_precision, config.optimisation.seed) +
                   kernels)
    value = {"none": 0.25, "bf16": 0.26}[config.run.mixed_precision]
    if config.kernels.fused_updates is False:
      value = 0.24  # Keras's kernels.
    return {"val_l1": value + 0.01 * config.optimisation.seed}

  monkeypatch.setattr(training, "train_and_evaluate", train)
  data_dir = demo.write_dataset(str(tmp_path / "data"), 2, 1, 32)
  runs = benchmark.quality_check(5, data_dir, ["none", "bf16"], seeds=3)
  every = len(config_lib.KERNEL_OPTIONS)
  # Keras's kernels, then this machine's default ones (unset).
  assert trained == [("none", s) + (False,) * every for s in range(3)] + [
      (p, s) + (None,) * every for p in ("none", "bf16") for s in range(3)]
  report, lines = benchmark.quality_report(5, runs)
  assert report["val_l1_per_seed"]["bf16"] == pytest.approx(
      [0.26, 0.27, 0.28])
  assert report["val_l1"] == pytest.approx(
      {"keras_kernels": 0.25, "none": 0.26, "bf16": 0.27})
  assert report["relative_to_fp32_keras_kernels"]["bf16"] == pytest.approx(
      0.27 / 0.25 - 1)
  assert "bf16: 0.2700 (mean of 0.2600, 0.2700, 0.2800) +8.0%" in lines[2]


def test_each_row_reads_its_own_host_memory_peak(benchmark):
  """A row's peak host memory starts from what the process holds when the
  row begins, not from the largest earlier row's (reset_host_peak); the
  run's peak (process_peak_host_memory_mb, which keeps each peak before
  its reset) keeps the largest."""
  assert benchmark.reset_host_peak()  # Linux, as on every machine here.
  # 300 MiB mapped and written, then unmapped: mapped directly, not through
  # malloc (numpy's arrays), which may keep freed memory in the process.
  big = mmap.mmap(-1, 300 * 2**20, flags=mmap.MAP_PRIVATE)
  pages = np.frombuffer(big, np.uint8)
  pages[::mmap.PAGESIZE] = 1
  during = benchmark.peak_host_memory_mb()
  del pages
  big.close()
  assert benchmark.peak_host_memory_mb() == pytest.approx(during, abs=1)
  assert benchmark.reset_host_peak()
  assert benchmark.peak_host_memory_mb() < during - 250
  assert benchmark.process_peak_host_memory_mb() >= during - 1


def test_a_rows_peak_starts_after_its_models_are_built(benchmark,
                                                       monkeypatch):
  """bench_training resets the host memory peak after building the row's
  step and before timing it."""
  calls = []
  monkeypatch.setattr(benchmark, "fresh_session", lambda: None)
  monkeypatch.setattr(benchmark, "training_runner", lambda *_: (
      calls.append("build"), (None, 1, 1))[1])
  monkeypatch.setattr(benchmark, "reset_host_peak",
                      lambda: calls.append("reset"))
  monkeypatch.setattr(benchmark, "timed_rate",
                      lambda *_: calls.append("timed") or 1.0)
  assert benchmark.bench_training(None, None, 1, 4, 2) == 1.0
  assert calls == ["build", "reset", "timed"]


def test_the_memory_column_says_whose_peak_it_is(benchmark):
  """Each row's own peak where the peak could be reset between rows, else
  the process's peak so far (which includes the rows before)."""
  row = {"images_per_second": 1.0, "ratio_to_baseline": 1.0,
         "gflops_per_second": 2.0, "peak_host_memory_mb": 3.0}
  report = {"training": {"1": {"default": row}},
            "input_pipeline": {"1": 100.0}}
  assert "| peak host MiB while training |" in benchmark.format_report(
      {**report, "peak_host_memory_per_row": True})
  assert "| peak host MiB of the process so far |" in (
      benchmark.format_report({**report, "peak_host_memory_per_row": False}))


def test_the_machine_is_described_with_onednns_limit_under_either_name(
    monkeypatch):
  from pix2pix_tf.kernels import machines
  monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
  monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
  monkeypatch.setattr(machines, "this_machine", lambda: "cpu")
  described = load_tool("benchmark").machine_description()
  assert described["onednn_max_cpu_isa"] == "AVX2"
  assert described["kind"] == "cpu"
  assert described["kind_description"] == machines.KINDS["cpu"].description
