"""Each kind of machine's defaults: `--mixed_precision=auto` and the kernel
options left unset resolve from what the hardware offers, through one
table, in every command that trains."""

import builtins
import json

import pytest

from conftest import small_config
from pix2pix_tf import config as config_lib
from pix2pix_tf import kernels, models, training
from pix2pix_tf.kernels import machines

AMX = "fpu sse2 avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8"
AVX512_BF16 = "fpu sse2 avx2 avx512f avx512bw avx512_bf16"  # AMD EPYC Zen 4.
AVX512 = "fpu sse2 avx2 avx512f avx512bw"  # Intel Xeon before Cooper Lake.
AVX2 = "fpu sse2 avx2 fma"


@pytest.mark.parametrize("cpu_flags, max_isa, kind", [
    (AMX, None, "cpu_amx"),
    (AMX, "DEFAULT", "cpu_amx"),
    (AMX, "avx10_1_512_amx", "cpu_amx"),
    # oneDNN capped below AMX computes as the capped machine does.
    (AMX, "AVX512_CORE_BF16", "cpu_avx512_bf16"),
    (AMX, "AVX512_CORE", "cpu"),
    (AMX, "AVX2", "cpu"),
    (AVX512_BF16, None, "cpu_avx512_bf16"),
    (AVX512_BF16, "AVX2", "cpu"),
    (AVX512, None, "cpu"),
    (AVX2, None, "cpu"),
    ("", None, "cpu"),  # Arm, or no /proc/cpuinfo.
])
def test_the_cpu_kind_is_what_onednn_may_use(cpu_flags, max_isa, kind):
  limit = max_isa and ("ONEDNN_MAX_CPU_ISA", max_isa)
  assert machines.cpu_kind(frozenset(cpu_flags.split()), limit) == kind


def fake_cpuinfo(monkeypatch, tmp_path, cpu_flags, max_isa=None):
  """This process reads `cpu_flags` as /proc/cpuinfo's, oneDNN capped at
  `max_isa`, no GPU; machines.this_machine reads them afresh."""
  path = tmp_path / "cpuinfo"
  path.write_text("processor\t: 0\nmodel name\t: Test CPU\n"
                  f"flags\t\t: {cpu_flags}\n\nprocessor\t: 1\n")
  real_open = builtins.open
  monkeypatch.setattr(
      machines, "open", lambda name, *a, **k: real_open(
          path if name == "/proc/cpuinfo" else name, *a, **k), raising=False)
  for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
               "TF_ENABLE_ONEDNN_OPTS"):
    monkeypatch.delenv(name, raising=False)
  if max_isa:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", max_isa)
  machines.this_machine.cache_clear()
  machines.cpu_flags.cache_clear()
  devices = machines.tf.config.list_physical_devices
  monkeypatch.setattr(
      machines.tf.config, "list_physical_devices",
      lambda kind=None: [] if kind == "GPU" else devices(kind))


@pytest.fixture(autouse=True)
def _fresh_machine():
  yield
  machines.this_machine.cache_clear()
  machines.cpu_flags.cache_clear()


@pytest.mark.parametrize("cpu_flags, max_isa, kind, auto", [
    (AMX, None, "cpu_amx", "bf16"),
    (AVX512_BF16, None, "cpu_avx512_bf16", "bf16"),
    (AMX, "AVX2", "cpu", "none"),
    (AVX512, None, "cpu", "none"),
    (AVX2, None, "cpu", "none"),
])
def test_auto_precision_is_the_kinds_row(monkeypatch, tmp_path, cpu_flags,
                                         max_isa, kind, auto):
  fake_cpuinfo(monkeypatch, tmp_path, cpu_flags, max_isa)
  assert machines.this_machine() == kind
  assert machines.cpu_model() == "Test CPU"
  assert machines.KINDS[kind].precision == auto
  assert training.resolve_mixed_precision("auto") == auto
  for given in ("none", "bf16", "fp16"):  # Given: as given.
    assert training.resolve_mixed_precision(given) == given


def test_every_kind_names_known_choices():
  for kind in machines.KINDS.values():
    assert kind.precision in ("none", "bf16")
    assert kind.kernels <= set(config_lib.KERNEL_OPTIONS)
    assert kind.description


def test_unset_kernel_options_take_the_kinds_and_given_ones_win(monkeypatch):
  monkeypatch.setitem(machines.KINDS, "test", machines.Kind(
      "test", "none", frozenset({"fused_updates"})))
  unset = config_lib.Config().kernels
  assert all(getattr(unset, name) is None
             for name in config_lib.KERNEL_OPTIONS)
  assert machines.kernels_used(unset, "test") == {
      "fused_updates": True, "fused_batch_norm": False,
      "matmul_small_convs": False, "compiled_activations": False}
  given = config_lib.Config().replace(fused_updates=False,
                                      fused_batch_norm=True).kernels
  assert machines.kernels_used(given, "test") == {
      "fused_updates": False, "fused_batch_norm": True,
      "matmul_small_convs": False, "compiled_activations": False}


@pytest.mark.parametrize("words, value", [
    ("", None), ("--fused_batch_norm", True), ("--nofused_batch_norm", False),
    ("--fused_batch_norm=false", False), ("--fused_batch_norm=true", True)])
def test_a_kernel_flag_is_unset_true_or_false(words, value):
  config = config_lib.Config().with_flags(words)
  assert config.kernels.fused_batch_norm is value
  # A run records it as given: unset is resolved where the run is built.
  assert config_lib.Config.from_json(config.to_json()).kernels == (
      config.kernels)


def test_the_run_is_built_with_the_kinds_kernels(monkeypatch, tmp_path):
  """Through `kernels.for_training`, which `training.build` calls for
  every command that trains: a kind whose row leaves fused batch norm off
  trains Keras's batch norm unless the flag turns it on."""
  fake_cpuinfo(monkeypatch, tmp_path, AVX2)
  monkeypatch.setitem(machines.KINDS, "cpu", machines.Kind(
      "test", "none", frozenset({"fused_updates"})))

  def layer_kinds(config):
    generator, discriminator, adam = kernels.for_training(
        config, models.build_generator(config),
        models.build_discriminators(config), training.optimizers.Adam)
    found = {type(layer) for model in (generator, discriminator)
             for layer in models.flat_layers(model)}
    return found, adam

  unset = dict.fromkeys(config_lib.KERNEL_OPTIONS, None)
  found, adam = layer_kinds(small_config(tmp_path, tmp_path / "run", **unset))
  assert kernels.FusedBatchNormalization not in found
  assert adam is kernels.fused_adam(training.optimizers.Adam)
  found, adam = layer_kinds(small_config(
      tmp_path, tmp_path / "run", fused_batch_norm=True, fused_updates=False))
  assert kernels.FusedBatchNormalization in found
  assert adam is training.optimizers.Adam


@pytest.mark.parametrize("cpu_flags, max_isa, refused", [
    (AMX, None, False),
    (AVX512_BF16, None, False),
    (AVX512, None, False),  # oneDNN computes bfloat16 on AVX-512, slowly.
    (AMX, "AVX512_CORE", False),
    (AMX, "avx512_core_amx", False),  # An older name, in lower case.
    (AMX, "AVX10_2_512", False),  # A name oneDNN 3.x does not know: no limit.
    (AMX, "AVX2", True),
    (AMX, " AVX2_VNNI_2 ", True),
    (AVX512_BF16, "AVX2", True),
    (AVX2, None, False),  # TensorFlow's own kernels compute it there.
    (AVX2, "AVX2", False),
    (AVX2 + " avx_ne_convert", None, False),
    (AVX2 + " avx_ne_convert", "AVX2_VNNI_2", False),
    (AVX2 + " avx_ne_convert", "AVX2", True),
    ("fp asimd bf16", None, False),  # Arm.
])
def test_bfloat16_is_refused_where_onednn_gets_it_without_convolutions(
    monkeypatch, cpu_flags, max_isa, refused):
  limit = ("ONEDNN_MAX_CPU_ISA", max_isa) if max_isa else None
  found = machines.bfloat16_refusal(frozenset(cpu_flags.split()), limit)
  if refused:
    assert found == (f"ONEDNN_MAX_CPU_ISA={max_isa.strip()} leaves oneDNN "
                     "no bfloat16 convolutions, which TensorFlow hands it "
                     "on this CPU")
  else:
    assert found is None


@pytest.mark.parametrize("cpu_flags", [AMX, AVX512_BF16, AVX512, AVX2])
@pytest.mark.parametrize("max_isa", [None, "SSE41", "AVX2", "AVX2_VNNI_2",
                                     "AVX512_CORE", "AVX512_CORE_BF16",
                                     "AVX512_CORE_AMX", "UNKNOWN"])
def test_auto_never_chooses_a_refused_precision(cpu_flags, max_isa):
  features = frozenset(cpu_flags.split())
  limit = max_isa and ("ONEDNN_MAX_CPU_ISA", max_isa)
  if machines.KINDS[machines.cpu_kind(features, limit)].precision == "bf16":
    assert machines.bfloat16_refusal(features, limit) is None


@pytest.mark.parametrize("environ, kind", [
    ({}, "cpu_amx"),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, "cpu_avx512_bf16"),
    ({"DNNL_MAX_CPU_ISA": "AVX2"}, "cpu"),  # oneDNN's older name.
    # Both set: oneDNN reads ONEDNN_MAX_CPU_ISA.
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16", "DNNL_MAX_CPU_ISA": "AVX2"},
     "cpu_avx512_bf16"),
    ({"ONEDNN_MAX_CPU_ISA": "NOT_AN_ISA"}, "cpu_amx"),
    ({"TF_ENABLE_ONEDNN_OPTS": "0"}, "cpu"),  # TensorFlow's own kernels.
])
def test_the_kind_follows_onednns_environment(monkeypatch, tmp_path,
                                              environ, kind):
  fake_cpuinfo(monkeypatch, tmp_path, AMX)
  for name, value in environ.items():
    monkeypatch.setenv(name, value)
  assert machines.this_machine() == kind
  assert machines.bfloat16_refusal() == (
      "DNNL_MAX_CPU_ISA=AVX2 leaves oneDNN no bfloat16 convolutions, "
      "which TensorFlow hands it on this CPU" if environ == {
          "DNNL_MAX_CPU_ISA": "AVX2"} else None)


def test_every_command_that_builds_a_run_refuses_what_the_cpu_cannot(
    monkeypatch, tmp_path):
  """The refusal is made where the training state is built (train, Keras's
  `fit`, convert, the benchmark), naming the flag and what to use."""
  import pix2pix_tf
  monkeypatch.setattr(machines, "bfloat16_refusal", lambda: "a reason")
  config = small_config(tmp_path, tmp_path / "run", mixed_precision="bf16")
  message = ("--mixed_precision=bf16: a reason. Use --mixed_precision=none "
             "(float32; auto chooses it here).")
  with pytest.raises(config_lib.ConfigError) as raised:
    training.check_run(config, training.make_strategy("one_device"))
  assert str(raised.value) == message
  with pytest.raises(config_lib.ConfigError, match="a reason"):
    pix2pix_tf.Pix2Pix(config)
  with pytest.raises(config_lib.ConfigError, match="a reason"):
    training.create_state(config, 10, training.make_strategy("one_device"))
  monkeypatch.setattr(machines, "auto_precision", lambda: "none")
  for allowed in ("auto", "none"):  # Not refused: float32.
    training.precision.check_precision(allowed)


@pytest.mark.parametrize("value", [None, True, False])
def test_a_runs_flags_txt_reads_back_as_its_config(value):
  """flags.txt (what `--flagfile=RUN/flags.txt` resumes from) holds every
  option; an unset kernel option as a comment, read back as unset."""
  from pix2pix_tf.training import run as run_lib
  config = config_lib.Config().replace(
      **dict.fromkeys(config_lib.KERNEL_OPTIONS, value), crop_size=128,
      generator="unet_128")
  text = run_lib.flagfile_text(config)
  assert config_lib.Config().with_flags(text) == config
  assert len(text.splitlines()) == len(config.flat())


@pytest.mark.slow
def test_train_names_the_flag_where_the_cpu_has_no_bfloat16(tmp_path):
  """With oneDNN held to AVX2 on a CPU with AVX-512, --mixed_precision=bf16
  would fail in the first convolution with oneDNN's message: it is refused
  before anything is written, naming the flag; auto trains in float32.
  (Every CI machine has AVX-512; elsewhere the test is skipped.)"""
  if "avx512f" not in machines.cpu_flags():
    pytest.skip("needs a CPU with AVX-512")
  import subprocess
  import sys
  from conftest import ENV
  from pix2pix_tf.data import demo
  data_dir = demo.write_dataset(str(tmp_path / "data"), 2, 1, 32)
  run = tmp_path / "run"

  def train(*flags):
    return subprocess.run(
        [sys.executable, "-m", "pix2pix_tf.train", f"--data_dir={data_dir}",
         f"--model_dir={run}", "--load_size=32", "--crop_size=32",
         "--generator=unet", "--unet_depth=5", "--ngf=8", "--ndf=8",
         "--batch_size=1", "--max_steps=2", "--num_samples=1", *flags],
        capture_output=True, text=True, timeout=600,
        env={**ENV, "ONEDNN_MAX_CPU_ISA": "AVX2"})

  refused = train("--mixed_precision=bf16")
  assert refused.returncode != 0
  assert ("--mixed_precision=bf16: ONEDNN_MAX_CPU_ISA=AVX2 leaves oneDNN no "
          "bfloat16 convolutions, which TensorFlow hands it on this "
          "CPU") in refused.stderr, refused.stderr
  assert "Use --mixed_precision=none" in refused.stderr
  assert "Traceback" not in refused.stderr
  assert not run.exists()
  auto = train()
  assert auto.returncode == 0, auto.stderr
  assert "float32, kernel options on: " in auto.stdout
  assert (f"(this machine: cpu, {machines.KINDS['cpu'].description})"
          in auto.stdout)


def test_onednns_limit_is_read_from_either_name(monkeypatch):
  for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
    monkeypatch.delenv(name, raising=False)
  assert machines.onednn_limit() is None
  monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
  assert machines.onednn_limit() == ("DNNL_MAX_CPU_ISA", "AVX2")
  monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
  assert machines.onednn_limit() == ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")


def test_hparams_record_what_the_run_trains_with(monkeypatch, tmp_path):
  """TensorBoard's hparams hold auto and unset kernel options as this
  machine resolves them; config.json keeps them as given."""
  from pix2pix_tf.training import actions
  monkeypatch.setitem(machines.KINDS, "test", machines.Kind(
      "test", "bf16", frozenset({"fused_batch_norm", "fused_updates"})))
  monkeypatch.setattr(machines, "this_machine", lambda: "test")
  config = config_lib.Config().replace(fused_updates=False,
                                       matmul_small_convs=True)
  hparams = actions.hparams_of(config)
  assert {name: hparams[name] for name in config_lib.KERNEL_OPTIONS} == {
      "fused_updates": False, "fused_batch_norm": True,
      "matmul_small_convs": True, "compiled_activations": False}
  assert hparams["mixed_precision"] == "bf16"
  assert hparams["crop_size"] == 256
  assert all(isinstance(value, (bool, int, float, str))
             for value in hparams.values())
  recorded = json.loads(config.to_json())
  assert recorded["mixed_precision"] == "auto"
  assert recorded["fused_batch_norm"] is None


def test_a_limit_is_a_variable_and_its_value():
  assert machines.limit_value(None) is None
  assert machines.limit_value(("DNNL_MAX_CPU_ISA", "AVX2")) == "AVX2"
  for bare in ("AVX2", "V2"):  # Not an onednn_limit(): refused.
    with pytest.raises(TypeError):
      machines.limit_value(bare)
