r"""Times a web export (`export --format=web`) in headless Chromium: how long
its model takes to load, and each translation of a drawing.

    python tools/web_timing.py runs/facades/web --size=256 --repeats=5

The folder is served on 127.0.0.1 as `python -m http.server` would serve
it; the page is opened (it reloads once under its service worker, which
gives WebAssembly its threads), and Translate is pressed `--repeats` times
on a canvas of `--size`, one translation after the other (in the page's
tiles with `--tiles`). The times are the page's own (`performance.now()`
around the model's load; around each run of the model, summed over a
translation's tiles; and around the whole translation, with the page's own
work: the drawing's conversion to a tensor and back, resizes, blending),
printed as JSON with the backend and the WebAssembly threads the page chose
(up to 4, one per core). Needs Debian's chromium and chromium-driver, and
selenium (pip install 'pix2pix_tf[tools]').
"""

import argparse
import functools
import http.server
import json
import os
import statistics
import sys
import threading

import browser


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("site", help="A folder written by export --format=web.")
  parser.add_argument("--size", type=int, default=256,
                      help="The canvas size (one the page offers).")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--tiles", action="store_true",
                      help="Translate in the tiles the page offers.")
  parser.add_argument("--timeout", type=float, default=600,
                      help="Seconds to wait for the model's load and for "
                      "each translation.")
  return parser.parse_args()


def serve(folder):
  """An HTTP server of `folder` on 127.0.0.1 (a thread): its URL, and the
  server to shut down."""
  class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
      pass

  server = http.server.ThreadingHTTPServer(
      ("127.0.0.1", 0), functools.partial(Quiet, directory=folder))
  # Looks for the stop every 10 ms: the default half second would be
  # added to the command's time.
  threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                   daemon=True).start()
  return f"http://127.0.0.1:{server.server_port}/", server


def main():
  args = parse_args()
  from selenium.webdriver.support.ui import WebDriverWait
  try:
    driver = browser.chromium_driver()
  except browser.BrowserMissing as missing:
    sys.exit(f"web_timing: {missing}")
  url, server = serve(os.path.abspath(args.site))
  state = ("const s = document.getElementById('runtime').dataset; "
           "return [s.backend, s.loadSeconds, s.translateSeconds, "
           "s.threads, s.pageSeconds];")
  try:
    backend = browser.open_page(driver, url, args.timeout)
    wait = WebDriverWait(driver, args.timeout, poll_frequency=0.05)
    _, load, _, threads, _ = driver.execute_script(state)
    status = driver.execute_script(
        "return document.getElementById('runtime').textContent")
    sizes = driver.execute_script(
        "return Array.from(document.getElementById('size').options, "
        "(o) => Number(o.value))")
    if args.size not in sizes:
      sys.exit(f"--size={args.size}: the page offers {sizes}.")
    driver.execute_script(
        "const s = document.getElementById('size');"
        "s.value = arguments[0]; s.onchange();", str(args.size))
    if args.tiles:
      tiles = driver.execute_script("return CONFIG.browser.tiles")
      if not tiles:
        sys.exit("--tiles: this page translates at the training "
                 "resolution, which has no tiles.")
      driver.execute_script("document.getElementById('tiling').value = "
                            "'tiles';")
    times, page_times = [], []
    for _ in range(args.repeats):
      driver.execute_script("document.getElementById('output')"
                            ".removeAttribute('src');"
                            "document.getElementById('translate').click();")
      wait.until(lambda d: d.execute_script(
          "return document.getElementById('output').getAttribute('src')"))
      _, _, seconds, _, page_seconds = driver.execute_script(state)
      times.append(float(seconds))
      page_times.append(float(page_seconds))
  finally:
    driver.quit()
    server.shutdown()
    server.server_close()
  print(json.dumps({
      "site": args.site, "page": status, "backend": backend,
      "threads": int(threads) if threads else None,
      "model_bytes": os.path.getsize(os.path.join(args.site, "model.onnx")),
      "load_seconds": round(float(load), 2), "size": args.size,
      "tiles": tiles if args.tiles else None,
      "translate_seconds": [round(t, 3) for t in times],
      "translate_median_seconds": round(statistics.median(times), 3),
      "with_page_seconds": [round(t, 3) for t in page_times],
      "cpu": os.cpu_count()}, indent=1))


if __name__ == "__main__":
  main()
