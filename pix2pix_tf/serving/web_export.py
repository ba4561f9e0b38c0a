"""`export --format=web`: a static folder that translates in the browser,
with no server holding the model.

    python -m pix2pix_tf.export --model_dir=runs/facades --format=web \\
        --export_dir=site
    python -m http.server --directory site     # then open the page

The folder holds

* `index.html`: `serve`'s drawing page (pages/translate.html: the palette's
  legend, brushes, upload, canvas sizes, download), told to run the model
  itself. Its Content-Security-Policy allows the folder's own files and
  WebAssembly, nothing else: no request leaves the folder.
* `model.onnx`: the generator as `--format=onnx` writes it and checks it
  with ONNX Runtime; float16 weights by default (half the download),
  float32 with `--precision=float32`.
* `ort/`: the ONNX Runtime Web files the page loads: its WebAssembly build,
  and its WebGPU build, which the page uses where the browser offers WebGPU.
* `in_browser.mjs`: the page's translation, as the SavedModel's: at native
  resolution, whole or (on request) in blended tiles as predict --tile, or
  with --resolution=training resized to the training size and back.
* `isolation.js`: a service worker that adds the headers of cross-origin
  isolation to the folder's files, which WebAssembly's threads need and a
  static file server does not send (the page reloads once under it), and a
  Content-Security-Policy to its workers' scripts, which no page's policy
  reaches.
* `export.json`: where the runtime came from (npm name, version, the
  archive's sha256) and every file's sha256.

The runtime is the npm registry's archive of onnxruntime-web
RUNTIME_VERSION, fetched by keras.utils.get_file (cached in ~/.keras, and
checked against RUNTIME_SHA256), or what --web_runtime names: such an
archive (`npm pack onnxruntime-web`) or an unpacked package folder
(node_modules/onnxruntime-web), whose version its package.json gives.
"""

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import tarfile
from typing import Dict, Optional, Tuple

import keras

from pix2pix_tf import config as config_lib
from pix2pix_tf import outputs
from pix2pix_tf import temporaries
from pix2pix_tf.data import download
from pix2pix_tf.serving import formats
from pix2pix_tf.serving import portable
from pix2pix_tf.serving import saved_model as saved_model_lib
from pix2pix_tf.serving import server as server_lib
from pix2pix_tf.serving import tiling
from pix2pix_tf.serving import web

RUNTIME_NAME, RUNTIME_VERSION = "onnxruntime-web", "1.31.1"
RUNTIME_URL = (f"https://registry.npmjs.org/{RUNTIME_NAME}/-/"
               f"{RUNTIME_NAME}-{RUNTIME_VERSION}.tgz")
# The registry's archive, as downloaded and checked on 2026-12-05 (its
# sha512 is the registry's `integrity` of that version).
RUNTIME_SHA256 = (
    "bdccdb9fbb9ab537247c0c734e9b1d2b1b338b4f2a09faa58f0dc1cfa27c312c")
# The files of the package's dist/ that the page loads: the WebAssembly
# build (ort.wasm) and the WebGPU build (ort.webgpu, on the asyncify
# binary), each a module and the binary it names.
RUNTIME_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs",
                 "ort-wasm-simd-threaded.wasm", "ort.webgpu.min.mjs",
                 "ort-wasm-simd-threaded.asyncify.mjs",
                 "ort-wasm-simd-threaded.asyncify.wasm")
MODEL_FILE, PAGE_FILE, RECORD_FILE = "model.onnx", "index.html", "export.json"
# The service worker that makes the page cross-origin isolated, and the
# module that translates as the SavedModel does (pages/).
ISOLATION_FILE, SCRIPT_FILE = "isolation.js", "in_browser.mjs"
# The largest image the page translates whole by default (--max_pixels);
# its time: docs/inference.md, "Speed".
PAGE_MAX_PIXELS = 1024 * 1024
# In tiles, the model's memory is that of a tile, and the time grows with
# the pixels (docs/inference.md, "Speed").
TILED_MAX_PIXELS = 4096 * 4096
# predict's --overlap, at most half the tile.
DEFAULT_OVERLAP = 32
DEFAULT_PATH = "web"  # In the run folder.


def fetch_runtime(cache_dir: Optional[str] = None,
                  origin: str = RUNTIME_URL,
                  sha256: str = RUNTIME_SHA256) -> str:
  """The path of onnxruntime-web's npm archive: downloaded once into
  `cache_dir` (default ~/.keras/pix2pix_tf) and checked against `sha256`
  (a mismatch is an ExportError, and the download is deleted)."""
  name = os.path.basename(origin)
  folder = cache_dir or download.cache_folder()
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise saved_model_lib.ExportError(
        f"Could not write {folder} ({e}): set KERAS_HOME to a folder you "
        "can write to, or give the runtime's archive as --web_runtime."
    ) from None
  try:
    return os.path.normpath(keras.utils.get_file(
        name, origin, file_hash=sha256, hash_algorithm="sha256",
        cache_dir=folder, cache_subdir="."))
  except ValueError as e:  # get_file's refusal of the download's digest.
    # get_file keeps the file it refused: not a runtime to leave behind.
    temporaries.remove(os.path.join(folder, name))
    raise saved_model_lib.ExportError(
        f"The download of {origin} does not have the sha256 pix2pix_tf "
        f"records ({e}). Download it with `npm pack "
        f"{RUNTIME_NAME}@{RUNTIME_VERSION}` and give it as --web_runtime."
    ) from None
  except Exception as e:  # get_file raises Exception for network errors.
    raise saved_model_lib.ExportError(
        f"Could not download {origin} ({e}). Without network access, give "
        f"the archive of `npm pack {RUNTIME_NAME}@{RUNTIME_VERSION}` (or "
        f"node_modules/{RUNTIME_NAME}) as --web_runtime.") from None


def read_runtime(source: str) -> Tuple[Dict[str, bytes], Dict]:
  """The page's runtime files from an npm archive or an unpacked package
  folder at `source`, and a record of what they are (name, version, the
  archive's sha256). ExportError naming `source` when it is neither, or
  lacks a file the page needs."""
  flag = f"--web_runtime={source}"
  try:
    with contextlib.ExitStack() as stack:
      if os.path.isdir(source):
        def read(name):
          with open(os.path.join(source, name), "rb") as file:
            return file.read()
        digest = None
      else:
        archive = stack.enter_context(tarfile.open(source, "r:gz"))
        def read(name):  # npm's archives hold the package in package/.
          member = archive.extractfile("package/" + name)
          if member is None:
            raise KeyError(name)
          return member.read()
        digest = outputs.sha256(source)
      package = json.loads(read("package.json"))
      if (package.get("name"), package.get("version")) != (RUNTIME_NAME,
                                                            RUNTIME_VERSION):
        # The page loads the files that this version's bundles name.
        raise saved_model_lib.ExportError(
            f"{flag} is {package.get('name')!r} {package.get('version')}, "
            f"not {RUNTIME_NAME} {RUNTIME_VERSION}: give the archive of "
            f"`npm pack {RUNTIME_NAME}@{RUNTIME_VERSION}`.")
      files = {name: read("dist/" + name) for name in RUNTIME_FILES}
  except saved_model_lib.ExportError:
    raise
  except (OSError, KeyError, ValueError, tarfile.TarError) as e:
    raise saved_model_lib.ExportError(
        f"{flag} is not a usable {RUNTIME_NAME} package ({e}): give the "
        f"archive of `npm pack {RUNTIME_NAME}@{RUNTIME_VERSION}` or its "
        "unpacked folder.") from None
  # The archive's name, not its path on this machine: the record is
  # published with the site.
  runtime = {"name": RUNTIME_NAME, "version": RUNTIME_VERSION,
             "source": os.path.basename(os.path.normpath(source)),
             "archive_sha256": digest}
  return files, runtime


def load_runtime(source: Optional[str] = None
                 ) -> Tuple[Dict[str, bytes], Dict]:
  """`read_runtime` of `source`, or of the archive `fetch_runtime`
  downloads (recorded by its address)."""
  if source:
    return read_runtime(source)
  files, record = read_runtime(fetch_runtime())
  record["source"] = RUNTIME_URL
  return files, record


@dataclasses.dataclass(frozen=True)
class PageOptions:
  """Where the page translates, and how large an image it takes (export's
  --resolution, --tile, --overlap, --max_pixels)."""

  resolution: Optional[str] = None  # "training"; else native, as serve's.
  tile: int = 0  # The tiles' side; 0: the training crop.
  overlap: Optional[int] = None  # None: 32, or half the tile.
  max_pixels: int = PAGE_MAX_PIXELS  # Translated whole.


def page_tiles(config: config_lib.Config, page: PageOptions
               ) -> Optional[Dict]:
  """The tiles the page offers, as predict's --tile and --overlap, or None
  at the training resolution (which resizes each image to one tile).
  Default: tiles of the training crop (rounded down to a multiple of the
  generator's downsampling), overlapping by 32 pixels or half a tile.

  Raises:
    CommandError: naming the flag, for a whole-image limit below the
      canvas's training size, tiles the generator cannot run, tiles larger
      than the page translates whole, or tiles at the training resolution.
  """
  size = config.data.crop_size
  if page.max_pixels < size * size:
    raise saved_model_lib.ExportError(
        f"--max_pixels={page.max_pixels} is less than the {size}x{size} "
        f"canvas the page offers at the training size: give at least "
        f"{size * size}.")
  if page.resolution == "training":
    if page.tile or page.overlap is not None:
      raise saved_model_lib.ExportError(
          "--tile and --overlap are for the page's native resolution: "
          "leave out --resolution=training (or them).")
    return None
  multiple = 2 ** config.model.generator_depth
  tile = page.tile or max(multiple, size // multiple * multiple)
  overlap = (min(DEFAULT_OVERLAP, tile // 2) if page.overlap is None
             else page.overlap)
  tiling.check_tiling(tile, overlap, multiple, "--tile" if page.tile else
                      f"the page's default tile, the training crop of {tile}")
  if tile * tile > page.max_pixels:
    raise saved_model_lib.ExportError(
        f"--tile={tile} makes tiles of {tile * tile:,} pixels, more than "
        f"the page translates whole (--max_pixels={page.max_pixels}): "
        "choose a smaller --tile, or a larger --max_pixels.")
  return {"tile": tile, "overlap": overlap,
          "max_pixels": max(TILED_MAX_PIXELS, page.max_pixels)}


def page_config(metadata: Dict, runtime: Dict,
                tiles: Optional[Dict] = None) -> Dict:
  """What the exported page is told: `serve`'s page config (brushes,
  canvas sizes, the page's pixel limit, which `metadata` carries), the
  model and runtime it runs, where it runs it (`metadata`'s resolution,
  and the `tiles` it offers there) and what it needs to resize to the
  training resolution."""
  return {**server_lib.drawing_config(metadata, metadata.get("palette"),
                                      metadata["max_pixels"]),
          "browser": {"model": MODEL_FILE, "runtime": "ort/",
                      "isolation": ISOLATION_FILE,
                      "version": runtime["version"],
                      "input": portable.INPUT, "output": portable.OUTPUT,
                      "multiple": metadata["size_multiple"],
                      "resolution": metadata["resolution"],
                      **{key: metadata[key] for key in (
                          "image_size", "load_size", "preprocess")},
                      "tiles": tiles}}


def static_page(config: Dict) -> str:
  """pages/translate.html with `config`, and a Content-Security-Policy
  that lets it load only the folder's own files (its one inline script by
  its hash, as a static page has no server to give it a nonce)."""
  html = web.read_page("translate.html").replace(
      "__CONFIG__", web.script_json(config))
  start = html.index("<script>") + len("<script>")
  script = html[start:html.index("</script>", start)]
  digest = base64.b64encode(
      hashlib.sha256(script.encode()).digest()).decode()
  policy = ("default-src 'self'; "
            f"script-src 'self' 'sha256-{digest}' 'wasm-unsafe-eval'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'none'")
  return html.replace(
      '<meta charset="utf-8">',
      '<meta charset="utf-8">\n<meta http-equiv="Content-Security-Policy" '
      f'content="{policy}">', 1)


def _check_rgb(config: config_lib.Config) -> None:
  """ExportError unless the run's generator translates RGB to RGB."""
  if (config.data.input_channels, config.data.output_channels) != (3, 3):
    raise saved_model_lib.ExportError(
        "--format=web draws and shows RGB images; this run's generator "
        f"takes {config.data.input_channels} channels and gives "
        f"{config.data.output_channels}: export it --format=onnx instead.")


def check_site(config: config_lib.Config, path: str, page: PageOptions
               ) -> Tuple[Optional[Dict], Tuple[outputs.Folder, str]]:
  """(the tiles the page offers, `outputs.folder_output`'s (folder, name)
  for `path`), or the ExportError or OutputError of what makes the site
  unwritable: a generator that is not RGB to RGB, `page`'s options, or a
  path that is not an earlier web export."""
  _check_rgb(config)
  return page_tiles(config, page), outputs.folder_output(
      path, "export_dir", recognize=is_own_site, kind="web")


def write_site(generator: keras.Model, config: config_lib.Config, path: str,
               inference_mode: str, precision: str = "fp16",
               runtime: Optional[Tuple[Dict[str, bytes], Dict]] = None,
               step: int = 0, page: PageOptions = PageOptions()) -> Dict:
  """Writes the web export of `generator` (in `inference_mode`, trained
  `step` steps) with the `runtime` `load_runtime` gave (default: the
  download's) to the folder `path`, staged and swapped in (only over an
  earlier web export), and returns what its export.json records.

  The page translates at native resolution, offering the tiles of
  `page_tiles`, unless `page.resolution` is "training" (as `serve`'s
  page).
  """
  tiles, (folder, name) = check_site(config, path, page)
  files, runtime_record = runtime or load_runtime()
  # Published with the site: without the training machine's paths, and
  # with the page's own pixel limit.
  metadata = server_lib.public_metadata(formats.format_metadata(
      config, step, inference_mode, precision, page.max_pixels,
      page.resolution or "native"))
  record = {"runtime": runtime_record}

  def write(staging, relative, data):
    target = os.path.join(staging, relative)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as file:
      file.write(data)

  def build(staging):
    written = formats.write_format(
        generator, config, "onnx", os.path.join(staging, MODEL_FILE),
        inference_mode, precision, step=step, metadata=metadata)
    os.remove(os.path.join(staging, outputs.MANIFEST))  # Not the site's.
    for file_name, data in files.items():
      write(staging, os.path.join("ort", file_name), data)
    for page_file in (ISOLATION_FILE, SCRIPT_FILE):
      write(staging, page_file, web.read_page(page_file).encode())
    write(staging, PAGE_FILE,
          static_page(page_config(metadata, runtime_record, tiles)).encode())
    record["model"] = {"file": MODEL_FILE, "precision": precision,
                       "max_difference": written.max_difference,
                       "checked_without_dropout":
                           written.checked_without_dropout,
                       "metadata": metadata}
    record["files"] = {
        os.path.relpath(os.path.join(parent, f), staging):
            outputs.sha256(os.path.join(parent, f))
        for parent, _, names in os.walk(staging) for f in names}
    write(staging, RECORD_FILE,
          json.dumps(record, indent=1, sort_keys=True).encode())

  record["path"] = folder.replace_folder(name, build, is_own_site)
  return record


def is_own_site(path: str) -> bool:
  """Whether the folder at `path` is a web export as written: its files
  are exactly those its export.json lists, with their sha256, so that a
  file the user added or edited is never replaced."""
  try:
    with open(os.path.join(path, RECORD_FILE), encoding="utf-8") as file:
      listed = dict(json.load(file)["files"])
  except (OSError, ValueError, KeyError, TypeError):
    return False
  found = {os.path.relpath(os.path.join(parent, f), path)
           for parent, _, names in os.walk(path) for f in names}
  return (found == set(listed) | {RECORD_FILE} and
          all(outputs.sha256(os.path.join(path, f)) == digest
              for f, digest in listed.items()))


def summary(record: Dict) -> str:
  """What the export command prints about a web export."""
  site, model, runtime = record["path"], record["model"], record["runtime"]
  size = os.path.getsize(os.path.join(site, model["file"])) / 2**20
  return (f"Exported to {site}: {PAGE_FILE}, {model['file']} ({size:.2f} "
          f"MiB, {model['precision']} weights; checked with ONNX Runtime: "
          f"largest difference to the TensorFlow model "
          f"{model['max_difference']:.2g}"
          + (", compared without dropout, which varies from call to call"
             if model["checked_without_dropout"] else "")
          + f") and {runtime['name']} "
          f"{runtime['version']} in ort/. Open it with `python -m "
          f"http.server --directory {site}` and http://127.0.0.1:8000/.")


def export_site(model_dir: str, path: Optional[str] = None,
                checkpoint: Optional[str] = None,
                inference_mode: Optional[str] = None,
                precision: str = "fp16",
                runtime: Optional[str] = None,
                page: PageOptions = PageOptions()) -> Dict:
  """A run's generator (its latest checkpoint, or `checkpoint`) as a web
  export at `path` (default <model_dir>/web) whose page translates as
  `page` says (see `write_site`)."""
  config = saved_model_lib.load_run_config(model_dir)
  path = path or os.path.join(model_dir, DEFAULT_PATH)
  formats.require("web")
  # Each refusal before the runtime's download, and that before the
  # generator is built and restored.
  check_site(config, path, page)
  checkpoint = checkpoint or saved_model_lib.latest_checkpoint(model_dir)
  saved_model_lib.check_checkpoint(checkpoint)
  runtime_files = load_runtime(runtime)
  generator, step = saved_model_lib.restore_generator(config, checkpoint)
  return write_site(generator, config, path,
                    inference_mode or config.outputs.inference_mode,
                    precision, runtime_files, step, page)
