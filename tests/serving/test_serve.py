"""The translation page and its TensorFlow Serving-style REST API."""

import base64
import concurrent.futures
import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import (ENV, Lines, gradient_image, headless_chromium,
                      serving_in_thread, small_config)
from pix2pix_tf.data import demo
from pix2pix_tf.serving import server as server_lib
from pix2pix_tf import training


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """A tiny labels -> photo model whose export carries the demo palette."""
  root = tmp_path_factory.mktemp("serve")
  data_dir = demo.write_dataset(str(root / "data"), 4, 0, 32)
  config = small_config(data_dir, root / "run", max_steps=20,
                        learning_rate=2e-3, batch_size=1,
                        direction="BtoA", inference_mode="eval",
                        label_palette=os.path.join(data_dir, "palette.json"))
  training.train_and_evaluate(config,
                             tf.distribute.OneDeviceStrategy("/cpu:0"))
  return str(root / "run" / "export")


@contextlib.contextmanager
def serving(app):
  """`app` served on a free local port by a thread: its URL."""
  from werkzeug.serving import make_server
  with serving_in_thread(make_server("127.0.0.1", 0, app,
                                     threaded=True)) as httpd:
    yield f"http://127.0.0.1:{httpd.server_port}"


@pytest.fixture(scope="module")
def server(exported):
  translator = server_lib.Translator(exported)
  app = server_lib.create_app(translator, translator.metadata.get("palette"),
                         max_upload_mb=0.05)
  with serving(app) as url:
    yield url, translator


def request(url, body=None, raw=None):
  data = raw if raw is not None else (
      json.dumps(body).encode() if body is not None else None)
  req = urllib.request.Request(url, data=data, headers={
      "Content-Type": "application/json"})
  try:
    with urllib.request.urlopen(req, timeout=60) as reply:
      return reply.status, json.loads(reply.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def png_bytes(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


def predict_body(*images, signature="translate_encoded"):
  return {"signature_name": signature,
          "instances": [{"b64": base64.b64encode(i).decode()}
                        for i in images]}


@pytest.mark.slow
def test_health_and_metadata(server):
  url, _ = server
  assert request(f"{url}/healthz") == (200, {"status": "ok"})
  status, body = request(f"{url}/v1/models/pix2pix/metadata")
  assert status == 200
  own = body["metadata"]["pix2pix_tf"]
  assert own["direction"] == "BtoA"
  assert [p["name"] for p in own["palette"]] == list(demo.PALETTE)


@pytest.mark.slow
def test_fifty_concurrent_requests_get_correct_answers(server, exported):
  url, _ = server
  signature = tf.saved_model.load(exported).signatures["translate_encoded"]
  inputs = [png_bytes(gradient_image(24 + i % 5, 40, offset=i))
            for i in range(50)]

  def call(i):
    return request(f"{url}/v1/models/pix2pix:predict",
                   predict_body(inputs[i]))

  with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
    answers = list(pool.map(call, range(50)))
  for i, (status, body) in enumerate(answers):
    assert status == 200, body
    got = base64.b64decode(body["predictions"][0]["b64"])
    expected = signature(images_bytes=tf.constant([inputs[i]]))[
        "generated_image_bytes"].numpy()[0]
    np.testing.assert_array_equal(tf.io.decode_png(got).numpy(),
                                  tf.io.decode_png(expected).numpy())
    assert tf.io.decode_png(got).shape == (24 + i % 5, 40, 3)


@pytest.mark.slow
def test_the_serve_command_serves_the_export(exported):
  """`python -m pix2pix_tf.serve` as a user runs it: the port it prints
  answers health checks and translates as the export does."""
  process = subprocess.Popen(
      [sys.executable, "-m", "pix2pix_tf.serve", f"--saved_model={exported}",
       "--port=0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True, env=ENV)
  try:
    # Printed once it listens; the output is in the error if it exits first.
    line = Lines(process.stdout).wait_for(" on http://127.0.0.1:", process)
    url = re.fullmatch(r"Serving .* on (http://127\.0\.0\.1:\d+)/\n",
                       line)
    assert url, line
    url = url.group(1)
    assert request(f"{url}/healthz") == (200, {"status": "ok"})
    image = png_bytes(gradient_image(32, 32))
    status, body = request(f"{url}/v1/models/pix2pix:predict",
                           predict_body(image))
    assert status == 200, body
    expected = tf.saved_model.load(exported).signatures["translate_encoded"](
        images_bytes=tf.constant([image]))["generated_image_bytes"][0]
    np.testing.assert_array_equal(
        tf.io.decode_png(base64.b64decode(body["predictions"][0]["b64"])),
        tf.io.decode_png(expected))
  finally:
    process.terminate()
    process.wait(timeout=60)  # Lines reads the output to its end.


def test_canvas_sizes_are_multiples_within_the_pixel_limit():
  metadata = {"image_size": 256, "size_multiple": 256}
  assert server_lib.canvas_sizes(metadata, 4096 ** 2) == [256, 512, 1024]
  assert server_lib.canvas_sizes(metadata, 600 * 600) == [256, 512]
  assert server_lib.canvas_sizes({"image_size": 32, "size_multiple": 32},
                                 300 * 300) == [32, 256]
  assert server_lib.canvas_sizes({"image_size": 128, "size_multiple": 128},
                                 4096 ** 2) == [128, 256, 512, 1024]
  # The training size is always offered (the page starts at it).
  assert server_lib.canvas_sizes({"image_size": 96, "size_multiple": 32},
                                 200 * 200) == [96]


@pytest.mark.slow
def test_the_page_follows_serve_resolution(exported):
  pages = {}
  for resolution in (None, "training"):
    app = server_lib.create_app(server_lib.Translator(exported, resolution))
    pages[resolution] = app.test_client().get("/").get_data(as_text=True)
  assert '"signature": "translate_encoded_native"' in pages[None]
  assert '"signature": "translate_encoded"' in pages["training"]


@pytest.mark.slow
def test_signature_name_picks_the_resolution(server, exported):
  url, translator = server
  assert translator.encoded_signature == "translate_encoded"  # The export's.
  image = png_bytes(gradient_image(64, 96))
  answers = {}
  for name in ("translate_encoded", "translate_encoded_native"):
    status, body = request(f"{url}/v1/models/pix2pix:predict",
                           predict_body(image, signature=name))
    assert status == 200, body
    answers[name] = tf.io.decode_png(base64.b64decode(
        body["predictions"][0]["b64"])).numpy()
    expected = tf.saved_model.load(exported).signatures[name](
        images_bytes=tf.constant([image]))["generated_image_bytes"][0]
    np.testing.assert_array_equal(answers[name],
                                  tf.io.decode_png(expected).numpy())
  # The barely trained model answers near mid-grey at both resolutions, so
  # the two differ by about one level on average: any difference shows the
  # request reached the named signature (each equals its own above).
  assert not np.array_equal(answers["translate_encoded"],
                            answers["translate_encoded_native"])
  status, body = request(f"{url}/v1/models/pix2pix:predict",
                         predict_body(image, signature="nonsense"))
  assert status == 400
  assert "translate_encoded, translate_encoded_native" in body["error"]


@pytest.mark.slow
def test_bad_requests_get_json_errors_and_the_server_keeps_serving(server):
  url, _ = server
  predict = f"{url}/v1/models/pix2pix:predict"
  status, body = request(predict, raw=b"{not json")
  assert status == 400 and "instances" in body["error"]
  status, body = request(predict, predict_body(b"this is not an image"))
  assert status == 400 and "not a JPEG, PNG" in body["error"]
  status, body = request(predict, {"signature_name": "translate_encoded",
                                   "instances": [{"b64": "***"}]})
  assert status == 400 and "base64" in body["error"]
  big = os.urandom(80_000)  # Over --max_upload_mb=0.05 once encoded.
  status, body = request(predict, predict_body(big))
  assert status == 413 and "max_upload_mb" in body["error"]
  status, body = request(predict, predict_body(png_bytes(
      gradient_image(32, 32))))
  assert status == 200 and body["predictions"][0]["b64"]


# The distinct colours on the translation page's canvas, as "r,g,b".
CANVAS_COLORS = """
    const c = document.getElementById('canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    for (let i = 0; i < d.length; i += 4)
      seen.add(d[i] + ',' + d[i + 1] + ',' + d[i + 2]);
    return Array.from(seen);"""
# The size of the image the page shows as its output (0 x 0 before one).
OUTPUT_SIZE = ("const o = document.getElementById('output'); "
               "return [o.naturalWidth, o.naturalHeight]")


@pytest.mark.slow
def test_page_in_a_real_browser(server, tmp_path):
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import WebDriverWait

  url, _ = server
  bad = tmp_path / "not_an_image.png"
  bad.write_bytes(b"just text")
  driver = headless_chromium()
  try:
    wait = WebDriverWait(driver, 30, poll_frequency=0.05)
    driver.get(url + "/")
    swatches = driver.find_elements(By.CSS_SELECTOR, ".swatch")
    assert len(swatches) == len(demo.PALETTE)
    # The palette as a legend: every class's name beside its colour.
    legend = [item.text.strip() for item in driver.find_elements(
        By.CSS_SELECTOR, "#legend li")]
    assert legend == list(demo.PALETTE)
    # A 512x512 canvas, translated at native resolution.
    sizes = [o.get_attribute("value") for o in driver.find_elements(
        By.CSS_SELECTOR, "#size option")]
    assert sizes == ["32", "256", "512", "1024"]
    driver.find_element(By.CSS_SELECTOR, "#size option[value='512']").click()
    assert driver.execute_script(
        "return document.getElementById('canvas').width") == 512
    canvas = driver.find_element(By.ID, "canvas")
    driver.execute_script("document.getElementById('width').value = 6")
    # Draw strokes with two brushes (pointer events).
    for swatch, offsets in ((swatches[2], [(-80, -80), (60, -70), (60, 40)]),
                            (swatches[3], [(-60, 90), (70, 90)])):
      swatch.click()
      actions = ActionChains(driver).move_to_element_with_offset(
          canvas, *offsets[0]).click_and_hold()
      for x, y in offsets[1:]:
        actions = actions.move_to_element_with_offset(canvas, x, y)
      actions.release().perform()
    painted = driver.execute_script(CANVAS_COLORS)
    assert len(painted) >= 3  # Background and two brush colours.
    # Before the first translation the output's frame, as large as the
    # canvas, is empty: no broken-image placeholder.
    shown = ("const o = document.getElementById('output'); return "
             "[getComputedStyle(o).display, o.getBoundingClientRect().width]")
    assert driver.execute_script(shown) == ["none", 0]
    assert driver.find_element(By.ID, "frame").size == canvas.size
    driver.find_element(By.ID, "translate").click()
    wait.until(lambda d: d.execute_script(OUTPUT_SIZE) != [0, 0])
    # Then the image fills the frame.
    assert driver.execute_script(shown) == ["block", canvas.size["width"] - 2]
    width, height, spread = driver.execute_script("""
        const img = document.getElementById('output');
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        let spread = 0;
        for (let k = 0; k < 3; k++) {
          let lo = 255, hi = 0;
          for (let i = k; i < d.length; i += 4) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
          spread = Math.max(spread, hi - lo);
        }
        return [c.width, c.height, spread];""")
    assert (width, height) == (512, 512)
    assert spread > 5  # Not a blank (uniform) image.
    assert driver.find_element(By.ID, "download").get_attribute(
        "href").startswith("data:image/png;base64,")
    driver.save_screenshot(str(tmp_path / "page.png"))
    # An upload is previewed with its aspect kept (a 64x32 label map across
    # the 512x512 canvas, the background above and below), unblended, and
    # answered at its own size.
    classes = np.array(list(demo.PALETTE.values())[1:], np.uint8)
    y, x = np.mgrid[0:32, 0:64]
    wide = tmp_path / "wide.png"
    Image.fromarray(classes[(x // 8 + y // 8) % len(classes)]).save(wide)
    driver.find_element(By.ID, "upload").send_keys(str(wide))
    pixel = ("return Array.from(document.getElementById('canvas')"
             ".getContext('2d').getImageData(arguments[0], arguments[1], 1, 1)"
             ".data.slice(0, 3))")
    sky = list(demo.PALETTE["sky"])
    wait.until(lambda d: d.execute_script(pixel, 256, 256) != sky)
    assert [driver.execute_script(pixel, x, y) for x, y in (
        (5, 5), (256, 120), (256, 392))] == [sky] * 3
    assert driver.execute_script(pixel, 5, 256) != sky  # The whole width.
    assert set(driver.execute_script(CANVAS_COLORS)) == {
        ",".join(map(str, color)) for color in demo.PALETTE.values()}
    driver.find_element(By.ID, "translate").click()
    wait.until(lambda d: d.execute_script(OUTPUT_SIZE)[0] == 64)
    assert driver.execute_script(OUTPUT_SIZE) == [64, 32]
    # A bad upload is refused by the server, and the page says so.
    driver.find_element(By.ID, "upload").send_keys(str(bad))
    driver.find_element(By.ID, "translate").click()
    wait.until(lambda d: "not a JPEG, PNG" in d.find_element(
        By.ID, "error").text)
  finally:
    driver.quit()
  assert Image.open(tmp_path / "page.png").size[0] > 500


class StubTranslator:
  """What create_app asks of a Translator, with no model behind it, so that
  a test of the page chooses each answer: an image's negative, or `failure`
  raised; each call first waits for `gate` when one is set."""

  metadata = {"image_size": 256, "size_multiple": 256,
              "max_pixels": 256 * 256}
  requested_resolution = None
  version = 1
  signature_defs = {}
  signatures = {"translate_encoded_native": None}
  encoded_signature = "translate_encoded_native"

  def __init__(self):
    self.reset()

  def reset(self):
    self.failure = None  # An exception that each call raises.
    self.gate = None  # A threading.Event that each call waits for.
    self.calls = 0

  def input_specs(self, signature):
    return {"images_bytes": tf.TensorSpec([None], tf.string)}

  def run(self, signature, inputs, wait=None):
    self.calls += 1
    if self.gate is not None and not self.gate.wait(60):
      raise server_lib.Busy("The test never opened the gate.")
    if self.failure is not None:
      raise self.failure
    with Image.open(io.BytesIO(inputs["images_bytes"][0])) as image:
      negative = 255 - np.asarray(image.convert("RGB"))
    return {"generated_image_bytes": np.array([png_bytes(negative)], object)}


@pytest.fixture(scope="module")
def stub_server():
  """The app around a StubTranslator (256x256 canvases, at most 256 * 256
  pixels an image), with the demo palette's brushes and a 0.05 MB request
  limit: (url, translator)."""
  translator = StubTranslator()
  palette = [{"name": name, "color": list(color)}
             for name, color in demo.PALETTE.items()]
  app = server_lib.create_app(translator, palette, max_upload_mb=0.05)
  with serving(app) as url:
    yield url, translator


@pytest.fixture(scope="module")
def browser_driver():
  driver = headless_chromium()
  yield driver
  driver.quit()


@pytest.fixture
def stub_page(stub_server, browser_driver):
  """The stub server's translation page, freshly loaded: (driver,
  translator)."""
  url, translator = stub_server
  translator.reset()
  browser_driver.get(url + "/")
  yield browser_driver, translator
  if translator.gate is not None:
    translator.gate.set()  # No server thread waits on after a failure.


TRANSLATE = "document.getElementById('translate').click()"
# What the page shows: an output image, a Download link, the busy
# indicator (each true or false), and its message.
SHOWN = """
    const shown = (id) => {
      const element = document.getElementById(id);
      return element !== null && element.getClientRects().length > 0;
    };
    return {output: shown('output'), download: shown('download'),
            busy: shown('busy'),
            message: document.getElementById('error').textContent};"""
NOTHING_SHOWN = {"output": False, "download": False, "busy": False}
# The colour of the canvas's centre, as [r, g, b].
CENTRE = """
    const c = document.getElementById('canvas');
    return Array.from(c.getContext('2d').getImageData(
        c.width / 2, c.height / 2, 1, 1).data.slice(0, 3));"""


def shown(driver):
  """SHOWN of the driver's page."""
  return driver.execute_script(SHOWN)


def wait_until(driver, condition):
  """`condition(driver)`, once it is true (at most 30 s)."""
  from selenium.webdriver.support.ui import WebDriverWait
  return WebDriverWait(driver, 30, poll_frequency=0.05).until(condition)


def wait_for_message(driver, start=""):
  """The page's message, once it is one starting with `start`."""
  def message(driver):
    text = shown(driver)["message"]
    return text.startswith(start) and text
  return wait_until(driver, message)


def upload(driver, path):
  """Chooses the file at `path` in the page's Upload, and waits for its
  preview (its centre colour) on the canvas."""
  driver.find_element("id", "upload").send_keys(str(path))
  with Image.open(path) as image:
    centre = list(image.convert("RGB").getpixel(
        (image.width // 2, image.height // 2)))
  wait_until(driver, lambda d: d.execute_script(CENTRE) == centre)


def solid_png(path, width, height, name):
  """A width x height label map of the demo palette's class `name`."""
  Image.new("RGB", (width, height), demo.PALETTE[name]).save(path)
  return path


def test_browser_a_failed_translation_leaves_no_output(stub_page):
  driver, translator = stub_page
  for failure, sentence in (
      (server_lib.Refused("an instance is not a JPEG, PNG, BMP, GIF or WebP "
                          "image"), "The server could not translate "),
      (server_lib.Busy("The model was busy for 30 s; try again."),
       "The server is busy "),
      (RuntimeError("a bug"), "The translation failed on the server ")):
    translator.failure = None
    driver.execute_script(TRANSLATE)
    wait_until(driver, lambda d: shown(d)["output"])
    translator.failure = failure
    driver.execute_script(TRANSLATE)
    message = wait_for_message(driver)
    assert shown(driver) == {**NOTHING_SHOWN, "message": message}
    # A sentence for a person leads; the server's own words follow it.
    assert message.startswith(sentence), message
    assert " The server said: “" in message, message
    if not isinstance(failure, RuntimeError):  # Its words are the server's.
      assert message.endswith(f"“{failure}”"), message


def test_browser_a_new_upload_clears_the_output(stub_page, tmp_path):
  driver, translator = stub_page
  driver.execute_script(TRANSLATE)
  wait_until(driver, lambda d: shown(d)["output"])
  upload(driver, solid_png(tmp_path / "wall.png", 64, 64, "wall"))
  assert shown(driver) == {**NOTHING_SHOWN, "message": ""}
  # An answer that arrives after a new upload is for the old input: it is
  # not shown beside the new one.
  translator.gate = threading.Event()
  driver.execute_script(TRANSLATE)
  wait_until(driver, lambda d: shown(d)["busy"])
  upload(driver, solid_png(tmp_path / "door.png", 64, 64, "door"))
  translator.gate.set()
  wait_until(driver, lambda d: not shown(d)["busy"])
  assert shown(driver) == {**NOTHING_SHOWN, "message": ""}


# The page's Image, made to hold each decoded upload's onload until the test
# calls its release(): window.held, in the order the uploads came.
HOLD_PREVIEWS = """
    const RealImage = window.Image;
    window.held = [];
    window.Image = function () {
      const image = new RealImage();
      let onload = null;
      Object.defineProperty(image, 'onload', {
        set(handler) { onload = handler; }, get() { return onload; }});
      image.addEventListener('load', () => { image.loaded = true; });
      image.release = () => onload();
      window.held.push(image);
      return image;
    };"""


def test_browser_a_slow_uploads_preview_gives_way_to_a_later_one(
    stub_page, tmp_path):
  """Two uploads whose files decode in the other order: the later upload's
  preview stays on the canvas."""
  driver, _ = stub_page
  driver.execute_script(HOLD_PREVIEWS)
  for name in ("wall", "door"):
    driver.find_element("id", "upload").send_keys(
        str(solid_png(tmp_path / f"{name}.png", 48, 40, name)))
  wait_until(driver, lambda d: d.execute_script(
      "return window.held.length === 2 && "
      "window.held.every((image) => image.loaded);"))
  driver.execute_script("window.held[1].release(); window.held[0].release();")
  assert driver.execute_script(CENTRE) == list(demo.PALETTE["door"])
  assert shown(driver) == {**NOTHING_SHOWN, "message": ""}


def test_browser_busy_indicator_shows_while_translating(stub_page):
  driver, translator = stub_page
  disabled = "return document.getElementById('translate').disabled"
  for failure in (None, server_lib.Busy("The model was busy for 30 s.")):
    translator.reset()
    translator.failure = failure
    translator.gate = threading.Event()
    driver.execute_script(TRANSLATE)
    wait_until(driver, lambda d: shown(d)["busy"])
    # Translate cannot start a second translation meanwhile.
    assert driver.execute_script(disabled)
    driver.execute_script(TRANSLATE)
    translator.gate.set()
    # Gone with the answer (the previous output stays until then).
    wait_until(driver, lambda d: not shown(d)["busy"])
    page = shown(driver)
    assert (page["output"], bool(page["message"])) == (
        failure is None, failure is not None)
    assert not driver.execute_script(disabled)
    assert translator.calls == 1


def test_browser_an_oversized_upload_is_explained(stub_page, tmp_path):
  driver, translator = stub_page
  upload(driver, solid_png(tmp_path / "big.png", 320, 240, "wall"))
  driver.execute_script(TRANSLATE)
  message = wait_for_message(driver, "This image is ")
  assert message == ("This image is 320x240; the server accepts up to "
                     "256x256 (65,536 pixels). Scale it down and upload it "
                     "again.")
  assert shown(driver) == {**NOTHING_SHOWN, "message": message}
  # The refused upload is spent: Translate again sends the drawing.
  calls = translator.calls
  driver.execute_script(TRANSLATE)
  wait_until(driver, lambda d: shown(d)["output"])
  assert translator.calls == calls + 1
  # Within the pixel limit, but more bytes than the server takes (0.05 MB).
  noise = tmp_path / "noise.png"
  Image.fromarray(np.random.RandomState(0).randint(
      0, 256, (200, 200, 3), np.uint8)).save(noise)
  driver.find_element("id", "upload").send_keys(str(noise))
  driver.execute_script(TRANSLATE)
  message = wait_for_message(driver, "This file is too large ")
  assert " The server said: “" in message  # Its limit in bytes, in its words.
  # Pixels the browser does not see: an animation's frames (5 of 128x128,
  # 81,920 decoded; the browser measures one).
  frames = [Image.fromarray(np.full((128, 128, 3), 50 * i, np.uint8))
            for i in range(5)]
  animation = tmp_path / "animation.gif"
  frames[0].save(animation, save_all=True, append_images=frames[1:])
  driver.find_element("id", "upload").send_keys(str(animation))
  driver.execute_script(TRANSLATE)
  message = wait_for_message(driver, "This image holds more pixels ")
  assert message.startswith(
      "This image holds more pixels than the server accepts (65,536). Scale "
      "it down, or send a still image, and upload it again."), message
  assert "an animation of 5 frames of 128x128" in message


def test_browser_an_unreachable_server_is_explained(stub_server,
                                                    browser_driver):
  url, _ = stub_server
  with socket.socket() as closed:  # A port that nothing listens on.
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
  browser_driver.get(
      f"{url}/?api=http://127.0.0.1:{port}/v1/models/pix2pix")
  browser_driver.execute_script(TRANSLATE)
  message = wait_for_message(browser_driver)
  assert message == ("The server did not answer. Check that it is still "
                     "running and that this computer is online, then press "
                     "Translate again.")
  assert shown(browser_driver) == {**NOTHING_SHOWN, "message": message}
