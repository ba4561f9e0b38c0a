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
single model copy is used safely. Errors are JSON with a 4xx status.
"""

import base64
import binascii
import json
import os
import sys
import threading

from absl import app
from absl import flags
from absl import logging

MODEL_NAME = "pix2pix"


class Translator:
  """The SavedModel's translate_encoded signature, one call at a time."""

  def __init__(self, saved_model: str):
    import tensorflow as tf
    self._tf = tf
    loaded = tf.saved_model.load(saved_model)
    self._loaded = loaded
    self._translate = loaded.signatures["translate_encoded"]
    self.metadata = json.loads(loaded.metadata_json.numpy())
    self._lock = threading.Lock()

  def translate(self, encoded_images):
    """Encoded images (bytes) -> encoded PNGs. Raises ValueError for data
    that is not an image."""
    tf = self._tf
    with self._lock:
      try:
        out = self._translate(images_bytes=tf.constant(encoded_images))
      except tf.errors.InvalidArgumentError as e:
        raise ValueError("an instance is not a JPEG, PNG, BMP or GIF image"
                         ) from e
    return [bytes(x) for x in out["generated_image_bytes"].numpy()]


def create_app(translator: Translator, palette=None,
               max_upload_mb: float = 8.0):
  """The Flask app around `translator`."""
  import flask

  server = flask.Flask(__name__)
  server.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 2**20)
  kind = "labels" if palette else "edges"
  page_config = {
      "kind": kind,
      "palette": palette or [],
      "size": translator.metadata.get("image_size", 256),
      "model": MODEL_NAME,
  }

  def error(status, message):
    return flask.jsonify({"error": message}), status

  @server.errorhandler(413)
  def too_large(_):
    return error(413, f"The request is larger than --max_upload_mb="
                      f"{max_upload_mb:g} MB.")

  @server.errorhandler(404)
  def not_found(_):
    return error(404, "No such page.")

  @server.errorhandler(405)
  def not_allowed(_):
    return error(405, "Method not allowed.")

  @server.get("/")
  def page():
    html = PAGE.replace("__CONFIG__", json.dumps(page_config))
    return flask.Response(html, mimetype="text/html")

  @server.get("/healthz")
  def healthz():
    return flask.jsonify({"status": "ok"})

  @server.get(f"/v1/models/{MODEL_NAME}/metadata")
  def metadata():
    return flask.jsonify({"model_spec": {"name": MODEL_NAME},
                          "metadata": translator.metadata,
                          "palette": palette})

  @server.post(f"/v1/models/{MODEL_NAME}:predict")
  def predict():
    body = flask.request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("instances"),
                                                    list):
      return error(400, 'Expected JSON {"instances": [{"b64": "..."}]}.')
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
    try:
      outputs = translator.translate(images)
    except ValueError as e:
      return error(400, str(e))
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  FLAGS = flags.FLAGS
  if not FLAGS.saved_model:
    raise app.UsageError("--saved_model is required.")
  logging.set_verbosity(logging.WARNING)
  if not os.path.exists(os.path.join(FLAGS.saved_model, "saved_model.pb")):
    sys.exit(f"pix2pix_tf.serve: error: {FLAGS.saved_model} is not a "
             "SavedModel. Export one with python -m pix2pix_tf.export.")
  translator = Translator(FLAGS.saved_model)
  try:
    palette = (load_palette_colors(FLAGS.palette) if FLAGS.palette
               else translator.metadata.get("palette"))
  except ValueError as e:
    sys.exit(f"pix2pix_tf.serve: error: {e}")
  from werkzeug.serving import make_server
  server = make_server(FLAGS.host, FLAGS.port,
                       create_app(translator, palette, FLAGS.max_upload_mb),
                       threaded=True)
  print(f"Serving {FLAGS.saved_model} on http://{FLAGS.host}:"
        f"{server.server_port}/", flush=True)
  server.serve_forever()


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
