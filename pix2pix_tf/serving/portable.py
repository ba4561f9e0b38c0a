"""What the portable files (ONNX, LiteRT) say about themselves: tensor and
dimension names, and the export's metadata, so that a web or mobile app
needs nothing else to run them.

Both files take `image` and give `generated_image`: float32, NHWC, values in
[-1, 1]. The ONNX file names its free dimensions `batch`, `height` and
`width` and carries the metadata as `metadata_props` (one entry per key:
strings as they are, other values as JSON; `pix2pix_tf` holds the whole, as
JSON). The LiteRT file carries it as the
model metadata entry `pix2pix_tf` (JSON), beside its signature's names.

The files are edited with the `onnx` package and TensorFlow's LiteRT
flatbuffer utilities: neither Keras's exporters nor tf2onnx take metadata
or dimension names.
"""

import json
from typing import Dict

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

INPUT, OUTPUT = "image", "generated_image"
DIMENSIONS = ("batch", "height", "width")
FILE_METADATA_NAME = "pix2pix_tf"


def file_metadata(metadata: Dict, fp16_weights: bool) -> Dict:
  """The export's metadata (signatures.export_metadata) with what a file's
  user needs to feed it: the tensors' names, layout, value range and
  dtype, and the weights' dtype."""
  return {**metadata, "input": INPUT, "output": OUTPUT, "layout": "NHWC",
          "value_range": [-1.0, 1.0], "dtype": "float32",
          "weights": "float16" if fp16_weights else "float32"}


def describe_onnx(path: str, metadata: Dict, fp16_weights: bool) -> None:
  """Names the ONNX file's dimensions, adds `metadata` as metadata_props,
  and with `fp16_weights` stores its float32 weights as float16 (half the
  file; each is cast back to float32 when the file loads, so the
  computation stays float32, which every runtime's CPU kernels take)."""
  import onnx  # An extra: imported when used.
  from onnx import numpy_helper
  model = onnx.load(path)
  graph = model.graph
  for value in (graph.input[0], graph.output[0]):
    for dim, name in zip(value.type.tensor_type.shape.dim, DIMENSIONS):
      dim.dim_param = name
  del model.metadata_props[:]
  entries = {FILE_METADATA_NAME: metadata, **metadata}
  for key, value in entries.items():
    model.metadata_props.add(
        key=key, value=value if isinstance(value, str) else json.dumps(value))
  model.doc_string = (f"pix2pix generator ({metadata['direction']}): "
                      f"{INPUT} -> {OUTPUT}, float32 NHWC in [-1, 1].")
  if fp16_weights:
    casts = []
    for tensor in graph.initializer:
      values = numpy_helper.to_array(tensor)
      # Weights only: the kernels and per-channel vectors, within float16's
      # range (not scalars such as epsilons; shapes are integers).
      if (tensor.data_type != onnx.TensorProto.FLOAT or values.size < 2 or
          np.abs(values).max() > np.finfo(np.float16).max):
        continue
      half = numpy_helper.from_array(values.astype(np.float16),
                                     tensor.name + "_fp16")
      casts.append(onnx.helper.make_node(
          "Cast", [half.name], [tensor.name], to=onnx.TensorProto.FLOAT))
      tensor.CopyFrom(half)
    nodes = casts + list(graph.node)  # Before every node reading a weight.
    del graph.node[:]
    graph.node.extend(nodes)
  onnx.checker.check_model(model)
  onnx.save(model, path)


def describe_litert(path: str, metadata: Dict) -> None:
  """Names the LiteRT file's input and output tensors and adds `metadata`
  as its model metadata entry `pix2pix_tf`."""
  model = flatbuffer_utils.read_model(path)
  subgraph = model.subgraphs[0]
  subgraph.tensors[subgraph.inputs[0]].name = INPUT.encode()
  subgraph.tensors[subgraph.outputs[0]].name = OUTPUT.encode()
  buffer = schema.BufferT()
  buffer.data = np.frombuffer(json.dumps(metadata).encode(), np.uint8)
  model.buffers.append(buffer)
  entry = schema.MetadataT()
  entry.name, entry.buffer = FILE_METADATA_NAME.encode(), len(model.buffers) - 1
  model.metadata = [m for m in model.metadata or []
                    if m.name != FILE_METADATA_NAME.encode()] + [entry]
  flatbuffer_utils.write_model(model, path)

