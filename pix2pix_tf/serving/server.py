"""The translation server: a drawing page, and TensorFlow Serving's REST API
for the export's signatures (rest.py holds the API's JSON rules), so that a
client of TensorFlow Serving works unchanged against it, and the other way
round.

What it answers is `routes.ENDPOINTS` (docs/rest_api.md's endpoint table is
written from it): the page (pages/translate.html: draw a label map, with
palette brushes named by class, or edges with a pen, on a canvas of a
chosen size, or upload an image; Translate, at native resolution),
/healthz once the model is loaded, and TensorFlow Serving's predict, model
status and metadata, each for the model, a version N or a version label L
(one of serve --version_labels).

A predict body's signature_name names any signature that takes inputs:
serving_default (float32 in [-1, 1], nested lists [batch, height, width,
C]), translate_uint8 and translate_native (integers 0..255),
translate_encoded and translate_encoded_native ({"b64": ...} images in,
{"b64": ...} PNGs out). The metadata signature takes no inputs and is
refused, as TensorFlow Serving refuses it; its contents, without paths, are
in the metadata document. No signature_name (or ""): serving_default, as
TensorFlow Serving runs; {"b64": ...} images sent to it are refused (400)
with the signature that takes them (translate_encoded, or
translate_encoded_native by --resolution, else the export's).

The version N is the --saved_model folder's name when that is a number (as
in TensorFlow Serving's /models/pix2pix/1), else 1; another version or
model name is answered 404; a label that --version_labels does not name,
400 (TensorFlow Serving's "Unrecognized servable version label").

Requests are served concurrently; model calls are serialised by a lock, so a
single model copy is used safely. Errors are {"error": "..."} with a 4xx or
5xx status: 400 for a request that the signature cannot take, 404 for an
unknown model, version or path, 405 for a wrong method, 413 for a body over
--max_upload_mb, or images whose headers declare more than --max_pixels
pixels in all (one image, or all of a request's together; numeric images
by their values), counted before anything is decoded, so that a request's
decoded pixels are bounded whatever its number of images; 503 for a wait
for the model over --request_timeout. Pages are sent with a
Content-Security-Policy that runs no script but their own.
"""

import json
import os
import re
import threading
from typing import Callable, Dict, List, Optional, Sequence

import flask
import numpy as np
import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf import data as data_lib
from pix2pix_tf.serving import rest
from pix2pix_tf.serving import routes
from pix2pix_tf.serving.routes import MODEL_NAME
from pix2pix_tf.serving import saved_model as saved_model_lib
from pix2pix_tf.serving import web

PREDICT_BODY = 'JSON {"instances": [...]} or {"inputs": ...}'

# Flags whose values are paths on the training machine: the metadata
# endpoint leaves them out, so that a server does not tell its visitors
# where its owner keeps data and runs.
PATH_FLAGS = frozenset({"data_dir", "model_dir", "cache", "label_palette",
                        "segmenter", "inception_weights", "labels"})


class Busy(RuntimeError):
  """The model was busy for longer than the request may wait."""


class Refused(ValueError):
  """Inputs that the signature refused (the wrong shape, not an image)."""


def export_version(saved_model: str) -> int:
  """The version TensorFlow Serving would give the export: its folder's
  name when that is a number (/models/pix2pix/1), else 1."""
  name = os.path.basename(os.path.normpath(saved_model))
  return int(name) if name.isdigit() else 1


class Translator:
  """The SavedModel's signatures, one call at a time.

  `resolution`: the one that a request of b64 images naming no signature
  gets, "native" or "training"; default: the export's. Raises ExportError
  for native resolution from an export that predates it.

  Attributes: `metadata` (the export's), `version` (`export_version`),
  `signature_defs` (every SignatureDef proto, by name), `signatures` (the
  signatures that take inputs, by name), `encoded_signature` (the encoded
  signature of `resolution`).
  """

  def __init__(self, saved_model: str, resolution: Optional[str] = None):
    loaded = saved_model_lib.load_export(saved_model)  # ExportError: one sentence.
    self._loaded = loaded
    self.metadata = json.loads(loaded.metadata_json.numpy())
    self.version = export_version(saved_model)
    self.signature_defs = saved_model_lib.signature_defs(saved_model)
    self.requested_resolution = resolution
    self.resolution = saved_model_lib.resolution_of(self.metadata,
                                                    resolution)
    self.signatures = {name: function
                       for name, function in loaded.signatures.items()
                       if function.structured_input_signature[1]}
    self._input_specs = {
        name: function.structured_input_signature[1]
        for name, function in self.signatures.items()}
    # What `translate` runs (images in, PNGs out).
    self.encoded_signature = saved_model_lib.translate_signature(
        self.signatures, self.metadata, self.resolution, "encoded",
        export=saved_model)
    self._lock = threading.Lock()

  def input_specs(self, signature: str) -> Dict[str, tf.TensorSpec]:
    """The inputs of `signature` by name (TensorSpecs: dtype, shape)."""
    return self._input_specs[signature]

  def run(self, signature: str, inputs: Dict[str, np.ndarray],
          wait: Optional[float] = None) -> Dict[str, np.ndarray]:
    """`signature` called on `inputs` (arrays by input name): its outputs
    by name. Raises Refused (a sentence) for inputs the signature
    refuses, Busy when the model stays taken for `wait` seconds."""
    function = self.signatures[signature]
    for name, spec in self.input_specs(signature).items():
      # Loaded signatures check no shape before running: a string tensor
      # of another rank would fail inside, as if it were no image.
      if not spec.shape.is_compatible_with(inputs[name].shape):
        dims = ", ".join("any" if d is None else str(d)
                         for d in spec.shape.as_list())
        raise Refused(f"{signature}: input {name!r} takes shape [{dims}]; "
                      f"got {list(inputs[name].shape)}.")
    if not self._lock.acquire(timeout=-1 if wait is None else wait):
      raise Busy(f"The model was busy for {wait:g} s; try again.")
    try:
      outputs = function(**{name: tf.constant(value)
                            for name, value in inputs.items()})
    except tf.errors.InvalidArgumentError as e:
      raise Refused(refusal(signature, inputs, e.message)) from e
    finally:
      self._lock.release()
    return {name: value.numpy() for name, value in outputs.items()}

  def translate(self, encoded_images: Sequence[bytes],
                wait: Optional[float] = None,
                signature: Optional[str] = None) -> List[bytes]:
    """Encoded images (bytes) -> encoded PNGs, by `signature` (an encoded
    one; default: `encoded_signature`). Raises ValueError for data that is
    not an image, Busy when the model stays taken for `wait` seconds."""
    outputs = self.run(signature or self.encoded_signature,
                       {"images_bytes": np.array(encoded_images, object)},
                       wait)
    return [bytes(png) for png in outputs["generated_image_bytes"]]


def refusal(signature: str, inputs: Dict[str, np.ndarray],
            message: str) -> str:
  """Why `signature` refused `inputs`, in a sentence, from TensorFlow's
  error `message` (the signatures' checks say which shape they expect)."""
  if any(value.dtype == object for value in inputs.values()):
    return "an instance is not a JPEG, PNG, BMP, GIF or WebP image"
  shapes = ", ".join(f"{name} {list(value.shape)}"
                     for name, value in inputs.items())
  check = re.search(r"assertion failed: \[(.*?)\] \[Condition", message)
  if check:
    return f"{signature}: {check.group(1)}; got {shapes}."
  lines = [line for line in message.splitlines()
           if line.strip() and not line.startswith(("\t", "Detected at",
                                                    "<stack", "Graph exec"))]
  return f"{signature} cannot take {shapes}: " + (
      lines[0][:300] if lines else "refused")


def canvas_sizes(metadata: dict, max_pixels: int) -> List[int]:
  """The page's canvas sizes: the training size, and 256, 512 and 1024
  where within `max_pixels` and multiples of the generator's (so that
  native translation needs no padding)."""
  multiple = metadata.get("size_multiple", 1)
  size = metadata.get("image_size", 256)
  return sorted({size} | {s for s in (256, 512, 1024)
                          if s * s <= max_pixels and s % multiple == 0})


def public_metadata(metadata: dict) -> dict:
  """The export's metadata without the training machine's paths."""
  public = dict(metadata)
  public["flags"] = {k: v for k, v in metadata.get("flags", {}).items()
                     if k not in PATH_FLAGS}
  return public


def drawing_config(metadata: dict, palette: Optional[List[dict]],
                   max_pixels: int) -> dict:
  """What the drawing page is told of the drawing: the brushes (a
  palette's classes, or a pen), the canvas sizes, the pixel limit."""
  return {"kind": "labels" if palette else "edges",
          "max_pixels": max_pixels,
          "palette": palette or [],
          "size": metadata.get("image_size", 256),
          "sizes": canvas_sizes(metadata, max_pixels)}


def _page_config(translator: Translator, palette: Optional[List[dict]],
                 max_pixels: int) -> dict:
  """What the page is told: the drawing, and the signature to ask."""
  # The page translates its canvas at native resolution, whatever size is
  # chosen, unless serve --resolution=training asked otherwise (or the
  # export predates native inference).
  native, training = (saved_model_lib.TRANSLATE_SIGNATURES[r]["encoded"]
                      for r in ("native", "training"))
  signature = native if (translator.requested_resolution != "training" and
                         native in translator.signatures) else training
  return {**drawing_config(translator.metadata, palette, max_pixels),
          "signature": signature, "model": MODEL_NAME}


def _error(status: int, message: str):
  """TensorFlow Serving's error answer."""
  return flask.jsonify({"error": message}), status


def _api_views(translator: Translator, own_metadata: dict,
               limits: rest.Limits, request_timeout: float,
               labels: Sequence[str]) -> Dict[str, Callable]:
  """The view functions of TensorFlow Serving's REST endpoints, by the
  names routes.ENDPOINTS gives them. Each takes the servable's path
  variables: the model, and a version number or label when the path has
  one."""

  def check(model, version, label, status=False):
    routes.check_servable(model, version, translator, status, label,
                          labels)

  def predict(model, version=None, label=None):
    check(model, version, label)
    body = web.json_object(flask.request, PREDICT_BODY)
    signature = routes.choose_signature(body, translator)
    inputs, form = rest.parse_predict(
        body, translator.input_specs(signature), limits)
    outputs = translator.run(signature, inputs, wait=request_timeout)
    return flask.jsonify(rest.predict_answer(outputs, form))

  def status(model, version=None, label=None):
    check(model, version, label, status=True)
    return flask.jsonify(rest.model_status(translator.version))

  def metadata(model, version=None, label=None):
    check(model, version, label)
    return flask.jsonify(rest.model_metadata(
        MODEL_NAME, translator.version, translator.signature_defs,
        pix2pix_tf=own_metadata))

  return {"predict": predict, "status": status, "metadata": metadata}


def _install_errors(server: flask.Flask) -> None:
  """The API's errors as TensorFlow Serving's {"error": ...} answers."""

  @server.errorhandler(rest.RequestError)
  def refused(e):
    return _error(e.status, str(e))

  @server.errorhandler(Refused)
  def not_taken(e):
    return _error(400, str(e))

  @server.errorhandler(Busy)
  def busy(e):
    return _error(503, str(e))

  @server.errorhandler(404)
  def not_found(e):
    request = flask.request
    if not request.path.startswith("/v1/"):
      return _error(404, "No such page.")
    return _error(404, (
        f"Malformed request: {request.method} {request.path}; this server "
        f"answers {routes.api_summary()}."))


def create_app(translator: Translator, palette: Optional[List[dict]] = None,
               max_upload_mb: float = 8.0, max_pixels: Optional[int] = None,
               request_timeout: float = config_lib.DEFAULT_REQUEST_TIMEOUT,
               version_labels: Sequence[str] = ()) -> flask.Flask:
  """The Flask app around `translator`. A request whose images' headers
  declare more than `max_pixels` pixels in all (default: the export's own
  limit; numeric images count their values over the channels) is answered
  413 before anything is decoded; a request waits at most
  `request_timeout` seconds for the model. `version_labels` name the
  served version in /labels/ paths, as TensorFlow Serving's model config
  names versions (none: every label is refused, as there)."""
  server = flask.Flask(__name__)
  server.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 2**20)
  # The export refuses larger images itself: the server's limit can only
  # be lower (raise the export's with export --max_pixels).
  exported_limit = translator.metadata.get("max_pixels",
                                           config_lib.DEFAULT_MAX_PIXELS)
  max_pixels = min(max_pixels or exported_limit, exported_limit)
  page_config = _page_config(translator, palette, max_pixels)
  web.install(server, f"The request is larger than --max_upload_mb="
                      f"{max_upload_mb:g} MB.")

  def page():
    return web.page(web.read_page("translate.html").replace(
        "__CONFIG__", web.script_json(page_config)))

  def healthz():
    return flask.jsonify({"status": "ok"})

  own_metadata = public_metadata(translator.metadata)
  if palette is not None:
    own_metadata["palette"] = palette
  views = {"page": page, "healthz": healthz, **_api_views(
      translator, own_metadata, rest.Limits(
          max_pixels, translator.metadata.get("input_channels", 3)),
      request_timeout, tuple(version_labels))}
  server.url_map.converters["model"] = routes.ModelName
  for endpoint in routes.ENDPOINTS:
    for rule in endpoint.rules:
      server.add_url_rule(rule, endpoint.view, views[endpoint.view],
                          methods=[endpoint.method])
  _install_errors(server)
  return server


def load_palette_colors(spec: str) -> List[dict]:
  """[[r, g, b], ...] of a palette name or file, for the page's brush."""
  palette = data_lib.load_palette(spec)
  return [{"name": n, "color": [int(v) for v in c]}
          for n, c in zip(palette.class_names, palette.colors)]
