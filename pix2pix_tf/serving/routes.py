"""TensorFlow Serving's routing: which servable a REST path names (model,
version or version label) and which signature a predict body runs, with
TensorFlow Serving's statuses and messages."""

from typing import Mapping, Optional, Protocol, Sequence

from werkzeug import routing

from pix2pix_tf.serving import rest

MODEL_NAME = "pix2pix"
DEFAULT_SIGNATURE = "serving_default"


class Servable(Protocol):
  """What routing asks of the served model (`server.Translator`)."""
  version: int
  signatures: Mapping[str, object]  # Those predict can run.
  signature_defs: Mapping[str, object]  # All, metadata included.
  encoded_signature: str  # The encoded-image signature for its resolution.


class ModelName(routing.BaseConverter):
  """A model name in a TensorFlow Serving path: no "/" or ":" (so that
  /v1/models/pix2pix:predict names the model pix2pix)."""
  regex = r"[^/:]+"


def check_servable(model: str, version: Optional[int],
                   translator: Servable, status: bool = False,
                   label: Optional[str] = None,
                   labels: Sequence[str] = ()) -> None:
  """RequestError unless the path names this model and, if any, its
  version or one of its version `labels`: 404 for another model or
  version, 400 for an unknown label (TensorFlow Serving's statuses and
  messages; of the status endpoint when `status`)."""
  served = f" (this server serves {MODEL_NAME}, version {translator.version})"
  if model != MODEL_NAME:
    raise rest.RequestError(404, (
        f"Could not find any versions of model {model}" if status else
        f"Servable not found for request: Latest({model})") + served)
  if label is not None and label not in labels:
    raise rest.RequestError(400, (
        f"Unrecognized servable version label: {label} (this server's "
        f"labels: {', '.join(labels) or 'none; serve --version_labels'})"))
  if version is not None and version != translator.version:
    raise rest.RequestError(404, (
        f"Could not find version {version} of model {model}" if status else
        f"Servable not found for request: Specific({model}, {version})") +
        served)


def choose_signature(body: dict, translator: Servable) -> str:
  """The signature a predict body asks for: its signature_name, else
  serving_default, as TensorFlow Serving chooses. RequestError (400) for a
  signature that predict cannot run, and for encoded images sent to
  serving_default (which takes numbers), saying which signature takes
  them."""
  name = body.get("signature_name")
  if name is not None and not isinstance(name, str):
    raise rest.RequestError(400, "'signature_name' must be a string.")
  if not name:  # TensorFlow Serving reads "" as the default too.
    value = rest.first_value(body)
    if isinstance(value, str) or rest.is_b64(value):
      raise rest.RequestError(400, (
          f"{DEFAULT_SIGNATURE}, the signature a request without "
          "'signature_name' runs (in TensorFlow Serving too), takes float32 "
          "images in [-1, 1], not encoded ones: send "
          f'"signature_name": "{translator.encoded_signature}" with '
          '{"b64": ...} images.'))
    return DEFAULT_SIGNATURE
  if name in translator.signatures:
    return name
  if name in translator.signature_defs:
    raise rest.RequestError(400, (
        f"Signature {name!r} takes no inputs, so predict cannot run it "
        "(TensorFlow Serving refuses it too); the export's metadata is at "
        f"GET /v1/models/{MODEL_NAME}/metadata."))
  raise rest.RequestError(400, (
      f"Serving signature name {name!r} not found; use one of "
      f"{', '.join(sorted(translator.signatures))}."))
