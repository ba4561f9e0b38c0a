"""Export formats besides the SavedModel: `.keras`, LiteRT and ONNX.

Each file holds the generator as the export runs it (paper mode or eval;
see saved_model), float32 images in [-1, 1] in and out, as the SavedModel's
serving_default:

* keras: the Keras model (`keras.saving.load_model`; the paper-mode layers
  and the ResNet's reflection padding are registered by importing
  pix2pix_tf.models; batch norm is saved as Keras's own layer).
* litert: a `.tflite` file for the LiteRT interpreter (phones, browsers),
  input [1, S, S, C] with S the training crop size.
* onnx: an ONNX file for ONNX Runtime; any batch and any height and width
  that are multiples of 2**depth.

Both name their tensors and carry the export's metadata (see `portable`),
and take `precision="fp16"`: float16 weights, half the file (computed in
float32 where the runtime has no float16 kernels).

The files are written by Keras's own exporters (`Model.save`,
`Model.export`) beside their destination and checked before they replace
anything: read back by their runtime (Keras, the LiteRT interpreter, ONNX
Runtime) and run on one random input against the TensorFlow model; the
largest difference must be within TOLERANCES, else nothing is replaced.
Dropout makes paper-mode outputs vary from call to call, so for a
paper-mode model with dropout the check converts a copy without dropout
and compares that (the file itself must give finite outputs of the right
shape).
"""

import dataclasses
import importlib
import os
from typing import Callable, Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf import models
from pix2pix_tf import outputs
from pix2pix_tf import temporaries
from pix2pix_tf.serving import portable
from pix2pix_tf.serving import saved_model as saved_model_lib
from pix2pix_tf.serving import signatures

# Format -> the file name it gets in the run folder by default.
FILE_NAMES = {"keras": "export.keras", "litert": "export.tflite",
              "onnx": "export.onnx"}
# (format, weights) -> the largest difference to the TensorFlow model, on
# a random image in [-1, 1], that the check accepts (measured on facades:
# docs/inference.md, "Export formats").
TOLERANCES = {("keras", "float32"): 1e-5, ("onnx", "float32"): 1e-4,
              ("onnx", "fp16"): 2e-2, ("litert", "float32"): 1e-4,
              ("litert", "fp16"): 2e-2}
# Format -> (module, pip extra) the format needs beyond TensorFlow.
NEEDS = {"litert": (("ai_edge_litert", "litert"),),
         "onnx": (("tf2onnx", "onnx"), ("onnxruntime", "onnx"))}
NEEDS["web"] = NEEDS["onnx"]  # The web export's model is an ONNX file.


@dataclasses.dataclass(frozen=True)
class Written:
  """An exported file: where, how large, and its check's largest
  difference to the TensorFlow model on a random input."""
  path: str
  size_bytes: int
  max_difference: float
  checked_without_dropout: bool


def default_path(model_dir: str, fmt: str, precision: str) -> str:
  """<model_dir>/export.keras, export.tflite or export.onnx
  (export_fp16.tflite, export_fp16.onnx for float16 weights)."""
  stem, suffix = os.path.splitext(FILE_NAMES[fmt])
  if precision == "fp16":
    stem += "_fp16"
  return os.path.join(model_dir, stem + suffix)


def require(fmt: str) -> None:
  """ExportError naming the pip extra when a format's packages are
  missing."""
  for module, extra in NEEDS.get(fmt, ()):
    try:
      importlib.import_module(module)
    except ImportError:
      raise saved_model_lib.ExportError(
          f"export --format={fmt} needs the {module} package: pip install "
          f"'pix2pix_tf[{extra}]'.") from None


def _write(model: keras.Model, path: str, fmt: str, input_shape,
           precision: str, metadata: Dict) -> None:
  """`model` in `fmt` at `path`, by Keras's exporters; the portable
  formats with named tensors and `metadata`."""
  if fmt == "keras":
    model.save(path)
    return
  # The output named by a dict: the exporters take the names from it.
  image = keras.Input(input_shape[1:], batch_size=input_shape[0],
                      name=portable.INPUT)
  named = keras.Model(image, {portable.OUTPUT: model(image)})
  spec = [tf.TensorSpec(input_shape, tf.float32, name=portable.INPUT)]
  if fmt == "onnx":
    named.export(path, format="onnx", input_signature=spec, verbose=False)
    portable.describe_onnx(path, metadata, precision == "fp16")
    return
  options = {}
  if precision == "fp16":
    options = {"optimizations": [tf.lite.Optimize.DEFAULT],
               "target_spec": {"supported_types": [tf.float16]}}
  named.export(path, format="litert", input_signature=spec, verbose=False,
               **options)
  portable.describe_litert(path, metadata)


def runner(path: str, fmt: str) -> Callable[[np.ndarray], np.ndarray]:
  """A function that runs the file at `path` with its own runtime."""
  if fmt == "keras":
    loaded = keras.saving.load_model(path)
    return lambda x: np.asarray(loaded(x, training=False))
  if fmt == "onnx":
    import onnxruntime  # An extra: imported when used.
    session = onnxruntime.InferenceSession(
        path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]
  from ai_edge_litert import interpreter  # An extra: imported when used.
  lite = interpreter.Interpreter(model_path=path)
  lite.allocate_tensors()
  inputs, outputs = lite.get_input_details(), lite.get_output_details()

  def run(x):
    lite.set_tensor(inputs[0]["index"], x)
    lite.invoke()
    return lite.get_tensor(outputs[0]["index"])

  return run


def check_path(path: str, fmt: str) -> None:
  """ExportError unless `path` can be (re)written as a `fmt` file."""
  suffix = os.path.splitext(FILE_NAMES[fmt])[1]
  if not path.endswith(suffix):
    # The path's own name with the suffix (a folder's too: the SavedModel's
    # habit), or the default name inside "." or "..".
    stem = os.path.splitext(path.rstrip(os.sep))[0]
    example = (stem + suffix if os.path.basename(stem) not in ("", ".", "..")
               else os.path.join(path, FILE_NAMES[fmt]))
    raise saved_model_lib.ExportError(
        f"--export_dir={path}: --format={fmt} writes one file, whose name "
        f"ends in {suffix}: give e.g. --export_dir={example}.")
  if os.path.lexists(path) and not os.path.isfile(path):
    raise saved_model_lib.ExportError(
        f"--export_dir={path} exists and is not a file: choose another "
        "path.")
  # Before the work: a file of the user's is refused.
  outputs.file_output(path, "export_dir", kind="export")


def input_shape(config: config_lib.Config,
                fmt: str) -> List[Optional[int]]:
  """The exported input shape: LiteRT a fixed [1, S, S, C] at the training
  crop size; the others any batch and size."""
  if fmt == "litert":
    return [
        1, config.data.crop_size, config.data.crop_size,
        config.data.input_channels
    ]
  return [None, None, None, config.data.input_channels]


def format_metadata(config: config_lib.Config, step: int,
                    inference_mode: str, precision: str,
                    max_pixels: int = config_lib.DEFAULT_MAX_PIXELS,
                    resolution: Optional[str] = None,
                    fmt: str = "onnx") -> Dict:
  """What a `fmt` file carries: the export's metadata (with export's
  --max_pixels and --resolution, for the apps that read them; a LiteRT
  file, [1, S, S, C], takes the training resolution only) and how to feed
  the file (portable.file_metadata)."""
  if fmt == "litert":
    resolution = "training"
  return portable.file_metadata(signatures.export_metadata(
      config, step, inference_mode, max_pixels, resolution),
                                precision == "fp16")


def write_format(generator: keras.Model, config: config_lib.Config,
                 fmt: str, path: str, inference_mode: str,
                 precision: str = "float32", seed: int = 0,
                 step: int = 0, metadata: Optional[Dict] = None) -> Written:
  """Writes `generator` (in `inference_mode`, trained `step` steps) as
  `fmt` to `path` atomically, and checks the file with its runtime.
  `metadata`: what the file carries (default: `format_metadata`'s)."""
  require(fmt)
  if precision != "float32" and fmt == "keras":
    raise saved_model_lib.ExportError(
        "--precision=fp16 is for --format=litert and onnx; a .keras file "
        "keeps the model's own weights.")
  metadata = metadata or format_metadata(config, step, inference_mode,
                                         precision, fmt=fmt)
  check_path(path, fmt)
  paper = inference_mode == "paper"
  model = models.paper_mode(generator) if paper else generator
  shape = input_shape(config, fmt)
  # The check: deterministic on both sides, so dropout off where it is on
  # (the written file is then run for its shape and finite values).
  without_dropout = paper and any(
      isinstance(layer, keras.layers.Dropout) for layer in generator.layers)
  deterministic = (models.paper_mode(generator, dropout=False)
                   if without_dropout else model)
  tolerance = TOLERANCES[fmt, precision]

  def check(staged):
    if without_dropout:
      _difference(model, runner(staged, fmt), config, seed, dropout=True)
      with temporaries.scratch("export-check") as tmp:
        copy = os.path.join(tmp, os.path.basename(path))
        _write(deterministic, copy, fmt, shape, precision, metadata)
        difference = _difference(deterministic, runner(copy, fmt), config,
                                 seed)
    else:
      difference = _difference(model, runner(staged, fmt), config, seed)
    if not difference <= tolerance:  # NaN too.
      raise saved_model_lib.ExportError(
          f"The {fmt} file differs from the TensorFlow model by "
          f"{difference:.3g} on a random image, more than {tolerance:g}: "
          f"not written to {path} (whatever was there is kept).")
    return difference

  checked = {}

  def write_and_check(staged):
    _write(model, staged, fmt, shape, precision, metadata)
    checked["difference"] = check(staged)

  folder, name = outputs.file_output(path, "export_dir", kind="export")
  folder.write(name, write_and_check)
  return Written(path, os.path.getsize(path), checked["difference"],
                 without_dropout)


def _difference(model: keras.Model, run: Callable, config: config_lib.Config,
                seed: int, dropout: bool = False) -> float:
  """Largest |file - model| on one random image at the training size
  (`dropout`: outputs vary, so only their shape and finiteness are
  checked: 0, or ExportError)."""
  size = config.data.crop_size
  x = np.random.default_rng(seed).uniform(
      -1, 1, (1, size, size, config.data.input_channels)).astype(np.float32)
  got = np.asarray(run(x))
  expected = np.asarray(model(x, training=False), np.float32)
  if got.shape != expected.shape or not np.isfinite(got).all():
    raise saved_model_lib.ExportError(
        f"The exported file answers {got.shape} (finite: "
        f"{bool(np.isfinite(got).all())}) where the model answers "
        f"{expected.shape}: not written.")
  return 0.0 if dropout else float(np.abs(got - expected).max())


def export_format(model_dir: str, fmt: str, path: Optional[str] = None,
                  checkpoint: Optional[str] = None,
                  inference_mode: Optional[str] = None,
                  precision: str = "float32",
                  max_pixels: Optional[int] = None,
                  resolution: Optional[str] = None) -> Written:
  """A run's generator (its latest checkpoint, or `checkpoint`) as a
  `fmt` file; default path `default_path`. `max_pixels` (default
  config_lib.DEFAULT_MAX_PIXELS) and `resolution` are recorded in its
  metadata; a .keras file carries none, and a LiteRT file takes the
  training resolution only, so they are refused there."""
  if fmt == "keras" and (max_pixels is not None or resolution):
    flag = "--max_pixels" if max_pixels is not None else "--resolution"
    raise saved_model_lib.ExportError(
        f"{flag} is recorded in an export's metadata, and a keras file "
        "carries none: leave it out, or choose another --format.")
  if fmt == "litert" and resolution:
    raise saved_model_lib.ExportError(
        "--resolution is recorded in an export's metadata, and a litert "
        "file takes images at the training size only ([1, S, S, C]): leave "
        "it out, or choose another --format.")
  config = saved_model_lib.load_run_config(model_dir)
  path = path or default_path(model_dir, fmt, precision)
  if max_pixels is None:
    max_pixels = config_lib.DEFAULT_MAX_PIXELS
  require(fmt)
  check_path(path, fmt)
  generator, step = saved_model_lib.restore_generator(
      config, checkpoint or saved_model_lib.latest_checkpoint(model_dir))
  mode = inference_mode or config.outputs.inference_mode
  return write_format(generator, config, fmt, path, mode, precision,
                      step=step, metadata=format_metadata(
                          config, step, mode, precision, max_pixels,
                          resolution, fmt))
