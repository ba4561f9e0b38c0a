"""The translation server: a drawing page, and TensorFlow Serving's REST API
around an export's translate_encoded signatures.

GET /                                 the page (pages/translate.html): draw a
                                      label map (palette brushes, with their
                                      class names) or edges (pen) on a canvas
                                      of a chosen size, or upload an image;
                                      Translate (at native resolution)
POST /v1/models/pix2pix:predict       {"instances": [{"b64": ...}]} ->
                                      {"predictions": [{"b64": ...}]};
                                      "signature_name": translate_encoded or
                                      translate_encoded_native (default: by
                                      --resolution, else the export's)
GET /v1/models/pix2pix/metadata       the model's metadata (no paths)
GET /healthz                          "ok" once the model is loaded

Requests are served concurrently; model calls are serialised by a lock, so a
single model copy is used safely. Errors are JSON with a 4xx or 5xx status.
Limits: bodies over --max_upload_mb (413), images whose header declares more
than --max_pixels pixels (413, before decoding), a wait for the model over
--request_timeout (503); pages are sent with a Content-Security-Policy that
runs no script but their own.
"""

import base64
import binascii
import json
import threading
from typing import List, Optional, Sequence

import flask
import tensorflow as tf

from pix2pix_tf import config as config_lib
from pix2pix_tf import data as data_lib
from pix2pix_tf.serving import saved_model as saved_model_lib
from pix2pix_tf.serving import web

MODEL_NAME = "pix2pix"
INSTANCES = 'JSON {"instances": [{"b64": "..."}]}'

# Flags whose values are paths on the training machine: the metadata
# endpoint leaves them out, so that a server does not tell its visitors
# where its owner keeps data and runs.
PATH_FLAGS = frozenset({"data_dir", "model_dir", "cache", "label_palette",
                        "segmenter", "inception_weights", "labels"})


class Busy(RuntimeError):
  """The model was busy for longer than the request may wait."""


# The export's signatures that the predict endpoint runs (encoded images in,
# PNGs out), by `signature_name`.
ENCODED_SIGNATURES = {"training": "translate_encoded",
                      "native": "translate_encoded_native"}


class Translator:
  """The SavedModel's encoded-image signatures, one call at a time:
  translate_encoded (training resolution) and translate_encoded_native.

  `resolution`: the one a request that names no signature gets, "native"
  or "training"; default: the export's. Raises ExportError for native
  resolution from an export that predates it."""

  def __init__(self, saved_model: str, resolution: Optional[str] = None):
    loaded = saved_model_lib.load(saved_model)  # ExportError: one sentence.
    self._loaded = loaded
    self.metadata = json.loads(loaded.metadata_json.numpy())
    self.requested_resolution = resolution
    self.resolution = saved_model_lib.resolution_of(self.metadata,
                                                    resolution)
    self.signatures = {name: loaded.signatures[name]
                       for name in ENCODED_SIGNATURES.values()
                       if name in loaded.signatures}
    self.default_signature = ENCODED_SIGNATURES[self.resolution]
    if self.default_signature not in self.signatures:
      raise saved_model_lib.ExportError(
          f"{saved_model} has no {self.default_signature} signature (it "
          "predates native-resolution inference): export it again, or pass "
          "--resolution=training.")
    self._lock = threading.Lock()

  def translate(self, encoded_images: Sequence[bytes],
                wait: Optional[float] = None,
                signature: Optional[str] = None) -> List[bytes]:
    """Encoded images (bytes) -> encoded PNGs, by `signature` (one of
    `signatures`; default: `default_signature`). Raises ValueError for data
    that is not an image, Busy when the model stays taken for `wait`
    seconds."""
    translate = self.signatures[signature or self.default_signature]
    if not self._lock.acquire(timeout=-1 if wait is None else wait):
      raise Busy(f"The model was busy for {wait:g} s; try again.")
    try:
      out = translate(images_bytes=tf.constant(encoded_images))
    except tf.errors.InvalidArgumentError as e:
      raise ValueError("an instance is not a JPEG, PNG, BMP, GIF or WebP "
                       "image") from e
    finally:
      self._lock.release()
    return [bytes(x) for x in out["generated_image_bytes"].numpy()]


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


class RequestError(Exception):
  """A predict request refused before the model: its HTTP status and why."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


def decode_instances(body: dict, max_pixels: int) -> List[bytes]:
  """The encoded images of a REST predict body; RequestError (400, or 413
  for an image that declares more than `max_pixels` pixels, read from its
  header before anything is decoded)."""
  if not isinstance(body.get("instances"), list):
    raise RequestError(400, f"Expected {INSTANCES}.")
  if not body["instances"]:
    raise RequestError(400, "No instances given.")
  images = []
  for i, instance in enumerate(body["instances"]):
    if isinstance(instance, dict) and "images_bytes" in instance:
      instance = instance["images_bytes"]
    if not isinstance(instance, dict) or not isinstance(
        instance.get("b64"), str):
      raise RequestError(400, f'instances[{i}] is not {{"b64": "..."}}.')
    try:
      images.append(base64.b64decode(instance["b64"], validate=True))
    except (binascii.Error, ValueError):
      raise RequestError(400,
                         f"instances[{i}] is not valid base64.") from None
    pixels = data_lib.declared_pixels(images[-1])
    if pixels is not None and pixels > max_pixels:
      count = "too many" if pixels == float("inf") else pixels
      raise RequestError(413, f"instances[{i}] declares {count} pixels, "
                              f"more than --max_pixels={max_pixels}.")
  return images


def _page_config(translator: Translator, palette: Optional[List[dict]],
                 max_pixels: int) -> dict:
  """What the page is told: brushes, canvas sizes, the signature."""
  return {"kind": "labels" if palette else "edges",
          "palette": palette or [],
          "size": translator.metadata.get("image_size", 256),
          "sizes": canvas_sizes(translator.metadata, max_pixels),
          # The page translates its canvas at native resolution, whatever
          # size is chosen, unless serve --resolution=training asked
          # otherwise (or the export predates native inference).
          "signature": ENCODED_SIGNATURES[
              "native" if translator.requested_resolution != "training" and
              "translate_encoded_native" in translator.signatures
              else "training"],
          "model": MODEL_NAME}


def _signature_name(body: dict, translator: Translator) -> Optional[str]:
  """The request's signature_name (None: the default); RequestError for
  one the server does not run."""
  signature = body.get("signature_name")
  if signature is not None and signature not in translator.signatures:
    raise RequestError(400, f"signature_name {signature!r} is not one this "
                       "server runs; use one of "
                       f"{', '.join(sorted(translator.signatures))}.")
  return signature


def create_app(translator: Translator, palette: Optional[List[dict]] = None,
               max_upload_mb: float = 8.0, max_pixels: Optional[int] = None,
               request_timeout: float = config_lib.DEFAULT_REQUEST_TIMEOUT
               ) -> flask.Flask:
  """The Flask app around `translator`. Images whose header declares more
  than `max_pixels` pixels (default: the export's own limit) are answered
  413 before anything is decoded; a request waits at most
  `request_timeout` seconds for the model."""
  server = flask.Flask(__name__)
  server.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 2**20)
  # The export refuses larger images itself: the server's limit can only
  # be lower (raise the export's with export --max_pixels).
  exported_limit = translator.metadata.get("max_pixels",
                                           config_lib.DEFAULT_MAX_PIXELS)
  max_pixels = min(max_pixels or exported_limit, exported_limit)
  page_config = _page_config(translator, palette, max_pixels)

  def error(status, message):
    return flask.jsonify({"error": message}), status

  web.install(server, f"The request is larger than --max_upload_mb="
                      f"{max_upload_mb:g} MB.")

  @server.get("/")
  def page():
    return web.page(web.read_page("translate.html").replace(
        "__CONFIG__", web.script_json(page_config)))

  @server.get("/healthz")
  def healthz():
    return flask.jsonify({"status": "ok"})

  @server.get(f"/v1/models/{MODEL_NAME}/metadata")
  def metadata():
    return flask.jsonify({"model_spec": {"name": MODEL_NAME},
                          "metadata": public_metadata(translator.metadata),
                          "palette": palette})

  @server.post(f"/v1/models/{MODEL_NAME}:predict")
  def predict():
    try:
      body = web.json_object(flask.request, INSTANCES)
      signature = _signature_name(body, translator)
      images = decode_instances(body, max_pixels)
      outputs = translator.translate(images, wait=request_timeout,
                                     signature=signature)
    except RequestError as e:
      return error(e.status, str(e))
    except ValueError as e:  # Not an image.
      return error(400, str(e))
    except Busy as e:
      return error(503, str(e))
    return flask.jsonify({"predictions": [
        {"b64": base64.b64encode(png).decode()} for png in outputs]})

  return server


def load_palette_colors(spec: str) -> List[dict]:
  """[[r, g, b], ...] of a palette name or file, for the page's brush."""
  palette = data_lib.load_palette(spec)
  return [{"name": n, "color": [int(v) for v in c]}
          for n, c in zip(palette.class_names, palette.colors)]
