"""export --format=keras|litert|onnx: each file, read back by its own runtime
in another process, equals the SavedModel's serving_default on the same
input."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ENV, run_command, small_config, visible_generator
from pix2pix_tf import outputs
from pix2pix_tf import models
from pix2pix_tf import serving
from pix2pix_tf import temporaries
from pix2pix_tf.serving import formats

# A script run in a fresh process: the file through its runtime, and the
# SavedModel through TensorFlow, on the same input; prints both as JSON.
COMPARE = """
import json, sys
import numpy as np
fmt, path, saved_model, inputs = sys.argv[1:5]
x = np.load(inputs)
if fmt == "keras":
  import keras
  try:  # Keras alone, as a user without pix2pix_tf loads it.
    model = keras.saving.load_model(path)
    kinds = ["loaded by Keras alone"]
  except (TypeError, ValueError):  # Paper mode's layers: registered by pix2pix_tf.
    import pix2pix_tf.models
    model = keras.saving.load_model(path)
    kinds = []
  y = np.asarray(model(x, training=False))
  kinds += sorted({type(layer).__name__ for layer in model.layers})
elif fmt == "onnx":
  import onnxruntime
  session = onnxruntime.InferenceSession(path)
  y = session.run(None, {session.get_inputs()[0].name: x})[0]
  kinds = [str(d) for d in session.get_inputs()[0].shape]
else:
  from ai_edge_litert import interpreter
  lite = interpreter.Interpreter(model_path=path)
  lite.allocate_tensors()
  lite.set_tensor(lite.get_input_details()[0]["index"], x)
  lite.invoke()
  y = lite.get_tensor(lite.get_output_details()[0]["index"])
  kinds = [int(d) for d in lite.get_input_details()[0]["shape"]]
import tensorflow as tf
expected = tf.saved_model.load(saved_model).signatures["serving_default"](
    images=tf.constant(x))["generated_image"].numpy()
print(json.dumps({"difference": float(np.abs(y - expected).max()),
                  "spread": float(expected.std()), "kinds": kinds,
                  "shape": list(y.shape)}))
"""


def with_moving_statistics(generator, seed=0):
  """Batch norm's moving statistics made unlike their initial 0 and 1, so
  that an eval-mode comparison shows they were carried over."""
  rng = np.random.default_rng(seed)
  for layer in generator.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      shape = layer.moving_mean.shape
      layer.moving_mean.assign(rng.normal(0, 0.2, shape).astype(np.float32))
      layer.moving_variance.assign(
          rng.uniform(0.5, 2, shape).astype(np.float32))
  return generator


def compare(fmt, path, saved_model, images, tmp_path):
  np.save(tmp_path / "x.npy", images)
  out = subprocess.run(
      [sys.executable, "-c", COMPARE, fmt, path, saved_model,
       str(tmp_path / "x.npy")], capture_output=True, text=True, env=ENV,
      timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """A visible 32x32 generator with batch norm, its eval-mode SavedModel."""
  root = tmp_path_factory.mktemp("formats")
  config = small_config(root, root / "model")
  generator = with_moving_statistics(visible_generator(config))
  saved_model = serving.save(generator, config, 7, str(root / "export"),
                             "eval")
  return config, generator, saved_model, root


def images(config, batch=1, seed=1):
  size = config.data.crop_size
  return np.random.default_rng(seed).uniform(
      -1, 1, (batch, size, size, 3)).astype(np.float32)


@pytest.mark.parametrize("fmt,weights,tolerance", [
    ("keras", "float32", 1e-5), ("onnx", "float32", 1e-4),
    ("onnx", "fp16", 2e-2), ("litert", "float32", 1e-4),
    ("litert", "fp16", 2e-2)])
@pytest.mark.slow
def test_each_format_equals_the_saved_model(exported, tmp_path, fmt, weights,
                                            tolerance):
  config, generator, saved_model, root = exported
  path = formats.default_path(str(root), fmt, weights)
  written = formats.write_format(generator, config, fmt, path, "eval",
                                 weights)
  assert written.path == path and os.path.getsize(path) == written.size_bytes
  assert written.max_difference <= tolerance
  assert not written.checked_without_dropout
  result = compare(fmt, path, saved_model, images(config), tmp_path)
  # The outputs vary (a constant answer would match anything).
  assert result["spread"] > 0.05
  assert result["difference"] <= tolerance, result
  if fmt == "onnx":  # Any batch and size (multiples of 2**depth).
    bigger = compare(fmt, path, saved_model, images(config, 2)[:, :, :, :]
                     .repeat(2, axis=1), tmp_path)
    assert bigger["shape"] == [2, 64, 32, 3]
    assert bigger["difference"] <= tolerance
  if fmt == "litert":
    assert result["kinds"] == [1, 32, 32, 3]
  if fmt == "keras":  # An eval-mode U-Net with batch norm: Keras's layers.
    assert result["kinds"][0] == "loaded by Keras alone"
    assert {"BatchNormalization", "Conv2D",
            "Conv2DTranspose"} <= set(result["kinds"])


@pytest.mark.parametrize("fmt", ["litert", "onnx"])
@pytest.mark.slow
def test_fp16_halves_the_file(exported, fmt):
  config, generator, _, root = exported
  sizes = {}
  for precision in ("float32", "fp16"):
    path = formats.default_path(str(root / "half"), fmt, precision)
    sizes[precision] = formats.write_format(generator, config, fmt, path,
                                            "eval", precision).size_bytes
  assert sizes["fp16"] < 0.6 * sizes["float32"]


# Read in a process that imports no pix2pix_tf (LiteRT's metadata through
# TensorFlow's flatbuffer utilities): the names and metadata an app sees.
DESCRIBED = """
import json, sys
fmt, path = sys.argv[1:3]
if fmt == "onnx":
  import onnx
  model = onnx.load(path)
  tensors = [(v.name, [d.dim_param or d.dim_value
                       for d in v.type.tensor_type.shape.dim])
             for v in (model.graph.input[0], model.graph.output[0])]
  metadata = {p.key: p.value for p in model.metadata_props}
  whole = json.loads(metadata["pix2pix_tf"])
  assert all(metadata[k] == (v if isinstance(v, str) else json.dumps(v))
             for k, v in whole.items())
  metadata = whole
else:
  from ai_edge_litert import interpreter
  from tensorflow.lite.tools import flatbuffer_utils
  lite = interpreter.Interpreter(model_path=path)
  tensors = [(d["name"], [int(n) for n in d["shape"]])
             for d in lite.get_input_details() + lite.get_output_details()]
  tensors.append(lite.get_signature_list()["serving_default"])
  model = flatbuffer_utils.read_model(path)
  metadata, = [json.loads(bytes(model.buffers[m.buffer].data))
               for m in model.metadata if m.name == b"pix2pix_tf"]
print(json.dumps({"tensors": tensors, "metadata": metadata}))
"""


@pytest.mark.parametrize("fmt", ["onnx", "litert"])
@pytest.mark.parametrize("precision", ["float32", "fp16"])
@pytest.mark.slow
def test_portable_files_name_their_tensors_and_carry_the_metadata(
    exported, fmt, precision, tmp_path):
  config, generator, _, root = exported
  config = config.replace(label_palette="facades")
  path = formats.default_path(str(tmp_path), fmt, precision)
  formats.write_format(generator, config, fmt, path, "eval", precision,
                       step=7)
  done = subprocess.run([sys.executable, "-c", DESCRIBED, fmt, path],
                        capture_output=True, text=True, env=ENV)
  assert done.returncode == 0, done.stderr[-3000:]
  described = json.loads(done.stdout.splitlines()[-1])
  if fmt == "onnx":
    assert described["tensors"] == [
        ["image", ["batch", "height", "width", 3]],
        ["generated_image", ["batch", "height", "width", 3]]]
  else:
    assert described["tensors"] == [
        ["image", [1, 32, 32, 3]], ["generated_image", [1, 32, 32, 3]],
        {"inputs": ["image"], "outputs": ["generated_image"]}]
  metadata = described["metadata"]
  assert metadata["weights"] == ("float16" if precision == "fp16"
                                 else "float32")
  assert (metadata["direction"], metadata["inference_mode"],
          metadata["image_size"], metadata["step"]) == (
              config.data.direction, "eval", 32, 7)
  assert (metadata["layout"], metadata["value_range"], metadata["input"],
          metadata["output"]) == ("NHWC", [-1.0, 1.0], "image",
                                  "generated_image")
  assert metadata["palette"][0]["name"] and len(
      metadata["palette"][0]["color"]) == 3


def test_fp16_is_for_the_portable_formats(exported, tmp_path):
  config, generator, _, _ = exported
  with pytest.raises(serving.ExportError, match="precision=fp16 is for"):
    formats.write_format(generator, config, "keras",
                         str(tmp_path / "m.keras"), "eval", "fp16")


@pytest.mark.slow
def test_paper_mode_keras_file_keeps_its_layers_and_statistics(exported,
                                                               tmp_path):
  """Paper mode (batch statistics) without dropout is deterministic: the
  .keras file, loaded in another process, equals the paper-mode
  SavedModel."""
  config, _, _, root = exported
  config = config.replace(dropout=0.0)
  generator = with_moving_statistics(visible_generator(config))
  saved_model = serving.save(generator, config, 7, str(tmp_path / "paper"),
                             "paper")
  path = str(tmp_path / "paper.keras")
  written = formats.write_format(generator, config, "keras", path, "paper")
  assert written.max_difference <= 1e-5
  result = compare("keras", path, saved_model, images(config), tmp_path)
  assert "BatchStatisticsNormalization" in result["kinds"]
  assert result["difference"] <= 1e-5, result


def test_dropout_is_kept_and_the_check_runs_without_it(exported, tmp_path):
  config, generator, _, _ = exported
  assert config.model.dropout > 0
  path = str(tmp_path / "g.keras")
  written = formats.write_format(generator, config, "keras", path, "paper")
  assert written.checked_without_dropout and written.max_difference <= 1e-5
  loaded = keras.saving.load_model(path)
  assert any(isinstance(layer, models.layers.AlwaysDropout)
             for layer in loaded.layers)
  x = images(config)
  # Dropout stays on: two calls differ.
  assert np.abs(np.asarray(loaded(x)) - np.asarray(loaded(x))).max() > 1e-3


def test_resnet_keras_file_loads(tmp_path):
  config = small_config(tmp_path, tmp_path / "model",
                        generator="resnet_6blocks", ngf=4)
  generator = models.build_generator(config)
  path = str(tmp_path / "resnet.keras")
  written = formats.write_format(generator, config, "keras", path, "eval")
  assert written.max_difference <= 1e-5
  loaded = keras.saving.load_model(path)
  assert any(isinstance(layer, models.layers.ReflectionPadding2D)
             for layer in loaded.layers)


def test_a_missing_extra_is_named(exported, monkeypatch):
  config, generator, _, root = exported
  monkeypatch.setitem(sys.modules, "onnxruntime", None)  # Import fails.
  with pytest.raises(serving.ExportError, match=r"pix2pix_tf\[onnx\]"):
    formats.write_format(generator, config, "onnx",
                         str(root / "missing.onnx"), "eval")
  assert not os.path.exists(root / "missing.onnx")


def test_a_failed_export_leaves_the_old_file(exported, monkeypatch):
  config, generator, _, root = exported
  path = root / "kept.onnx"
  outputs.Folder(str(root), "export_dir", kind="export").write_bytes(
      "kept.onnx", b"an earlier export")

  def fail(*args):
    raise RuntimeError("the converter failed")

  monkeypatch.setattr(formats, "_write", fail)
  with pytest.raises(RuntimeError):
    formats.write_format(generator, config, "onnx", str(path), "eval")
  assert path.read_bytes() == b"an earlier export"
  assert [p for p in os.listdir(root)
          if p.startswith(temporaries.PREFIX)] == []  # None left.


def test_a_file_that_computes_otherwise_replaces_nothing(exported,
                                                         monkeypatch):
  config, generator, _, root = exported
  path = root / "checked.onnx"
  outputs.Folder(str(root), "export_dir", kind="export").write_bytes(
      "checked.onnx", b"an earlier export")
  real = formats.runner
  monkeypatch.setattr(formats, "runner",
                      lambda p, f: lambda x: real(p, f)(x) + 0.01)
  with pytest.raises(serving.ExportError, match=r"differs .* by 0\.01"):
    formats.write_format(generator, config, "onnx", str(path), "eval")
  assert path.read_bytes() == b"an earlier export"


def test_options_a_format_cannot_record_are_refused_before_reading(tmp_path):
  """export_format itself refuses --max_pixels and --resolution for a
  .keras file (which carries no metadata) and --resolution for LiteRT
  (training size only), before it reads the run: the folder is absent."""
  missing = str(tmp_path / "no run here")
  for fmt, given, says in [
      ("keras", dict(max_pixels=5), "--max_pixels is recorded in an "
       "export's metadata, and a keras file carries none"),
      ("keras", dict(resolution="native"), "--resolution is recorded in an "
       "export's metadata, and a keras file carries none"),
      ("litert", dict(resolution="native"), "--resolution is recorded in an "
       "export's metadata, and a litert file takes images at the training "
       "size only")]:
    with pytest.raises(serving.ExportError, match=re.escape(says)):
      formats.export_format(missing, fmt, **given)
  # What each format can record is read from the run: the missing folder.
  for fmt, given in [("onnx", dict(max_pixels=5, resolution="native")),
                     ("litert", dict(max_pixels=5))]:
    with pytest.raises(serving.ExportError, match="no run here"):
      formats.export_format(missing, fmt, **given)
  assert not os.path.exists(missing)


def test_bad_paths_are_refused(exported):
  config, generator, _, root = exported
  for given, example in [(root / "x.tflite", root / "x.onnx"),
                         (f"{root}/export/", root / "export.onnx"),
                         (".", os.path.join(".", formats.FILE_NAMES["onnx"]))]:
    with pytest.raises(serving.ExportError, match=re.escape(
        "--format=onnx writes one file, whose name ends in .onnx: give e.g. "
        f"--export_dir={example}.")):
      formats.write_format(generator, config, "onnx", str(given), "eval")
  (root / "folder.keras").mkdir()
  with pytest.raises(serving.ExportError, match="not a file"):
    formats.write_format(generator, config, "keras",
                         str(root / "folder.keras"), "eval")


@pytest.mark.slow
def test_export_command_writes_and_checks_each_format(trained_run):
  for fmt in ("onnx", "litert", "keras"):
    # ONNX with the export's --resolution and --max_pixels, for its
    # metadata.
    given = (["--resolution=native", "--max_pixels=12345"] if fmt == "onnx"
             else [])
    out = run_command("export", f"--model_dir={trained_run.outputs.model_dir}",
                      f"--format={fmt}", *given)
    assert out.returncode == 0, out.stderr[-2000:]
    path = formats.default_path(trained_run.outputs.model_dir, fmt, "float32")
    assert f"Exported to {path}" in out.stdout
    assert "largest difference" in out.stdout
    # The run's paper-mode generator has dropout: compared without it.
    assert "compared without dropout" in out.stdout
    assert os.path.getsize(path) > 0
    if fmt == "keras":
      for flag in ("--resolution=native", "--max_pixels=5"):
        refused = run_command(
            "export", f"--model_dir={trained_run.outputs.model_dir}",
            "--format=keras", flag)
        assert refused.returncode != 0
        assert (f"{flag.split('=')[0]} is recorded in an export's metadata, "
                "and a keras file carries none") in refused.stderr
    if fmt == "litert":
      refused = run_command(
          "export", f"--model_dir={trained_run.outputs.model_dir}",
          "--format=litert", "--resolution=native")
      assert refused.returncode != 0
      assert ("--resolution is recorded in an export's metadata, and a "
              "litert file takes images at the training size only"
              ) in refused.stderr
    if fmt == "onnx":
      import onnx
      props = {p.key: p.value for p in onnx.load(path).metadata_props}
      # (The run trains resize_and_crop, whose default is training.)
      assert props["resolution"] == "native"
      assert json.loads(props["max_pixels"]) == 12345
