"""The server's routes: `ENDPOINTS`, the one list of what it answers (the
server installs it, docs/rest_api.md's table is written from it), and
TensorFlow Serving's routing: which servable a REST path names (model,
version or version label) and which signature a predict body runs, with
TensorFlow Serving's statuses and messages."""

from typing import Mapping, NamedTuple, Optional, Protocol, Sequence, Tuple

from werkzeug import routing

from pix2pix_tf.serving import rest

MODEL_NAME = "pix2pix"
DEFAULT_SIGNATURE = "serving_default"

# The paths of a servable, as TensorFlow Serving's: the model (its latest
# version), a version number N, or a version label L (serve
# --version_labels). Flask rules: `model` is a ModelName converter.
MODEL_PATH = "/v1/models/<model:model>"
SERVABLE_PATHS = (MODEL_PATH, MODEL_PATH + "/versions/<int:version>",
                  MODEL_PATH + "/labels/<model:label>")


class Endpoint(NamedTuple):
  """Requests of one kind: `method` on `path` (a Flask rule; for a
  `servable` endpoint, what follows each of SERVABLE_PATHS), answered by
  the server's view function named `view` with what `answer` says (in
  Markdown)."""
  method: str
  path: str
  view: str
  answer: str
  servable: bool = False

  @property
  def rules(self) -> Tuple[str, ...]:
    """The Flask rules of the endpoint."""
    if not self.servable:
      return (self.path,)
    return tuple(servable + self.path for servable in SERVABLE_PATHS)


ENDPOINTS = (
    Endpoint("GET", "/", "page", "the page"),
    Endpoint(
        "POST", ":predict", "predict",
        'row format `{"signature_name": ..., "instances": [...]}` → '
        '`{"predictions": [...]}`, or columnar `{"signature_name": ..., '
        '"inputs": ...}` → `{"outputs": ...}`', servable=True),
    Endpoint(
        "GET", "", "status",
        'the model status: `{"model_version_status": [{"version": "N", '
        '"state": "AVAILABLE", "status": {"error_code": "OK", '
        '"error_message": ""}}]}`', servable=True),
    Endpoint(
        "GET", "/metadata", "metadata",
        '`{"model_spec": ..., "metadata": {"signature_def": '
        '{"signature_def": {...}}, "pix2pix_tf": {...}}}`: every '
        "signature's inputs and outputs (dtype, shape, tensor name) as "
        "TensorFlow Serving lists them, and under `pix2pix_tf` the export's "
        "metadata (without the training machine's paths) and the page's "
        "palette", servable=True),
    Endpoint("GET", "/healthz", "healthz", '`{"status": "ok"}`'),
)


def shown(rule: str) -> str:
  """A Flask rule as the docs write it: /v1/models/pix2pix/versions/N."""
  return rule.replace("<model:model>", MODEL_NAME).replace(
      "<int:version>", "N").replace("<model:label>", "L")


def endpoint_table() -> str:
  """docs/rest_api.md's table of the endpoints, one row per ENDPOINTS entry."""
  rows = ["| endpoint | what |", "|---|---|"]
  for endpoint in ENDPOINTS:
    paths = ", ".join(f"`{endpoint.method} {shown(rule)}`"
                      for rule in endpoint.rules)
    rows.append(f"| {paths} | {endpoint.answer} |")
  return "\n".join(rows) + "\n"


def api_summary() -> str:
  """The REST endpoints in a line, for a request that names none:
  `POST /v1/models/pix2pix[/versions/N|/labels/L]:predict, ...`."""
  servables = "|".join(shown(path)[len(shown(MODEL_PATH)):]
                       for path in SERVABLE_PATHS[1:])
  return ", ".join(
      f"{e.method} {shown(MODEL_PATH)}[{servables}]{e.path}"
      for e in ENDPOINTS if e.servable)


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
