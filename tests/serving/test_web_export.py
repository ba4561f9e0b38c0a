"""export --format=web: a folder with the drawing page, the ONNX model and
ONNX Runtime Web, which translates in the browser with no model server."""

import base64
import contextlib
import functools
import hashlib
import importlib
import http.server
import io
import json
import os
import pathlib
import re
import tarfile
import urllib.parse

import numpy as np
import pytest
from PIL import Image

import browser
from conftest import (browser_needed, chromium_needed, headless_chromium,
                      load_tool, run_command, serving_in_thread, small_config,
                      visible_generator)
from pix2pix_tf import outputs
from pix2pix_tf import serving
from pix2pix_tf.data import demo
from pix2pix_tf.serving import portable
from pix2pix_tf.serving import tiling
from pix2pix_tf.serving import web_export


def fake_runtime(folder, name="onnxruntime-web", missing=(),
                 version=web_export.RUNTIME_VERSION):
  """A small package laid out as onnxruntime-web's (package.json and the
  dist/ files the page loads), as an npm archive: its path."""
  path = os.path.join(folder, f"{name}.tgz")
  with tarfile.open(path, "w:gz") as archive:
    entries = {"package/package.json": json.dumps(
        {"name": name, "version": version}).encode()}
    entries.update({f"package/dist/{f}": f"// {f}\n".encode()
                    for f in web_export.RUNTIME_FILES if f not in missing})
    for entry, data in entries.items():
      info = tarfile.TarInfo(entry)
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))
  return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  """A visible 32x32 labels -> photo generator with the demo palette, and
  its eval-mode SavedModel."""
  root = tmp_path_factory.mktemp("web")
  data_dir = demo.write_dataset(str(root / "data"), 2, 0, 32)
  config = small_config(data_dir, root / "run", direction="BtoA",
                        inference_mode="eval",
                        label_palette=os.path.join(data_dir, "palette.json"))
  generator = visible_generator(config)
  saved_model = serving.save(generator, config, 7, str(root / "export"),
                             "eval")
  return config, generator, saved_model, root


@pytest.fixture
def runtime(tmp_path):
  return fake_runtime(str(tmp_path))


def test_the_runtime_is_read_from_an_archive_or_its_folder(tmp_path):
  archive = fake_runtime(str(tmp_path))
  files, record = web_export.read_runtime(archive)
  assert sorted(files) == sorted(web_export.RUNTIME_FILES)
  assert files["ort.wasm.min.mjs"] == b"// ort.wasm.min.mjs\n"
  # The archive's name: the record is published with the site.
  assert record == {"name": "onnxruntime-web", "version": "1.31.1",
                    "source": "onnxruntime-web.tgz",
                    "archive_sha256": outputs.sha256(archive)}
  with tarfile.open(archive) as unpacked:
    unpacked.extractall(tmp_path / "node_modules", filter="data")
  folder = str(tmp_path / "node_modules" / "package")
  folder_files, folder_record = web_export.read_runtime(folder)
  assert folder_files == files
  assert (folder_record["source"], folder_record["archive_sha256"]) == (
      "package", None)


@pytest.mark.parametrize("kind,message", [
    ("other package", "is 'left-pad' 1.31.1, not onnxruntime-web 1.31.1"),
    ("other version", "is 'onnxruntime-web' 1.22.0, not onnxruntime-web "
     "1.31.1"),
    ("a file missing", "is not a usable onnxruntime-web package"),
    ("not an archive", "is not a usable onnxruntime-web package"),
    ("absent", "is not a usable onnxruntime-web package")])
def test_a_runtime_that_is_not_onnxruntime_web_is_refused(tmp_path, kind,
                                                          message):
  path = {"other package": lambda: fake_runtime(str(tmp_path), "left-pad"),
          # Named first, though it lacks this version's files.
          "other version": lambda: fake_runtime(
              str(tmp_path), version="1.22.0",
              missing=("ort-wasm-simd-threaded.asyncify.mjs",)),
          "a file missing": lambda: fake_runtime(
              str(tmp_path), missing=("ort-wasm-simd-threaded.wasm",)),
          "not an archive": lambda: str(tmp_path / "notes.txt"),
          "absent": lambda: str(tmp_path / "nothing.tgz")}[kind]()
  if kind == "not an archive":
    (tmp_path / "notes.txt").write_text("not gzip")
  with pytest.raises(serving.ExportError) as raised:
    web_export.read_runtime(path)
  assert f"--web_runtime={path} {message}" in str(raised.value)
  assert "npm pack onnxruntime-web" in str(raised.value)


@contextlib.contextmanager
def file_server(folder):
  """`folder` served over HTTP on 127.0.0.1 by a thread: (its URL, the
  paths requested)."""
  requested = []

  class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
      requested.append(urllib.parse.unquote(self.path))

  with serving_in_thread(http.server.ThreadingHTTPServer(
      ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
  ) as server:
    yield f"http://127.0.0.1:{server.server_port}", requested


def test_the_runtime_downloads_once_and_is_checked(tmp_path):
  served = tmp_path / "served"
  served.mkdir()
  archive = fake_runtime(str(served))
  digest = outputs.sha256(archive)
  cache = tmp_path / "cache"
  with file_server(served) as (url, requested):
    origin = f"{url}/onnxruntime-web.tgz"
    path = web_export.fetch_runtime(str(cache), origin, digest)
    assert open(path, "rb").read() == open(archive, "rb").read()
    assert web_export.fetch_runtime(str(cache), origin, digest) == path
    assert requested == ["/onnxruntime-web.tgz"]  # Cached, then.
    os.remove(path)
    with pytest.raises(serving.ExportError) as raised:
      web_export.fetch_runtime(str(cache), origin, "0" * 64)
    assert (f"The download of {origin} does not have the sha256 "
            "pix2pix_tf records") in str(raised.value)
    assert os.listdir(cache) == []  # Nothing of it is left.
  with pytest.raises(serving.ExportError,
                     match=f"Could not download {origin} .*give the archive "
                     "of `npm pack onnxruntime-web@1.31.1`"):
    web_export.fetch_runtime(str(cache), origin, digest)
  assert os.listdir(cache) == []


def inline_script_hash(html):
  script = re.search(r"<script>(.*?)</script>", html, re.S).group(1)
  return base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


def test_the_site_holds_the_page_the_model_and_the_runtime(model, runtime,
                                                           tmp_path):
  config, generator, _, _ = model
  site = tmp_path / "site"
  record = web_export.write_site(generator, config, str(site), "eval",
                                 runtime=web_export.load_runtime(runtime),
                                 step=7)
  assert record["path"] == str(site)
  assert sorted(os.listdir(site)) == ["export.json", "in_browser.mjs",
                                      "index.html", "isolation.js",
                                      "model.onnx", "ort"]
  assert sorted(os.listdir(site / "ort")) == sorted(web_export.RUNTIME_FILES)
  written = json.loads((site / "export.json").read_text())
  assert written == {k: v for k, v in record.items() if k != "path"}
  assert written["runtime"] == {
      "name": "onnxruntime-web", "version": "1.31.1",
      "source": "onnxruntime-web.tgz",
      "archive_sha256": outputs.sha256(runtime)}
  assert written["files"] == {
      os.path.relpath(os.path.join(parent, name), site):
          outputs.sha256(os.path.join(parent, name))
      for parent, _, names in os.walk(site) for name in names
      if name != "export.json"}
  assert written["model"]["precision"] == "fp16"  # The default.
  assert 0 < written["model"]["max_difference"] <= 2e-2
  assert written["model"]["metadata"]["weights"] == "float16"
  # Published with the site: no path of the machine that trained it (the
  # run's and the data's folders are under `root`), in any file.
  _, _, _, root = model
  for parent, _, names in os.walk(site):
    for name in names:
      with open(os.path.join(parent, name), "rb") as file:
        assert str(root).encode() not in file.read(), name
  import onnx
  props = {p.key: p.value for p in onnx.load(str(site / "model.onnx"))
           .metadata_props}
  assert "data_dir" not in json.loads(props["flags"])
  assert json.loads(props["max_pixels"]) == 1024 * 1024
  html = (site / "index.html").read_text()
  # Only the folder's own files: the page's one script by its hash.
  policy = re.search(r'http-equiv="Content-Security-Policy" content="'
                     r'([^"]*)"', html).group(1)
  assert policy.startswith("default-src 'self'; script-src 'self' "
                           f"'sha256-{inline_script_hash(html)}' "
                           "'wasm-unsafe-eval';")
  assert "connect-src 'self'" in policy
  page = json.loads(re.search(r"const CONFIG = (.*);", html).group(1))
  assert page["browser"] == {
      "model": "model.onnx", "runtime": "ort/", "isolation": "isolation.js",
      "version": "1.31.1",
      "input": portable.INPUT, "output": portable.OUTPUT,
      "multiple": 2 ** config.model.generator_depth,
      # Native resolution, as serve's page, in tiles of the training crop
      # on request.
      "resolution": "native", "image_size": 32, "load_size": 36,
      "preprocess": "resize_and_crop",
      "tiles": {"tile": 32, "overlap": 16, "max_pixels": 4096 * 4096}}
  assert written["model"]["metadata"]["resolution"] == "native"
  assert page["kind"] == "labels"
  assert [entry["name"] for entry in page["palette"]] == list(demo.PALETTE)
  # What two WebAssembly threads translate in seconds, not the server's
  # 4096x4096.
  assert page["max_pixels"] == 1024 * 1024
  assert page["sizes"] == [32, 256, 512, 1024]


def page_of(site):
  """The CONFIG of the page in the folder `site`."""
  return json.loads(re.search(r"const CONFIG = (.*);",
                              (site / "index.html").read_text()).group(1))


def test_the_page_translates_where_and_in_the_tiles_it_is_told(
    model, runtime, tmp_path):
  config, generator, _, _ = model
  write = functools.partial(web_export.write_site, generator, config,
                            runtime=web_export.load_runtime(runtime))
  def options(**given):
    return web_export.PageOptions(**given)

  write(str(tmp_path / "training"), "eval",
        page=options(resolution="training"))
  page = page_of(tmp_path / "training")["browser"]
  assert (page["resolution"], page["tiles"]) == ("training", None)
  write(str(tmp_path / "tiles"), "eval", page=options(tile=64, overlap=10))
  assert page_of(tmp_path / "tiles")["browser"]["tiles"] == {
      "tile": 64, "overlap": 10, "max_pixels": 4096 * 4096}
  # A whole-image limit of its own: the canvases within it, and the
  # tiles' limit at least as large.
  write(str(tmp_path / "limit"), "eval",
        page=options(max_pixels=5000 * 5000))
  limited = page_of(tmp_path / "limit")
  assert limited["max_pixels"] == 5000 * 5000
  assert limited["browser"]["tiles"]["max_pixels"] == 5000 * 5000
  for given, message in (
      (dict(tile=48), "--tile=48 is not a multiple of 32"),
      (dict(tile=64, overlap=40), "--overlap=40 must be from 2 to half of "
       "--tile"),
      # The default tile is the training crop, 32: named, not --tile.
      (dict(overlap=20), "--overlap=20 must be from 2 to half of the "
       "page's default tile, the training crop of 32 (16)"),
      (dict(max_pixels=1000), "--max_pixels=1000 is less than the 32x32 "
       "canvas the page offers at the training size: give at least 1024."),
      (dict(tile=64, max_pixels=4000), "--tile=64 makes tiles of 4,096 "
       "pixels, more than the page translates whole (--max_pixels=4000)"),
      (dict(resolution="training", tile=64), "--tile and --overlap are for "
       "the page's native resolution")):
    with pytest.raises(ValueError, match=re.escape(message)):
      write(str(tmp_path / "refused"), "eval", page=options(**given))
    assert not (tmp_path / "refused").exists()


def test_a_page_opened_as_a_file_says_to_serve_its_folder(model, runtime,
                                                          tmp_path):
  from selenium.webdriver.support.ui import WebDriverWait
  config, generator, _, _ = model
  site = tmp_path / "site"
  web_export.write_site(generator, config, str(site), "eval",
                        runtime=web_export.load_runtime(runtime))
  driver = headless_chromium()
  try:
    driver.get((site / "index.html").as_uri())
    status = "return document.getElementById('runtime').textContent"
    WebDriverWait(driver, 30, poll_frequency=0.05).until(
        lambda d: "did not load" in d.execute_script(status))
    assert driver.execute_script(status) == (
        "The model did not load in this browser: a page opened as a file "
        "cannot load its model: serve its folder, e.g. `python -m "
        "http.server --directory FOLDER`, and open http://127.0.0.1:8000/.")
  finally:
    driver.quit()


def real_site(model, tmp_path):
  """`model`'s web export (eval inference) with the real ONNX Runtime Web,
  in tmp_path/site."""
  config, generator, _, _ = model
  site = tmp_path / "site"
  web_export.write_site(generator, config, str(site), "eval",
                        runtime=web_export.load_runtime(real_runtime()))
  return site


def test_a_page_its_worker_cannot_isolate_reloads_once(model, tmp_path):
  """Where the service worker registers but its headers do not make the
  page cross-origin isolated (here: a worker that adds none), the page
  reloads once, then runs WebAssembly on one thread: no reload loop."""
  site = real_site(model, tmp_path)
  (site / "isolation.js").write_text(
      'self.addEventListener("install", () => self.skipWaiting());\n'
      'self.addEventListener("activate", (e) => '
      'e.waitUntil(self.clients.claim()));\n')
  driver = headless_chromium()
  with file_server(site) as (url, requested):
    try:
      browser.open_page(driver, url + "/")
      assert not driver.execute_script("return self.crossOriginIsolated")
      assert driver.execute_script(
          "return document.getElementById('runtime').dataset.threads") == "1"
      assert driver.execute_script(
          "return performance.getEntriesByType('navigation')[0].type"
      ) == "reload"
    finally:
      driver.quit()
  assert requested.count("/") == 2  # The first load, and one reload.


def test_the_pages_workers_run_under_the_folders_policy(model, tmp_path):
  """No page's policy reaches a worker loaded from a URL: the service worker
  gives the folder's worker scripts a policy header (here a probe's, which
  tries eval: allowed to a worker without one)."""
  site = real_site(model, tmp_path)
  (site / "probe.js").write_text(
      'let verdict = "eval ran";\n'
      'try { eval("1"); } catch (error) { verdict = error.name; }\n'
      'postMessage(verdict);\n')
  driver = headless_chromium()
  with file_server(site) as (url, _):
    try:
      browser.open_page(driver, url + "/")
      assert driver.execute_script("return self.crossOriginIsolated")
      assert driver.execute_async_script(
          "const done = arguments[0], worker = new Worker('probe.js');"
          "worker.onmessage = (event) => done(event.data);"
          "worker.onerror = (event) => done('failed: ' + event.message);"
      ) == "EvalError"
    finally:
      driver.quit()


def test_a_web_export_replaces_only_its_own_folder(model, runtime, tmp_path):
  config, generator, _, _ = model
  site = tmp_path / "site"
  site.mkdir()
  (site / "index.html").write_text("the user's own page")
  with pytest.raises(outputs.OutputError, match="--export_dir"):
    web_export.write_site(generator, config, str(site), "eval",
                          runtime=web_export.load_runtime(runtime))
  assert os.listdir(site) == ["index.html"]
  assert (site / "index.html").read_text() == "the user's own page"
  ours = tmp_path / "ours"
  for precision in ("float32", "fp16"):
    record = web_export.write_site(generator, config, str(ours), "eval",
                                   precision,
                                   web_export.load_runtime(runtime))
    assert record["model"]["precision"] == precision
  assert json.loads((ours / "export.json").read_text())["model"][
      "precision"] == "fp16"
  # An export the user has since added to, or edited, is theirs.
  for change in ("add", "edit"):
    if change == "add":
      (ours / "CNAME").write_text("pix2pix.example.org")
    else:
      (ours / "index.html").write_text("edited")
    before = {f: (ours / f).read_bytes() for f in os.listdir(ours)
              if (ours / f).is_file()}
    with pytest.raises(outputs.OutputError, match="--export_dir"):
      web_export.write_site(generator, config, str(ours), "eval",
                            runtime=web_export.load_runtime(runtime))
    assert {f: (ours / f).read_bytes() for f in os.listdir(ours)
            if (ours / f).is_file()} == before
    (ours / "CNAME").unlink(missing_ok=True)


def test_a_generator_that_is_not_rgb_to_rgb_is_refused(model, runtime,
                                                       tmp_path):
  config, _, _, _ = model
  gray = config.replace(input_channels=1, output_channels=3)
  with pytest.raises(serving.ExportError,
                     match="takes 1 channels and gives 3: export it "
                     "--format=onnx instead"):
    web_export.write_site(None, gray, str(tmp_path / "site"), "eval",
                          runtime=web_export.load_runtime(runtime))
  assert not (tmp_path / "site").exists()


@pytest.mark.slow
def test_the_export_command_writes_a_site(trained_run, tmp_path):
  runtime = fake_runtime(str(tmp_path))
  model_dir = trained_run.outputs.model_dir
  out = run_command("export", f"--model_dir={model_dir}", "--format=web",
                    f"--web_runtime={runtime}")
  assert out.returncode == 0, out.stderr[-2000:]
  site = os.path.join(model_dir, "web")
  assert out.stdout.startswith(f"Exported to {site}: index.html, model.onnx")
  assert "fp16 weights" in out.stdout
  # The run's paper-mode generator has dropout: checked without it.
  assert "compared without dropout" in out.stdout
  assert f"python -m http.server --directory {site}" in out.stdout
  assert json.load(open(os.path.join(site, "export.json")))["runtime"][
      "archive_sha256"] == outputs.sha256(runtime)
  for flag in (f"--web_runtime={runtime}", "--tile=64", "--overlap=8"):
    out = run_command("export", f"--model_dir={model_dir}", "--format=onnx",
                      flag)
    assert out.returncode != 0
    assert f"{flag.split('=')[0]} is for --format=web." in out.stderr
  assert page_of(pathlib.Path(site))["max_pixels"] == 1024 * 1024
  # Its tiles and limit, as asked; the folder, an export of its own,
  # replaced.
  out = run_command("export", f"--model_dir={model_dir}", "--format=web",
                    f"--web_runtime={runtime}", "--tile=64", "--overlap=8",
                    "--max_pixels=300000", "--resolution=native")
  assert out.returncode == 0, out.stderr[-2000:]
  assert json.load(open(os.path.join(site, "export.json")))["model"][
      "metadata"]["resolution"] == "native"
  page = page_of(pathlib.Path(site))
  assert page["browser"]["tiles"] == {
      "tile": 64, "overlap": 8, "max_pixels": 4096 * 4096}
  assert page["max_pixels"] == 300000


def real_runtime():
  """onnxruntime-web's npm archive, which `make test` fetches and names in
  PIX2PIX_WEB_RUNTIME; without it the browser test is skipped (a failure
  where PIX2PIX_REQUIRE_BROWSER=1, as in CI)."""
  path = os.environ.get("PIX2PIX_WEB_RUNTIME", "")
  if os.path.isfile(path):
    return path
  browser_needed("The browser test of --format=web needs onnxruntime-web's "
                 "npm archive in PIX2PIX_WEB_RUNTIME (make test fetches it).")


def test_the_runtime_files_are_those_its_bundles_load():
  """Each module the page imports names the binary it loads: the files
  copied are exactly those, in the real archive."""
  files, _ = web_export.read_runtime(real_runtime())
  named = set()
  for bundle in ("ort.wasm.min.mjs", "ort.webgpu.min.mjs"):
    for module in re.findall(rb"ort-wasm-simd-threaded[a-z.]*\.mjs",
                             files[bundle]):
      named |= {module.decode(), module.decode()[:-4] + ".wasm"}
  assert {"ort-wasm-simd-threaded.asyncify.mjs"} <= named
  assert set(web_export.RUNTIME_FILES) == named | {"ort.wasm.min.mjs",
                                                   "ort.webgpu.min.mjs"}


OUTPUT_PIXELS = """
    const img = document.getElementById('output');
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    c.getContext('2d').drawImage(img, 0, 0);
    return c.toDataURL('image/png');"""


def decoded(data_url):
  return np.asarray(Image.open(io.BytesIO(base64.b64decode(
      data_url.split(",", 1)[1]))).convert("RGB"))


# Largest difference to the SavedModel, in 8-bit levels, of a page that runs
# the float16 weights (README, "Translate in your browser"): their outputs
# differ by about 1e-3 of the [-1, 1] range, so rounding may differ by one.
FP16_LEVELS = 1


def output_is(driver, width, height):
  """Whether the page shows a decoded output of width x height."""
  return driver.execute_script(
      "const img = document.getElementById('output');"
      "return img.hasAttribute('src') && img.complete && "
      "img.naturalWidth === arguments[0] && img.naturalHeight === arguments[1];",
      width, height)


# A stand-in generator, the same in TensorFlow and in the page's JavaScript:
# each output pixel mixes its input with a neighbouring channel, the row
# below and the column two along (wrapping round), and its row's place in
# what it was given, so that a shifted pad, crop, resize, tile or blend
# shows.
def stand_in(images):
  import tensorflow as tf
  height = tf.shape(images)[1]
  row = tf.reshape(tf.range(height, dtype=tf.float32), [1, -1, 1, 1])
  return tf.tanh(0.8 * images - 0.3 * tf.roll(images, -1, 3) +
                 0.2 * tf.roll(images, -1, 1) - 0.1 * tf.roll(images, -2, 2)
                 + 0.5 * row / tf.cast(height, tf.float32))


STAND_IN_JS = """
const run = async (x, height, width) => {
  const y = new Float32Array(x.length);
  const at = (i, j, c) => x[(((i % height) * width + (j % width)) * 3) + c % 3];
  for (let i = 0; i < height; i++) for (let j = 0; j < width; j++)
    for (let c = 0; c < 3; c++) y[(i * width + j) * 3 + c] = Math.tanh(
        0.8 * at(i, j, c) - 0.3 * at(i, j, c + 1) + 0.2 * at(i + 1, j, c) -
        0.1 * at(i, j + 2, c) + 0.5 * i / height);
  return y;
};"""

# (image height, width, the page's CONFIG.browser): native resolution at a
# size that is not a multiple; the training resolution shrinking and
# growing, square and (scale_width) keeping the aspect; tiles of two sizes.
PAGE_CASES = {
    "native": (45, 70, {"resolution": "native"}),
    "training, grown": (45, 70, {"resolution": "training"}),
    "training, shrunk": (150, 97, {"resolution": "training"}),
    "scale_width, grown": (45, 70, {"resolution": "training",
                                    "preprocess": "scale_width"}),
    # 96 x 150 / 93 = 154.8: the height floored, as the reference does.
    "scale_width, taller": (150, 93, {"resolution": "training",
                                      "preprocess": "scale_width"}),
    "scale_width_and_crop": (45, 70, {"resolution": "training",
                                      "preprocess": "scale_width_and_crop"}),
    "tiles": (100, 83, {"tiles": {"tile": 32, "overlap": 8}}),
    # Rows start at 0, 17.5 and 35, columns at 0, 16.5 and 33: halves,
    # rounded to even, up and down.
    "wide tiles": (83, 81, {"tiles": {"tile": 48, "overlap": 20}}),
}


def expected_page_output(image, model):
  """What the SavedModel's signatures (and predict --tile) give for
  `image` with the stand-in generator, for the page's `model`."""
  from pix2pix_tf import data as data_lib
  from pix2pix_tf.serving import signatures
  from pix2pix_tf.serving import tiling

  def translate(pixels, resolution):
    return data_lib.to_uint8(signatures.translate_at(
        stand_in, np.asarray(pixels, np.float32)[None], resolution,
        {**model, "size_multiple": model["multiple"]}))[0].numpy()

  if model["tiles"]:
    return tiling.translate_tiled(lambda t: translate(t, "native"), image,
                                  model["tiles"]["tile"],
                                  model["tiles"]["overlap"])
  return translate(image, model["resolution"])


def test_the_page_computes_as_the_saved_model(tmp_path):
  """in_browser.mjs, run in Chromium on a stand-in generator, against the
  signatures' TensorFlow code and predict's tiling on the same one: native
  resolution, the training resolution's resize, and tiles."""
  from pix2pix_tf.serving import web
  (tmp_path / "in_browser.mjs").write_text(web.read_page("in_browser.mjs"))
  (tmp_path / "index.html").write_text("<!DOCTYPE html><title>t</title>")
  rng = np.random.default_rng(3)
  driver = headless_chromium()
  with file_server(tmp_path) as (url, _):
    try:
      driver.get(url + "/")
      driver.set_script_timeout(60)
      for name, (height, width, case) in PAGE_CASES.items():
        model = {"resolution": "native", "multiple": 16, "image_size": 64,
                 "load_size": 96, "preprocess": "resize_and_crop",
                 "tiles": None, **case}
        # Half the pixels black or white: the resizes overshoot 0..255
        # there, and are clipped.
        image = np.where(rng.random((height, width, 1)) < 0.5,
                         rng.integers(0, 2, (height, width, 3)) * 255,
                         rng.integers(0, 256, (height, width, 3))
                         ).astype(np.uint8)
        generated = driver.execute_async_script(
            STAND_IN_JS + """
            const [model, width, height, pixels, done] = arguments;
            const data = new ImageData(width, height);
            pixels.forEach((v, k) => { data.data[k] = v; });
            import("./in_browser.mjs").then((page) => page.translateImage(
                run, data, model, Boolean(model.tiles), () => {}))
              .then((out) => done(Array.from(out.data)),
                    (err) => done(String(err)));""",
            model, width, height,
            np.dstack([image, np.full((height, width), 255, np.uint8)])
            .ravel().tolist())
        assert isinstance(generated, list), (name, generated)
        generated = np.array(generated, np.uint8).reshape(height, width, 4)
        expected = expected_page_output(image, model)
        difference = np.abs(generated[..., :3].astype(int) - expected)
        # The resizes' sums, in another order, may move a value across a
        # half level; everything else is computed as in TensorFlow.
        if model["resolution"] == "training":
          assert difference.max() <= 1, name
          assert (difference == 0).mean() > 0.999, name
        else:
          assert difference.max() == 0, name
        assert (generated[..., 3] == 255).all()
    finally:
      driver.quit()


class LoggingDriver:
  """A driver whose DevTools performance log holds `requests`, (the page
  that made it, None where the event names none; the URL) each."""

  def __init__(self, requests):
    self.requests = requests

  def get_log(self, kind):
    assert kind == "performance"
    return [{"message": json.dumps({"message": {
        "method": "Network.requestWillBeSent",
        "params": {"request": {"url": url},
                   **({"documentURL": page} if page is not None else {})}}})}
            for page, url in self.requests]


def test_the_network_log_is_the_pages_requests_not_the_browsers():
  """Chromium's start page loads chrome:// files and (Debian's Chromium
  150) a chrome-untrusted:// frame, whatever page is opened next."""
  page = "http://127.0.0.1:8000/"
  driver = LoggingDriver([
      ("chrome://new-tab-page/", "chrome://resources/js/cr.js"),
      ("chrome-untrusted://new-tab-page/one-google-bar",
       "chrome-untrusted://new-tab-page/one-google-bar"),
      (page, page), (page, "https://example.com/tracker.js"),
      (page, "blob:http://127.0.0.1:8000/1"),
      (None, "https://example.com/from-a-worker.js")])
  assert browser.requested_urls(driver) == [
      page, "https://example.com/tracker.js", "blob:http://127.0.0.1:8000/1",
      "https://example.com/from-a-worker.js"]


# WebGPU runs on SwiftShader, on the CPU: the slowest of the page's tests.
@pytest.mark.parametrize("backend", [
    "wasm", pytest.param("webgpu", marks=pytest.mark.slow)])
def test_the_page_translates_in_the_browser_as_the_saved_model(
    model, tmp_path, backend):
  """On WebAssembly (headless Chromium has no WebGPU adapter) and on WebGPU
  (SwiftShader's adapter, on the CPU)."""
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import Select, WebDriverWait

  _, _, saved_model, _ = model
  site = real_site(model, tmp_path)
  translate = serving.load(saved_model, resolution="native")
  upload = tmp_path / "upload.png"
  classes = np.array(list(demo.PALETTE.values()), np.uint8)
  y, x = np.mgrid[0:45, 0:70]  # Not multiples of 32: reflect-padded.
  Image.fromarray(classes[(x // 9 + y // 7) % len(classes)]).save(upload)
  driver = headless_chromium(network_log=True, webgpu=backend == "webgpu")
  with file_server(site) as (url, requested):
    try:
      # The page reloads once under its service worker: an element may go
      # stale between two polls.
      from selenium.common.exceptions import WebDriverException
      wait = WebDriverWait(driver, 60, poll_frequency=0.05,
                           ignored_exceptions=(WebDriverException,))
      browser.open_page(driver, url + "/")
      status = driver.find_element(By.ID, "runtime")
      assert status.get_attribute("data-backend") == backend
      # Under the folder's service worker: isolated, so with threads.
      threads = min(4, driver.execute_script(
          "return navigator.hardwareConcurrency"))
      assert driver.execute_script("return self.crossOriginIsolated")
      assert status.text.startswith(
          "Translates in this browser: ONNX Runtime Web 1.31.1 on " + (
              "WebGPU;" if backend == "webgpu" else
              f"WebAssembly ({threads} thread{'s' if threads > 1 else ''});"))
      driver.find_element(By.CSS_SELECTOR,
                          "#size option[value='256']").click()
      canvas = driver.find_element(By.ID, "canvas")
      swatches = driver.find_elements(By.CSS_SELECTOR, ".swatch")
      assert len(swatches) == len(demo.PALETTE)
      for swatch, (start, end) in zip(swatches[2:4], (((-90, -80), (80, 60)),
                                                      ((-60, 90), (70, -90)))):
        swatch.click()
        ActionChains(driver).move_to_element_with_offset(
            canvas, *start).click_and_hold().move_to_element_with_offset(
                canvas, *end).release().perform()
      drawing = decoded(driver.execute_script(
          "return arguments[0].toDataURL('image/png')", canvas))
      assert len(np.unique(drawing.reshape(-1, 3), axis=0)) >= 3
      driver.find_element(By.ID, "translate").click()
      wait.until(lambda d: output_is(d, 256, 256))
      assert driver.find_element(By.ID, "error").text == ""
      generated = decoded(driver.execute_script(OUTPUT_PIXELS))
      expected = np.asarray(translate(drawing))
      assert generated.shape == expected.shape == (256, 256, 3)
      assert np.abs(generated.astype(int) - expected).max() <= FP16_LEVELS
      assert expected.std() > 5  # Not a blank image.
      # An upload: translated at its own size, as the SavedModel does.
      driver.find_element(By.ID, "upload").send_keys(str(upload))
      driver.find_element(By.ID, "translate").click()
      wait.until(lambda d: output_is(d, 70, 45))
      generated = decoded(driver.execute_script(OUTPUT_PIXELS))
      expected = np.asarray(translate(np.asarray(Image.open(upload))))
      assert np.abs(generated.astype(int) - expected).max() <= FP16_LEVELS
      # Transparency composited on white, as the SavedModel decodes it.
      rgba = np.dstack([np.asarray(Image.open(upload)),
                        np.where(x < 35, 255, 0).astype(np.uint8)])
      Image.fromarray(rgba).save(tmp_path / "transparent.png")
      driver.find_element(By.ID, "upload").send_keys(
          str(tmp_path / "transparent.png"))
      wait.until(lambda d: not d.find_element(By.ID, "output")
                 .get_attribute("src"))  # The new upload cleared it.
      driver.find_element(By.ID, "translate").click()
      wait.until(lambda d: output_is(d, 70, 45))
      generated = decoded(driver.execute_script(OUTPUT_PIXELS))
      expected = np.asarray(translate(rgba))
      assert np.abs(generated.astype(int) - expected).max() <= FP16_LEVELS
      # In tiles of the training crop (32, overlapping by 16), as predict
      # --tile: the busy indicator counts them.
      driver.execute_script("""
          window.busyTexts = [];
          new MutationObserver(() => busyTexts.push(
              document.getElementById('busy-text').textContent)).observe(
              document.getElementById('busy-text'), {childList: true});""")
      Select(driver.find_element(By.ID, "tiling")).select_by_value("tiles")
      assert driver.find_element(By.ID, "tiling-choice").text.endswith(
          "in tiles of 32 x 32")
      driver.find_element(By.ID, "upload").send_keys(str(upload))
      driver.find_element(By.ID, "translate").click()
      wait.until(lambda d: output_is(d, 70, 45))
      generated = decoded(driver.execute_script(OUTPUT_PIXELS))
      native = serving.load(saved_model, resolution="native")
      expected = tiling.translate_tiled(native, np.asarray(Image.open(upload)),
                                        32, 16)
      assert np.abs(generated.astype(int) - expected).max() <= FP16_LEVELS
      assert np.abs(generated.astype(int) -
                    np.asarray(translate(np.asarray(Image.open(upload))))
                    ).max() > FP16_LEVELS  # Not the whole image's.
      assert driver.execute_script("return busyTexts").count(
          "Translating tile 8 of 8…") == 1  # 2 rows of 4 tiles.
      # Over the page's pixel limits: a sentence, and no translation.
      for tiled, (width, height), sentence in (
          (False, (1100, 1000), "This image is 1100x1000; this page "
           "translates up to 1024x1024 (1,048,576 pixels) whole. Choose to "
           "translate it in tiles, or scale it down and upload it again."),
          (True, (4100, 4100), "This image is 4100x4100; this page "
           "translates up to 4096x4096 (16,777,216 pixels) in tiles. Scale "
           "it down and upload it again.")):
        Select(driver.find_element(By.ID, "tiling")).select_by_value(
            "tiles" if tiled else "whole")
        large = tmp_path / f"large{width}.png"
        Image.new("RGB", (width, height)).save(large)
        driver.find_element(By.ID, "upload").send_keys(str(large))
        wait.until(lambda d: d.find_element(By.ID, "error").text)
        assert driver.find_element(By.ID, "error").text == sentence
        driver.find_element(By.ID, "translate").click()
        assert driver.find_element(By.ID, "error").text == sentence
        assert not driver.find_element(By.ID, "output").get_attribute("src")
      # Within the limit in tiles: choosing them takes the sentence away.
      Select(driver.find_element(By.ID, "tiling")).select_by_value("whole")
      driver.find_element(By.ID, "upload").send_keys(
          str(tmp_path / "large1100.png"))
      wait.until(lambda d: d.find_element(By.ID, "error").text)
      Select(driver.find_element(By.ID, "tiling")).select_by_value("tiles")
      wait.until(lambda d: not d.find_element(By.ID, "error").text)
      urls = browser.requested_urls(driver)
    finally:
      driver.quit()
  # No request left the folder: every one was for one of its files.
  files = {"/" + f for f in json.loads((site / "export.json").read_text())[
      "files"]}
  # (data: and blob: URLs are the page's own memory: the upload's preview,
  # the output.)
  fetched = [u for u in urls if not u.startswith(("data:", "blob:"))]
  assert all(u.startswith(url + "/") for u in fetched), urls
  paths = [urllib.parse.urlparse(u).path for u in fetched]
  assert set(paths) <= files | {"/"}, paths
  assert {"/", "/model.onnx", f"/ort/ort.{backend}.min.mjs"} <= set(paths)
  assert set(requested) <= files | {"/"}, requested


def test_web_timing_reports_the_pages_own_times(model, tmp_path, capsys,
                                               monkeypatch):
  """tools/web_timing.py on a real site: the page's backend and threads, its
  model's size, and one time per translation."""
  chromium_needed()
  site = real_site(model, tmp_path)
  monkeypatch.setattr("sys.argv", ["web_timing.py", str(site), "--size=256",
                                   "--repeats=2", "--timeout=60"])
  load_tool("web_timing").main()
  timing = json.loads(capsys.readouterr().out)
  threads = timing["threads"]  # The page's: up to 4, one per core.
  assert (timing["backend"], timing["size"]) == ("wasm", 256)
  assert 1 <= threads <= 4 and f"({threads} thread" in timing["page"]
  assert timing["model_bytes"] == os.path.getsize(site / "model.onnx")
  assert timing["page"].startswith("Translates in this browser")
  assert timing["load_seconds"] > 0
  assert len(timing["translate_seconds"]) == 2
  assert all(page >= run > 0 for page, run in zip(
      timing["with_page_seconds"], timing["translate_seconds"]))


@pytest.mark.slow
def test_a_webgpu_run_that_fails_gives_way_to_webassembly(model, tmp_path):
  """WebGPU loaded the model, then fails a run (as a lost device or a
  tensor over its limits would): the page translates on WebAssembly, says
  so, and stays there."""
  from selenium.common.exceptions import WebDriverException
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import WebDriverWait

  _, _, saved_model, _ = model
  site = real_site(model, tmp_path)
  translate = serving.load(saved_model, resolution="native")
  driver = headless_chromium(webgpu=True)
  with file_server(site) as (url, _):
    try:
      wait = WebDriverWait(driver, 60, poll_frequency=0.05,
                           ignored_exceptions=(WebDriverException,))
      assert browser.open_page(driver, url + "/") == "webgpu"
      driver.execute_async_script("""
          const done = arguments[0];
          session.then(({model}) => {
            model.run = () => Promise.reject(new Error("device lost"));
            done();
          });""")
      canvas = driver.find_element(By.ID, "canvas")
      drawing = decoded(driver.execute_script(
          "return arguments[0].toDataURL('image/png')", canvas))
      for _ in range(2):  # The second translation starts on WebAssembly.
        driver.execute_script("document.getElementById('output')"
                              ".removeAttribute('src')")
        driver.find_element(By.ID, "translate").click()
        wait.until(lambda d: output_is(d, *drawing.shape[1::-1]))
        assert driver.find_element(By.ID, "error").text == ""
        assert driver.execute_script(browser.BACKEND) == "wasm"
        generated = decoded(driver.execute_script(OUTPUT_PIXELS))
        assert np.abs(generated.astype(int) -
                      np.asarray(translate(drawing))).max() <= FP16_LEVELS
      assert ", as WebGPU failed to translate;" in driver.find_element(
          By.ID, "runtime").text
    finally:
      driver.quit()


def test_an_upload_refused_whole_translates_in_tiles_and_at_training_size(
    model, tmp_path):
  """A page whose whole-image limit the upload exceeds: refused, with the
  upload kept, and translated once tiles are chosen, as predict --tile;
  and a page told --resolution=training, as the SavedModel's
  translate_uint8."""
  from selenium.common.exceptions import WebDriverException
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import Select, WebDriverWait

  config, generator, saved_model, _ = model
  runtime = web_export.load_runtime(real_runtime())
  for name, page in (("small", web_export.PageOptions(max_pixels=3000)),
                     ("training", web_export.PageOptions(
                         resolution="training"))):
    web_export.write_site(generator, config, str(tmp_path / name), "eval",
                          runtime=runtime, page=page)
  upload = tmp_path / "upload.png"
  classes = np.array(list(demo.PALETTE.values()), np.uint8)
  y, x = np.mgrid[0:45, 0:70]  # 3,150 pixels: over the small page's 3,000.
  image = classes[(x // 9 + y // 7) % len(classes)]
  Image.fromarray(image).save(upload)
  driver = headless_chromium()
  wait = WebDriverWait(driver, 60, poll_frequency=0.05,
                       ignored_exceptions=(WebDriverException,))

  def open_page(url):
    browser.open_page(driver, url + "/")
    driver.find_element(By.ID, "upload").send_keys(str(upload))

  def error():
    return driver.find_element(By.ID, "error").text

  try:
    with file_server(tmp_path / "small") as (url, _):
      open_page(url)
      wait.until(lambda d: error())
      sentence = ("This image is 70x45; this page translates up to 3,000 "
                  "pixels whole. Choose to translate it in tiles, or scale "
                  "it down and upload it again.")
      assert error() == sentence
      driver.find_element(By.ID, "translate").click()
      wait.until(lambda d: d.find_element(By.ID, "translate").is_enabled())
      assert error() == sentence
      assert not driver.find_element(By.ID, "output").get_attribute("src")
      # The upload is still the one to translate: in tiles, it fits.
      Select(driver.find_element(By.ID, "tiling")).select_by_value("tiles")
      wait.until(lambda d: not error())
      driver.find_element(By.ID, "translate").click()
      wait.until(lambda d: output_is(d, 70, 45))
      generated = decoded(driver.execute_script(OUTPUT_PIXELS))
      native = serving.load(saved_model, resolution="native")
      expected = tiling.translate_tiled(native, image, 32, 16)
      assert np.abs(generated.astype(int) - expected).max() <= FP16_LEVELS
      # The busy indicator, hidden, says what it says for the next one.
      assert driver.find_element(By.ID, "busy-text").get_attribute(
          "textContent") == "Translating…"
      # A run that fails whole (as out of memory would): the page offers
      # tiles, and the upload is still the one they translate.
      Select(driver.find_element(By.ID, "tiling")).select_by_value("whole")
      small = tmp_path / "small.png"
      Image.fromarray(image[:30, :40]).save(small)
      driver.find_element(By.ID, "upload").send_keys(str(small))
      driver.execute_script("""
          return session.then(({model}) => {
            const run = model.run.bind(model);
            let failed = false;
            model.run = (...args) => failed ? run(...args) :
                (failed = true, Promise.reject(new Error("out of memory")));
          });""")
      driver.find_element(By.ID, "translate").click()
      wait.until(lambda d: error())
      assert error().splitlines() == [
          "This browser could not translate the image. Try it in tiles, or "
          "reload the page.", "ONNX Runtime said: “out of memory”"]
      Select(driver.find_element(By.ID, "tiling")).select_by_value("tiles")
      driver.find_element(By.ID, "translate").click()
      wait.until(lambda d: output_is(d, 40, 30))
      generated = decoded(driver.execute_script(OUTPUT_PIXELS))
      expected = tiling.translate_tiled(native, image[:30, :40], 32, 16)
      assert np.abs(generated.astype(int) - expected).max() <= FP16_LEVELS
      # An upload during a translation in tiles gives it up at the next
      # tile: the page is free again long before its 4,216 tiles.
      large = tmp_path / "large.png"
      Image.new("RGB", (1100, 1000)).save(large)
      driver.find_element(By.ID, "upload").send_keys(str(large))
      driver.find_element(By.ID, "translate").click()
      wait.until(lambda d: re.fullmatch(
          r"Translating tile \d+ of 4216…", d.find_element(
              By.ID, "busy-text").get_attribute("textContent")))
      driver.find_element(By.ID, "upload").send_keys(str(upload))
      wait.until(lambda d: d.find_element(By.ID, "translate").is_enabled())
      last = driver.find_element(By.ID, "busy-text").get_attribute(
          "textContent")
      assert not driver.find_element(By.ID, "output").get_attribute("src")
      assert not error()
      driver.find_element(By.ID, "translate").click()
      wait.until(lambda d: output_is(d, 70, 45))
      assert last == "Translating…"  # Reset when it was given up.
      # A file this browser cannot read keeps its sentence whatever the
      # choice.
      (tmp_path / "notes.png").write_text("not an image")
      driver.find_element(By.ID, "upload").send_keys(
          str(tmp_path / "notes.png"))
      unreadable = "notes.png is not an image this browser can read."
      wait.until(lambda d: error() == unreadable)
      Select(driver.find_element(By.ID, "tiling")).select_by_value("whole")
      # (The choice's handler has run: its promise settles in a microtask,
      # before the browser answers the next command.)
      assert error() == unreadable
    with file_server(tmp_path / "training") as (url, _):
      open_page(url)
      assert not driver.find_element(By.ID, "tiling-choice").is_displayed()
      assert driver.find_element(By.ID, "runtime").text.endswith(
          "Each image is resized to the scale the model was trained at, "
          "and back.")
      driver.find_element(By.ID, "translate").click()
      wait.until(lambda d: output_is(d, 70, 45))
      generated = decoded(driver.execute_script(OUTPUT_PIXELS))
      expected = serving.load(saved_model, resolution="training")(image)
      assert np.abs(generated.astype(int) - expected).max() <= FP16_LEVELS
      assert np.abs(generated.astype(int) - native(image)).max() > 2
  finally:
    driver.quit()


def test_the_export_refuses_before_it_downloads_or_restores(
    model, tmp_path, monkeypatch):
  """A missing checkpoint, or tiles the generator cannot run, is named
  before the runtime is downloaded; a bad --web_runtime, or a generator that is not RGB to RGB, before the
  checkpoint is restored; without the ONNX packages, the refusal names
  --format=web."""
  config = model[0]

  def restore(*args):
    raise AssertionError("restored before the refusal")

  def download(*args, **kwargs):
    raise AssertionError("downloaded before the refusal")

  def without_tf2onnx(name, real=importlib.import_module):
    if name == "tf2onnx":
      raise ImportError(name)
    return real(name)

  monkeypatch.setattr(serving.saved_model, "restore_generator", restore)
  monkeypatch.setattr(serving.saved_model, "load_run_config",
                      lambda model_dir: config)
  monkeypatch.setattr(web_export, "fetch_runtime", download)
  run, site = str(tmp_path), str(tmp_path / "site")
  with pytest.raises(serving.ExportError, match="No checkpoint in"):
    web_export.export_site(run, site)
  # Tiles the generator cannot run: before the checkpoint is looked for.
  with pytest.raises(ValueError, match="--tile=40 is not a multiple"):
    web_export.export_site(run, site, page=web_export.PageOptions(tile=40))
  with pytest.raises(serving.ExportError, match="ckpt-9 not found"):
    web_export.export_site(run, site, checkpoint=str(tmp_path / "ckpt-9"))
  (tmp_path / "ckpt-1.index").write_bytes(b"")
  checkpoint = str(tmp_path / "ckpt-1")
  bad = tmp_path / "not_a_runtime.tgz"
  bad.write_bytes(b"not an archive")
  with pytest.raises(serving.ExportError,
                     match=re.escape(f"--web_runtime={bad} is not")):
    web_export.export_site(run, site, checkpoint, runtime=str(bad))
  config = config.replace(input_channels=1)
  with pytest.raises(serving.ExportError, match="takes 1 channels"):
    web_export.export_site(run, site, checkpoint,
                           runtime=fake_runtime(str(tmp_path)))
  monkeypatch.setattr(importlib, "import_module", without_tf2onnx)
  with pytest.raises(serving.ExportError,
                     match="--format=web needs the tf2onnx package"):
    web_export.export_site(run, site, checkpoint)
  assert not os.path.exists(site)
