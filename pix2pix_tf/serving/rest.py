"""TensorFlow Serving's REST API, as JSON: what a predict request's body
means as tensors, how the outputs are answered, and the model status and
metadata documents (https://www.tensorflow.org/tfx/serving/api_rest; the
rules of TensorFlow Serving's json_tensor.cc, for the float32, uint8 and
string tensors of an export).

* Row format: {"signature_name": ..., "instances": [...]}: one element per
  batch entry, the value itself for a signature with one input, else an
  object keyed by input name; answered {"predictions": [...]}, the value
  itself per entry for one output, else an object keyed by output name.
* Columnar format: {"signature_name": ..., "inputs": value or {name:
  value}}, answered {"outputs": value or {name: value}}.
* Tensors are nested lists; a string is a JSON string (UTF-8) or
  {"b64": "..."} for binary data, and a string output whose name ends in
  "_bytes" is answered as {"b64": "..."}.
"""

import base64
import binascii
import dataclasses
import math
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from pix2pix_tf import data as data_lib

ROW, COLUMNAR = "row", "columnar"
BYTES_SUFFIX = "_bytes"  # TensorFlow Serving's mark of a binary string.


class RequestError(Exception):
  """A request refused before the model: its HTTP status and why."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


@dataclasses.dataclass(frozen=True)
class Limits:
  """What a request may hold: `max_pixels` pixels of `channels` channels,
  in one image or in all its images together (declared in an encoded
  image's header, or height x width of a numeric one), so that what one
  request can cost is bounded whatever its number of images."""
  max_pixels: int
  channels: int

  @property
  def max_values(self) -> int:
    """The most numbers one image (one batch entry) may hold."""
    return self.max_pixels * self.channels


class PixelBudget:
  """The pixels a request's images have declared so far, against
  `limits.max_pixels`; counted while the body is parsed, before anything
  is decoded."""

  def __init__(self, limits: Limits):
    self.limits = limits
    self.pixels = 0

  def take(self, pixels: int, where: str) -> None:
    """Counts `pixels` more (of the image at `where`); RequestError 413
    once the request's total is over the limit."""
    self.pixels += pixels
    if self.pixels > self.limits.max_pixels:
      raise RequestError(413, (
          f"The request's images declare {self.pixels} pixels up to {where}, "
          f"more than --max_pixels={self.limits.max_pixels} for a whole "
          "request (one image of that size, or smaller ones that add up to "
          "it): send the images in separate requests."))


def is_b64(value: Any) -> bool:
  """Whether `value` is {"b64": "..."}, TensorFlow Serving's binary
  string (an object with that one key)."""
  return (isinstance(value, dict) and len(value) == 1 and
          isinstance(value.get("b64"), str))


def first_value(body: dict) -> Any:
  """The first scalar of a predict body's tensors (None when it has
  none): it tells b64 images from numbers."""
  value = body.get("instances", body.get("inputs"))
  for _ in range(64):  # Deeper nesting is no tensor of this API.
    if isinstance(value, list) and value:
      value = value[0]
    elif isinstance(value, dict) and value and not is_b64(value):
      value = next(iter(value.values()))
    else:
      return value
  return None


def parse_predict(body: dict, specs: Dict[str, tf.TensorSpec],
                  limits: Limits) -> Tuple[Dict[str, np.ndarray], str]:
  """The input arrays of a predict body for a signature whose inputs are
  `specs` (by name), and its format (ROW or COLUMNAR). RequestError: 400
  for a body that is not one of the API's forms or does not fit the
  inputs, 413 for an image, or all the images together, over `limits`."""
  budget = PixelBudget(limits)
  if "instances" in body and "inputs" in body:
    raise RequestError(400, "Expected only one of 'instances' (row format) "
                            "or 'inputs' (columnar format), not both.")
  if "instances" in body:
    return _rows(body["instances"], specs, budget), ROW
  if "inputs" in body:
    return _columns(body["inputs"], specs, budget), COLUMNAR
  raise RequestError(400, "Missing 'inputs' or 'instances' key: expected "
                          '{"instances": [...]} or {"inputs": ...}.')


def _named(value: Any) -> bool:
  """Whether a row or columnar value names its inputs ({name: value})."""
  return isinstance(value, dict) and not is_b64(value)


def _rows(instances: Any, specs: Dict[str, tf.TensorSpec],
          budget: PixelBudget) -> Dict[str, np.ndarray]:
  """The batched inputs of a row-format request."""
  if not isinstance(instances, list):
    raise RequestError(400, "Expected 'instances' to be a list.")
  if not instances:
    raise RequestError(400, "No values in 'instances'.")
  named = _named(instances[0])
  if not named and len(specs) > 1:
    raise RequestError(400, "'instances' is a plain list, but the signature "
                       f"takes several inputs ({', '.join(sorted(specs))}): "
                       "give an object per instance.")
  columns = {name: [] for name in specs}
  for i, instance in enumerate(instances):
    where = f"instances[{i}]"
    if _named(instance) != named:
      raise RequestError(400, f"{where} is {'not ' if named else ''}an "
                         "object of named inputs, unlike instances[0].")
    values = instance if named else {next(iter(specs)): instance}
    if set(values) != set(specs):
      raise RequestError(400, f"{where} has inputs {sorted(values)}; "
                         f"expected {sorted(specs)}.")
    for name, value in values.items():
      columns[name].append(to_array(value, specs[name].dtype,
                                    f"{where}[{name!r}]" if named else where,
                                    budget))
  batched = {}
  for name, arrays in columns.items():
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
      raise RequestError(400, f"The instances' {name!r} differ in shape "
                         f"({', '.join(str(list(s)) for s in shapes)}); "
                         "the row format stacks equal shapes: send them in "
                         "separate requests.")
    batched[name] = np.stack(arrays)
  return batched


def _columns(inputs: Any, specs: Dict[str, tf.TensorSpec],
             budget: PixelBudget) -> Dict[str, np.ndarray]:
  """The inputs of a columnar-format request (each value batched)."""
  if not _named(inputs):
    if len(specs) != 1:
      raise RequestError(400, "'inputs' is a plain value, but the signature "
                         f"takes inputs {sorted(specs)}: give an object.")
    inputs = {next(iter(specs)): inputs}
  missing = sorted(set(specs) - set(inputs))
  if missing:
    raise RequestError(400, f"Missing named input {missing[0]!r} in "
                            "'inputs'.")
  arrays = {}
  for name, spec in specs.items():
    array = to_array(inputs[name], spec.dtype, f"inputs[{name!r}]", budget,
                     batched=True)
    arrays[name] = array
  return arrays


def _dense_shape(value: Any) -> List[int]:
  """The shape nested lists would have, read along their first elements
  (what TensorFlow Serving does; the rest is checked when converted)."""
  shape = []
  while isinstance(value, list):
    shape.append(len(value))
    if not value:
      break
    value = value[0]
  return shape


def to_array(value: Any, dtype: tf.DType, where: str, budget: PixelBudget,
             batched: bool = False) -> np.ndarray:
  """A JSON value as an array of `dtype` (float32, uint8 or string), its
  pixels counted in `budget` (numbers: their count over the channels);
  RequestError 400 for one that is not a dense tensor of that type, 413
  for one that holds more than an image may (per batch entry when
  `batched`) or takes the request over its budget."""
  shape = _dense_shape(value)
  if dtype == tf.string:
    return _strings(value, shape, where, budget)
  limits = budget.limits
  per_image = math.prod(shape[1:] if batched else shape)
  if per_image > limits.max_values:
    raise RequestError(413, f"{where} holds {per_image} values per image, "
                       f"more than --max_pixels={limits.max_pixels} pixels "
                       f"of {limits.channels} channels; send it smaller.")
  budget.take(-(-math.prod(shape) // limits.channels), where)
  try:
    array = np.asarray(value)
  except (ValueError, OverflowError):
    array = None
  if array is None or list(array.shape) != shape or array.dtype == object:
    raise RequestError(400, f"{where} is not a dense tensor: its nested "
                       "lists must have equal lengths at each depth, with "
                       "numbers at the deepest one only.")
  if array.dtype.kind not in "iuf":
    raise RequestError(400, f"{where} holds {array.dtype.name} values; "
                       f"the input takes {dtype.name} numbers.")
  if dtype == tf.uint8 and (array.dtype.kind == "f" or array.size and (
      array.min() < 0 or array.max() > 255)):
    raise RequestError(400, f"{where} holds values other than the integers "
                            "0..255 that a uint8 input takes.")
  return array.astype(dtype.as_numpy_dtype)


def _strings(value: Any, shape: List[int], where: str,
             budget: PixelBudget) -> np.ndarray:
  """A (nested) JSON value of strings or {"b64": ...} as a bytes array."""
  flat = []

  def add(item, depth):
    if depth < len(shape):
      if not isinstance(item, list) or len(item) != shape[depth]:
        raise RequestError(400, f"{where} is not a dense tensor: its nested "
                           "lists must have equal lengths at each depth.")
      for element in item:
        add(element, depth + 1)
      return
    flat.append(_binary(item, f"{where} (value {len(flat)})", budget))

  add(value, 0)
  return np.array(flat, dtype=object).reshape(shape)


def _binary(value: Any, where: str, budget: PixelBudget) -> bytes:
  """One string of a request; an image is counted in `budget` from its
  header, and one that declares more pixels than a request may hold is
  refused (413), before anything is decoded."""
  if isinstance(value, str):
    data = value.encode("utf-8")
  elif is_b64(value):
    try:
      data = base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
      raise RequestError(400, f"{where} is not valid base64.") from None
  else:
    raise RequestError(400, f'{where} is not {{"b64": "..."}} (or a '
                            "string).")
  try:
    pixels = data_lib.check_pixels(data, budget.limits.max_pixels,
                                   where).pixels
  except data_lib.TooLargeError as e:
    raise RequestError(413, str(e)) from None
  except data_lib.UnsupportedImageError as e:
    raise RequestError(400, str(e)) from None
  except OSError:
    if data_lib.is_encoded_image(data):  # TensorFlow might decode it.
      raise RequestError(400, (
          f"{where} begins like a JPEG, PNG, GIF, BMP or WebP image, but its "
          "header cannot be read; send it re-encoded.")) from None
    pixels = 0  # No image: refused by the export, or another string.
  budget.take(pixels, where)
  return data


def _json_value(array: np.ndarray, name: str) -> Any:
  """An output array as JSON: nested lists of numbers, or of strings
  ({"b64": ...} for an output whose name ends in "_bytes")."""
  if array.dtype.kind not in ("O", "S"):
    return array.tolist()
  if name.endswith(BYTES_SUFFIX):
    return _map(lambda b: {"b64": base64.b64encode(b).decode()},
                array.tolist())
  return _map(lambda b: b.decode("utf-8", "replace"), array.tolist())


def _map(function: Callable[[Any], Any], nested: Any) -> Any:
  """`function` applied to each scalar of nested lists."""
  if isinstance(nested, list):
    return [_map(function, item) for item in nested]
  return function(nested)


def predict_answer(outputs: Dict[str, np.ndarray], form: str) -> dict:
  """A predict answer: {"predictions": [...]} for ROW, {"outputs": ...}
  for COLUMNAR; RequestError for row answers without a batch dimension."""
  if form == COLUMNAR:
    if len(outputs) == 1:
      name, array = next(iter(outputs.items()))
      return {"outputs": _json_value(array, name)}
    return {"outputs": {name: _json_value(array, name)
                        for name, array in outputs.items()}}
  sizes = {name: array.shape[0] if array.ndim else None
           for name, array in outputs.items()}
  if None in sizes.values() or len(set(sizes.values())) > 1:
    raise RequestError(400, "The outputs have no common batch dimension "
                            "for the row format; use 'inputs' (columnar).")
  values = {name: _json_value(array, name) for name, array in outputs.items()}
  if len(values) == 1:
    return {"predictions": next(iter(values.values()))}
  batch = next(iter(sizes.values()))
  return {"predictions": [{name: value[i] for name, value in values.items()}
                          for i in range(batch)]}


def model_status(version: int) -> dict:
  """GET /v1/models/NAME[/versions/N]: one version, loaded."""
  return {"model_version_status": [{
      "version": str(version), "state": "AVAILABLE",
      "status": {"error_code": "OK", "error_message": ""}}]}


def _tensor_info(info) -> dict:
  """A SignatureDef's TensorInfo as TensorFlow Serving prints it."""
  return {"dtype": types_pb2.DataType.Name(info.dtype),  # DT_FLOAT, ...
          "tensor_shape": {
              "dim": [{"size": str(d.size), "name": d.name}
                      for d in info.tensor_shape.dim],
              "unknown_rank": info.tensor_shape.unknown_rank},
          "name": info.name}


def model_metadata(name: str, version: int, signature_defs: dict,
                   **extra: Any) -> dict:
  """GET /v1/models/NAME[/versions/N]/metadata: the SavedModel's
  signatures (`signature_defs`: name -> SignatureDef proto) in TensorFlow
  Serving's shape, with `extra` entries beside "signature_def"."""
  signatures = {
      key: {"inputs": {alias: _tensor_info(info)
                       for alias, info in sorted(sig.inputs.items())},
            "outputs": {alias: _tensor_info(info)
                        for alias, info in sorted(sig.outputs.items())},
            "method_name": sig.method_name}
      for key, sig in sorted(signature_defs.items())}
  return {"model_spec": {"name": name, "signature_name": "",
                         "version": str(version)},
          "metadata": {"signature_def": {"signature_def": signatures},
                       **extra}}
