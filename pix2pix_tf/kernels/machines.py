"""Which precision and kernels train fastest on which kind of machine.

`--mixed_precision=auto` and every kernel option left unset take this
machine's row of `KINDS`. The kind is read from what the hardware offers
(a GPU's compute capability; a CPU's AMX and AVX-512 BF16 units, as
/proc/cpuinfo lists them and as far as ONEDNN_MAX_CPU_ISA, or its older
name DNNL_MAX_CPU_ISA, lets oneDNN use them). The rows hold what
`tools/benchmark.py --kernels_in_turn` measured where a kind was timed
kernel by kernel; docs/performance.md has each kind's tables, machine and
command, and says which rows were not timed kernel by kernel (those keep
every kernel on). An option given explicitly wins over the row.
"""

import dataclasses
import functools
import math
import os
from typing import Dict, FrozenSet, Mapping, Optional, Tuple

import tensorflow as tf

from pix2pix_tf import config as config_lib


@dataclasses.dataclass(frozen=True)
class Kind:
  """A kind of machine: what `auto` and unset kernel options mean on it."""

  description: str
  precision: str  # --mixed_precision=auto: none (float32) or bf16.
  kernels: FrozenSet[str]  # The kernel options on by default.


ALL_KERNELS = frozenset(config_lib.KERNEL_OPTIONS)

KINDS: Mapping[str, Kind] = {
    # Not measured: bfloat16 where the GPU computes it natively; the patch
    # products and compiled activations do not apply on a GPU, batch norm
    # and Adam are TensorFlow's GPU kernels.
    "gpu_bf16": Kind("GPUs of compute capability 8.0 or newer", "bf16",
                     ALL_KERNELS),
    "gpu": Kind("older GPUs", "none", ALL_KERNELS),
    # Each kernel and bfloat16 timed in turn (docs/benchmark_amx_kernels.json).
    "cpu_amx": Kind("CPUs with AMX (Intel Xeon, Sapphire Rapids and later)",
                    "bf16", ALL_KERNELS),
    # Each kernel and bfloat16 timed in turn, bfloat16's quality checked
    # (docs/benchmark_epyc_kernels.json, docs/benchmark_epyc_quality.json).
    "cpu_avx512_bf16": Kind(
        "CPUs with AVX-512 BF16 and no AMX (AMD EPYC Zen 4 and later)",
        "bf16", ALL_KERNELS),
    # Each kernel timed in turn on a Xeon with oneDNN held to AVX2
    # (docs/benchmark_avx2_kernels.json); the compiled activations apply in
    # bfloat16 only.
    "cpu": Kind("other CPUs (AVX2, AVX-512 without BF16, Arm)", "none",
                ALL_KERNELS),
}

# oneDNN's instruction sets in the order ONEDNN_MAX_CPU_ISA limits them
# (its older names as aliases). Unset, DEFAULT or a name oneDNN does not
# know: no limit, as in oneDNN.
_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
         "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX10_1_512",
         "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16")
_ALIASES = {"AVX512_CORE_FP16": "AVX10_1_512",
            "AVX512_CORE_AMX": "AVX10_1_512_AMX",
            "AVX512_CORE_AMX_FP16": "AVX10_1_512_AMX_FP16"}


def _allows(max_isa: Optional[str], isa: str) -> bool:
  """Whether oneDNN limited to `max_isa` may use `isa`."""
  name = (max_isa or "").strip().upper()
  name = _ALIASES.get(name, name)
  limit = _ISAS.index(name) if name in _ISAS else math.inf
  return _ISAS.index(isa) <= limit


def onednn_limit() -> Optional[Tuple[str, str]]:
  """(the variable, its value) of ONEDNN_MAX_CPU_ISA, or of its older name
  DNNL_MAX_CPU_ISA where only that is set; None where neither is."""
  for variable in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
    if os.environ.get(variable):
      return variable, os.environ[variable]
  return None


def limit_value(limit: Optional[Tuple[str, str]]) -> Optional[str]:
  """The instruction set an `onednn_limit()` names (None: no limit)."""
  if limit is None:
    return None
  if not (isinstance(limit, tuple) and len(limit) == 2):
    # A bare name would read as no limit, silently.
    raise TypeError(f"{limit!r} is not (variable, value).")
  return limit[1]


def onednn_on() -> bool:
  """Whether TensorFlow runs oneDNN's kernels on the CPU (unless
  TF_ENABLE_ONEDNN_OPTS=0; without them, none of the CPU's bfloat16 units
  are used)."""
  return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in (
      "0", "false")


def cpu_kind(features: FrozenSet[str],
             limit: Optional[Tuple[str, str]] = None) -> str:
  """The kind of a CPU with these /proc/cpuinfo flags, oneDNN limited as
  `onednn_limit()` gives it (None: unlimited)."""
  max_isa = limit_value(limit)
  if "amx_bf16" in features and _allows(max_isa, "AVX10_1_512_AMX"):
    return "cpu_amx"
  if "avx512_bf16" in features and _allows(max_isa, "AVX512_CORE_BF16"):
    return "cpu_avx512_bf16"
  return "cpu"


def bfloat16_refusal(features: Optional[FrozenSet[str]] = None,
                     limit: Optional[Tuple[str, str]] = None
                     ) -> Optional[str]:
  """Why bfloat16 cannot train on this CPU, or None. TensorFlow hands
  bfloat16 convolutions to oneDNN on CPUs with AVX-512 or AVX-NE-CONVERT
  (elsewhere its own kernels compute them, slowly); held by
  ONEDNN_MAX_CPU_ISA below AVX512_CORE (or AVX2_VNNI_2), oneDNN has none
  and the first convolution fails. `features`: /proc/cpuinfo's flags,
  `limit` oneDNN's as `onednn_limit()` gives it (default: this machine's;
  with a GPU, None)."""
  if features is None:
    if this_machine().startswith("gpu") or not onednn_on():
      return None  # cuDNN's kernels, or TensorFlow's own.
    features, limit = cpu_flags(), onednn_limit()
  max_isa = limit_value(limit)
  avx512 = "avx512f" in features
  ne_convert = "avx_ne_convert" in features
  if not (avx512 or ne_convert) or (avx512 and _allows(
      max_isa, "AVX512_CORE")) or (ne_convert and _allows(
          max_isa, "AVX2_VNNI_2")):
    return None
  variable, value = limit
  return (f"{variable}={value.strip()} leaves oneDNN no bfloat16 "
          "convolutions, which TensorFlow hands it on this CPU")


@functools.lru_cache(maxsize=None)
def cpu_flags() -> FrozenSet[str]:
  """This CPU's feature flags as Linux lists them (none elsewhere)."""
  return frozenset(_cpuinfo("flags").split())


def cpu_model() -> str:
  """This CPU's model name as Linux lists it ("" elsewhere)."""
  return _cpuinfo("model name")


def _cpuinfo(field: str) -> str:
  """The first CPU's `field` in /proc/cpuinfo ("" where there is none)."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        name, _, value = line.partition(":")
        if name.strip() == field:
          return value.strip()
  except OSError:
    pass
  return ""


@functools.lru_cache(maxsize=None)
def this_machine() -> str:
  """This machine's row of `KINDS`: its GPUs' if it has any (the oldest
  decides), else its CPU's."""
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    oldest = min(tf.config.experimental.get_device_details(gpu).get(
        "compute_capability", (0, 0)) for gpu in gpus)
    return "gpu_bf16" if oldest >= (8, 0) else "gpu"
  if not onednn_on():
    return "cpu"
  return cpu_kind(cpu_flags(), onednn_limit())


def kernels_used(options: Optional[config_lib.KernelConfig] = None,
                 kind: Optional[str] = None) -> Dict[str, bool]:
  """Each kernel option's value in `options` (None: all unset): as given,
  or where unset (None) the default of `kind` (this machine's)."""
  default = KINDS[kind or this_machine()].kernels
  options = options or config_lib.KernelConfig()
  given = {name: getattr(options, name) for name in config_lib.KERNEL_OPTIONS}
  return {name: name in default if value is None else bool(value)
          for name, value in given.items()}


def auto_precision(kind: Optional[str] = None) -> str:
  """--mixed_precision=auto on `kind` (this machine's): none or bf16."""
  return KINDS[kind or this_machine()].precision

