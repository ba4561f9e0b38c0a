r"""Serves an exported generator behind an interactive drawing page.

    python -m pix2pix_tf.serve --saved_model=runs/facades/export
    # then open http://127.0.0.1:8000/

GET /                                 the page: draw a label map (palette brush)
                                      or edges (pen), or upload an image; Translate
POST /v1/models/pix2pix:predict       TensorFlow Serving's REST API:
                                      {"instances": [{"b64": ...}]} ->
                                      {"predictions": [{"b64": ...}]}
GET /v1/models/pix2pix/metadata       the model's metadata
GET /healthz                          "ok" once the model is loaded

The page can talk to a TensorFlow Serving deployment of the same export
instead: open it with ?api=http://serving-host:8501/v1/models/pix2pix.
Requests are served concurrently; model calls are serialised by a lock, so a
single model copy is used safely. Errors are JSON with a 4xx or 5xx status.
Limits: bodies over --max_upload_mb (413), images whose header declares more
than --max_pixels pixels (413, before decoding), a wait for the model over
--request_timeout (503); pages are sent with a Content-Security-Policy that
runs no script but their own.
"""

import base64
import binascii
import io
import json
import sys
import threading

from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import config as config_lib
from pix2pix_tf import web

MODEL_NAME = "pix2pix"
INSTANCES = 'JSON {"instances": [{"b64": "..."}]}'


# Flags whose values are paths on the training machine: the metadata
# endpoint leaves them out, so that a server does not tell its visitors
# where its owner keeps data and runs.
PATH_FLAGS = frozenset({"data_dir", "model_dir", "cache", "label_palette",
                        "segmenter", "inception_weights", "labels"})


class Busy(RuntimeError):
  """The model was busy for longer than the request may wait."""


class Translator:
  """The SavedModel's translate_encoded signature, one call at a time."""

  def __init__(self, saved_model: str):
    import tensorflow as tf
    from pix2pix_tf import export
    self._tf = tf
    loaded = export.load(saved_model)  # ExportError: one sentence.
    self._loaded = loaded
    self._translate = loaded.signatures["translate_encoded"]
    self.metadata = json.loads(loaded.metadata_json.numpy())
    self._lock = threading.Lock()

  def translate(self, encoded_images, wait: float = None):
    """Encoded images (bytes) -> encoded PNGs. Raises ValueError for data
    that is not an image, Busy when the model stays taken for `wait`
    seconds."""
    tf = self._tf
    if not self._lock.acquire(timeout=-1 if wait is None else wait):
      raise Busy(f"The model was busy for {wait:g} s; try again.")
    try:
      out = self._translate(images_bytes=tf.constant(encoded_images))
    except tf.errors.InvalidArgumentError as e:
      raise ValueError("an instance is not a JPEG, PNG, BMP, GIF or WebP "
                       "image") from e
    finally:
      self._lock.release()
    return [bytes(x) for x in out["generated_image_bytes"].numpy()]


def public_metadata(metadata):
  """The export's metadata without the training machine's paths."""
  public = dict(metadata)
  public["flags"] = {k: v for k, v in metadata.get("flags", {}).items()
                     if k not in PATH_FLAGS}
  return public


def declared_pixels(encoded: bytes):
  """width x height from an image's header (nothing decoded), or None for
  data that is no image Pillow knows."""
  from PIL import Image
  try:
    with Image.open(io.BytesIO(encoded)) as image:
      width, height = image.size
  except Image.DecompressionBombError:
    return float("inf")
  except Exception:  # pylint: disable=broad-except
    return None  # Left to the SavedModel, which answers "not an image".
  return width * height


def create_app(translator: Translator, palette=None,
               max_upload_mb: float = 8.0, max_pixels: int = None,
               request_timeout: float = web.DEFAULT_REQUEST_TIMEOUT):
  """The Flask app around `translator`. Images whose header declares more
  than `max_pixels` pixels (default: the export's own limit) are answered
  413 before anything is decoded; a request waits at most
  `request_timeout` seconds for the model."""
  import flask

  server = flask.Flask(__name__)
  server.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 2**20)
  # The export refuses larger images itself: the server's limit can only
  # be lower (raise the export's with export --max_pixels).
  exported_limit = translator.metadata.get("max_pixels",
                                           config_lib.DEFAULT_MAX_PIXELS)
  max_pixels = min(max_pixels or exported_limit, exported_limit)
  kind = "labels" if palette else "edges"
  page_config = {
      "kind": kind,
      "palette": palette or [],
      "size": translator.metadata.get("image_size", 256),
      "model": MODEL_NAME,
  }

  def error(status, message):
    return flask.jsonify({"error": message}), status

  web.install(server, f"The request is larger than --max_upload_mb="
                      f"{max_upload_mb:g} MB.")

  @server.get("/")
  def page():
    return web.page(flask, PAGE.replace("__CONFIG__",
                                        web.script_json(page_config)))

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
    body = web.json_object(flask.request, INSTANCES)
    if not isinstance(body.get("instances"), list):
      return error(400, f"Expected {INSTANCES}.")
    if not body["instances"]:
      return error(400, "No instances given.")
    images = []
    for i, instance in enumerate(body["instances"]):
      if isinstance(instance, dict) and "images_bytes" in instance:
        instance = instance["images_bytes"]
      if not isinstance(instance, dict) or not isinstance(
          instance.get("b64"), str):
        return error(400, f'instances[{i}] is not {{"b64": "..."}}.')
      try:
        images.append(base64.b64decode(instance["b64"], validate=True))
      except (binascii.Error, ValueError):
        return error(400, f"instances[{i}] is not valid base64.")
      pixels = declared_pixels(images[-1])
      if pixels is not None and pixels > max_pixels:
        return error(413, f"instances[{i}] declares "
                          f"{'too many' if pixels == float('inf') else pixels}"
                          f" pixels, more than --max_pixels={max_pixels}.")
    try:
      outputs = translator.translate(images, wait=request_timeout)
    except ValueError as e:
      return error(400, str(e))
    except Busy as e:
      return error(503, str(e))
    return flask.jsonify({"predictions": [
        {"b64": base64.b64encode(png).decode()} for png in outputs]})

  return server


def load_palette_colors(spec):
  """[[r, g, b], ...] of a palette name or file, for the page's brush."""
  from pix2pix_tf import segmentation
  palette = segmentation.load_palette(spec)
  return [{"name": n, "color": [int(v) for v in c]}
          for n, c in zip(palette.class_names, palette.colors)]


PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>pix2pix_tf</title>
<style>
 body { font: 15px sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; }
 .row { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
 canvas, #output { width: 384px; height: 384px; border: 1px solid #999;
                   image-rendering: pixelated; background: #fff; touch-action: none; }
 #tools button, #tools label { margin: 2px; }
 .swatch { display: inline-block; width: 22px; height: 22px; border: 2px solid #fff;
           vertical-align: middle; cursor: pointer; }
 .swatch.active { border-color: #000; }
 #error { color: #b00; min-height: 1.3em; }
 h2 { font-size: 16px; margin: 0 0 6px; }
</style></head>
<body>
<h1>pix2pix_tf</h1>
<div id="tools">
  <span id="brushes"></span>
  <button id="pen">Pen</button>
  <button id="eraser">Eraser</button>
  <label>size <input id="width" type="range" min="1" max="40" value="4"></label>
  <button id="undo">Undo</button>
  <button id="clear">Clear</button>
  <label>Upload <input id="upload" type="file" accept="image/*"></label>
  <button id="translate"><b>Translate</b></button>
  <a id="download" download="generated.png" href="#" hidden>Download output</a>
</div>
<p id="error" role="alert"></p>
<div class="row">
  <div><h2>Input</h2><canvas id="canvas"></canvas></div>
  <div><h2>Output</h2><img id="output" alt="generated image"></div>
</div>
<script>
const CONFIG = __CONFIG__;
const api = new URLSearchParams(location.search).get("api") ||
    `/v1/models/${CONFIG.model}`;
const canvas = document.getElementById("canvas");
canvas.width = canvas.height = CONFIG.size;
// Brush sizes in the model's pixels: a 256 model starts at 4, a 64 one at 1.
document.getElementById("width").value = Math.max(1, Math.round(CONFIG.size / 64));
const ctx = canvas.getContext("2d");
const background = CONFIG.kind === "labels" ? CONFIG.palette[0].color : [255, 255, 255];
const rgb = (c) => `rgb(${c[0]},${c[1]},${c[2]})`;
let color = CONFIG.kind === "labels" ? (CONFIG.palette[1] || CONFIG.palette[0]).color : [0, 0, 0];
let erasing = false, drawing = false, last = null;
const history = [];

function clearCanvas() {
  ctx.fillStyle = rgb(background);
  ctx.fillRect(0, 0, canvas.width, canvas.height);
}
clearCanvas();

if (CONFIG.kind === "labels") {
  const brushes = document.getElementById("brushes");
  CONFIG.palette.forEach((entry, i) => {
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.title = entry.name;
    swatch.dataset.index = i;
    swatch.style.background = rgb(entry.color);
    swatch.onclick = () => {
      color = entry.color; erasing = false;
      document.querySelectorAll(".swatch").forEach((s) => s.classList.remove("active"));
      swatch.classList.add("active");
    };
    brushes.appendChild(swatch);
  });
  document.getElementById("pen").hidden = true;
}
document.getElementById("pen").onclick = () => { erasing = false; color = [0, 0, 0]; };
document.getElementById("eraser").onclick = () => { erasing = true; };

function point(event) {
  const r = canvas.getBoundingClientRect();
  return [(event.clientX - r.left) * canvas.width / r.width,
          (event.clientY - r.top) * canvas.height / r.height];
}
canvas.addEventListener("pointerdown", (e) => {
  history.push(ctx.getImageData(0, 0, canvas.width, canvas.height));
  if (history.length > 50) history.shift();
  drawing = true; last = point(e); stroke(last);
  canvas.setPointerCapture(e.pointerId);
});
canvas.addEventListener("pointermove", (e) => { if (drawing) stroke(point(e)); });
canvas.addEventListener("pointerup", () => { drawing = false; });
function stroke(p) {
  ctx.strokeStyle = rgb(erasing ? background : color);
  ctx.lineWidth = Number(document.getElementById("width").value) * (erasing ? 3 : 1);
  ctx.lineCap = "round";
  // Label maps need pure colours: no antialiasing blends between classes.
  ctx.imageSmoothingEnabled = false;
  ctx.beginPath(); ctx.moveTo(last[0], last[1]); ctx.lineTo(p[0], p[1]); ctx.stroke();
  last = p;
}
document.getElementById("undo").onclick = () => {
  if (history.length) ctx.putImageData(history.pop(), 0, 0);
};
document.getElementById("clear").onclick = () => {
  history.push(ctx.getImageData(0, 0, canvas.width, canvas.height)); clearCanvas();
};
document.getElementById("upload").onchange = (e) => {
  const file = e.target.files[0];
  if (!file) return;
  const image = new Image();
  image.onload = () => {
    history.push(ctx.getImageData(0, 0, canvas.width, canvas.height));
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    showError("");
  };
  image.onerror = () => showError(`${file.name} is not an image this browser can read.`);
  image.src = URL.createObjectURL(file);
  // Send the file as it is, so that the server judges it too.
  uploaded = file;
};
let uploaded = null;

function showError(message) { document.getElementById("error").textContent = message; }

async function translate(bytesBase64) {
  const reply = await fetch(`${api}:predict`, {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({signature_name: "translate_encoded",
                          instances: [{b64: bytesBase64}]})});
  const body = await reply.json().catch(() => ({error: `HTTP ${reply.status}`}));
  if (!reply.ok) throw new Error(body.error || `HTTP ${reply.status}`);
  return body.predictions[0].b64 || body.predictions[0];
}

document.getElementById("translate").onclick = async () => {
  showError("");
  try {
    let b64;
    if (uploaded) {
      const buffer = new Uint8Array(await uploaded.arrayBuffer());
      let text = "";
      buffer.forEach((b) => { text += String.fromCharCode(b); });
      b64 = btoa(text);
      uploaded = null;
    } else {
      b64 = canvas.toDataURL("image/png").split(",")[1];
    }
    const png = await translate(b64);
    const url = `data:image/png;base64,${png}`;
    document.getElementById("output").src = url;
    const link = document.getElementById("download");
    link.href = url; link.hidden = false;
  } catch (err) {
    showError(err.message);
  }
};
</script>
</body></html>
"""


def define_flags():
  """Defines this command's flags (at start-up, like export's)."""
  flags.DEFINE_string("saved_model", None, "An exported SavedModel folder.")
  flags.DEFINE_string("host", "127.0.0.1", "Address to serve on.")
  flags.DEFINE_integer("port", 8000, "Port to serve on.")
  flags.DEFINE_string("palette", None,
                      "A palette (cityscapes, facades or a JSON file) for a "
                      "label-map model's brush; default: the model's "
                      "--label_palette, else an edges pen.")
  flags.DEFINE_float("max_upload_mb", 8.0, "Largest request body accepted.")
  flags.DEFINE_integer("max_pixels", None,
                       "Images whose header declares more pixels (width x "
                       "height) are answered 413 before decoding; default: "
                       "the export's limit (its --max_pixels), which is also "
                       "the most this can be.", lower_bound=1)
  flags.DEFINE_float("request_timeout", web.DEFAULT_REQUEST_TIMEOUT,
                     "Seconds a connection may stay silent, and a request "
                     "may wait for the model (then 503).", lower_bound=0.1)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  FLAGS = flags.FLAGS
  if not FLAGS.saved_model:
    raise app.UsageError("--saved_model is required.")
  logging.set_verbosity(logging.WARNING)
  from pix2pix_tf import export
  try:
    translator = Translator(FLAGS.saved_model)
  except export.ExportError as e:
    sys.exit(f"pix2pix_tf.serve: error: {e}")
  try:
    palette = (load_palette_colors(FLAGS.palette) if FLAGS.palette
               else translator.metadata.get("palette"))
    server = web.make_server(
        FLAGS.host, FLAGS.port,
        create_app(translator, palette, FLAGS.max_upload_mb,
                   FLAGS.max_pixels, FLAGS.request_timeout),
        FLAGS.request_timeout)
  except ValueError as e:
    sys.exit(f"pix2pix_tf.serve: error: {e}")
  print(f"Serving {FLAGS.saved_model} on http://{FLAGS.host}:"
        f"{server.server_port}/", flush=True)
  server.serve_forever()


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
