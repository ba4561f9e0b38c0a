"""What both pages' servers (the translation server and the study) share:
JSON errors (those Werkzeug answers before the app, such as 431, included),
security headers, request bodies read safely, data put into a page safely,
the pages themselves (pages/), a server that closes silent connections, and
images decoded for a page through the decode gate."""

import importlib.resources
import io
import json
import os
import secrets
import selectors
import socket
from typing import List, Optional

import flask
import numpy as np
from PIL import Image
from PIL import ImageOps
from werkzeug import exceptions
from werkzeug import serving

from pix2pix_tf import config as config_lib
from pix2pix_tf import errors
from pix2pix_tf import data as data_lib


class BadRequest(ValueError):
  """A request body that is not what the endpoint takes (answered 400)."""


def script_json(value: object) -> str:
  """`value` as JSON that is safe inside a <script> element: `<`, `>` and
  `&` are escaped, so no string in it can close the element (`</script>`)
  or open a comment."""
  return (json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")
          .replace("&", "\\u0026"))


def json_object(request: flask.Request,
                expected: str = "a JSON object") -> dict:
  """The request's JSON body, which must be an object; BadRequest for
  anything else, deep nesting included (Python's parser would raise
  RecursionError, which is not a ValueError)."""
  data = request.get_data(cache=False)
  limit = request.max_content_length
  if (request.content_length is None and limit is not None and
      len(data) >= limit):
    # A chunked body (no Content-Length): Werkzeug stops reading at the
    # limit and returns what it read, so the cut is detected here.
    raise exceptions.RequestEntityTooLarge()
  try:
    body = json.loads(data or b"null")
  except (ValueError, RecursionError):
    raise BadRequest(f"Expected {expected}; the body is not JSON (or is "
                     "nested too deeply).") from None
  if not isinstance(body, dict):
    raise BadRequest(f"Expected {expected}; the body is JSON but no object.")
  return body


def read_page(name: str) -> str:
  """A page of this package (pages/NAME), as text."""
  return (importlib.resources.files("pix2pix_tf.serving") / "pages" /
          name).read_text(encoding="utf-8")


def page(html: str) -> flask.Response:
  """An HTML response whose inline scripts carry a fresh nonce, which the
  Content-Security-Policy header then requires of every script."""
  nonce = secrets.token_urlsafe(16)
  response = flask.Response(html.replace("<script>",
                                         f'<script nonce="{nonce}">'),
                            mimetype="text/html")
  response.headers["Content-Security-Policy"] = (
      "default-src 'self'; "
      f"script-src 'nonce-{nonce}'; "
      "style-src 'self' 'unsafe-inline'; "
      "img-src 'self' data: blob:; "
      # The translation page may talk to a TensorFlow Serving host (?api=).
      "connect-src 'self' http: https:; "
      "object-src 'none'; base-uri 'none'; form-action 'self'; "
      "frame-ancestors 'none'")
  return response


def install(server: flask.Flask, too_large_message: str) -> None:
  """JSON errors for every status, and headers that keep browsers from
  guessing content types or framing the pages."""
  def error(status, message):
    return flask.jsonify({"error": message}), status

  @server.errorhandler(BadRequest)
  def bad_request(e):
    return error(400, str(e))

  @server.errorhandler(exceptions.HTTPException)
  def http_error(e):
    if e.code == 413:
      return error(413, too_large_message)
    return error(e.code, {404: "No such page.",
                          405: "Method not allowed."}.get(e.code, e.name))

  @server.errorhandler(Exception)
  def internal_error(e):
    server.logger.exception("Unhandled error", exc_info=e)
    return error(500, "Internal error; the server's log has the details.")

  @server.after_request
  def headers(response):
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def listen(host: str, port: int) -> socket.socket:
  """A socket bound to `host`:`port`. Raises ValueError (a sentence) when
  it cannot listen there."""
  # Bound here, not by Werkzeug, which prints its own lines and exits when it
  # cannot bind; and before a server loads its model, so that a port in use
  # is said at once.
  family = serving.select_address_family(host, port)
  try:
    return socket.create_server((host, port), family=family)
  except OSError as e:  # In use, not this machine's address, or privileged.
    raise errors.CommandError(
        f"cannot listen on {host}:{port} "
        f"({os.strerror(e.errno) if e.errno else e}). Choose another "
        "--port (--port=0 takes a free one) or --host.") from None


# What the errors found before the app runs mean, and what to do.
_BEFORE_APP_ERRORS = {
    400: "The request is not valid HTTP/1.1; send one that is",
    414: "The request's URL is longer than 65536 bytes; send a shorter one",
    431: "The request's headers are too large (over 100 lines, or a line "
         "over 65536 bytes); send fewer or shorter ones (from a browser: "
         "clear this site's cookies)",
    505: "The request's HTTP version is not supported; send HTTP/1.1",
}


class _Handler(serving.WSGIRequestHandler):
  """Werkzeug's request handler, answering the errors it finds before the
  app runs (an oversized header, a request that is not HTTP) as JSON, like
  every other error, not as http.server's HTML page."""

  def send_error(self, code: int, message: Optional[str] = None,
                 explain: Optional[str] = None) -> None:
    del explain
    short = self.responses.get(code, ("Error",))[0]
    body = json.dumps({"error": _BEFORE_APP_ERRORS.get(
        code, f"{short}: {message or short}") + "."}).encode()
    self.log_error("code %d, message %s", code, message)
    self._discard_input()
    self.send_response(code, short)
    for name, value in (("Connection", "close"),
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(body))),
                        ("X-Content-Type-Options", "nosniff")):
      self.send_header(name, value)
    self.end_headers()
    if self.command != "HEAD":
      self.wfile.write(body)

  def _discard_input(self):
    # What the client still sends (up to 1 MB) is read, as Werkzeug does
    # after a 413: closing with unread data would reset the connection
    # before the client reads the answer.
    with selectors.DefaultSelector() as selector:
      selector.register(self.connection, selectors.EVENT_READ)
      for _ in range(16):
        if not selector.select(timeout=0.01) or not self.connection.recv(
            65536):
          break


def make_server(host: str, port: int, app: flask.Flask,
                request_timeout: float,
                sock: Optional[socket.socket] = None
                ) -> serving.BaseWSGIServer:
  """A threaded Werkzeug server on `sock` (which it takes over; by default
  `listen(host, port)`) whose connections time out after `request_timeout`
  seconds of silence, and whose every error is JSON. Raises ValueError (a
  sentence) when it cannot listen."""
  class Handler(_Handler):
    timeout = request_timeout  # socketserver sets it on each connection.

  with sock or listen(host, port) as bound:  # Werkzeug uses a duplicate.
    server = serving.make_server(host, port, app, threaded=True,
                                 request_handler=Handler, fd=bound.fileno())
  # What http.server's bind would have set: the port chosen for --port=0.
  server.server_name, server.server_port = host, server.port
  return server


def neutral_image(path: str,
                  max_pixels: int = config_lib.DEFAULT_MAX_PIXELS
                  ) -> Image.Image:
  """The image at `path` decoded as 8-bit RGB(A), turned as a browser shows
  it; TooLargeError (before decoding) for one that declares more than
  `max_pixels` pixels, OSError (or another of Pillow's errors) for one that
  does not decode."""
  with data_lib.open_image(path, max_pixels) as image:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit: scale.
      image = Image.fromarray((np.asarray(image, np.int64) >> 8).clip(
          0, 255).astype(np.uint8))
    if "transparency" in image.info:
      image = image.convert("RGBA")
    return image.convert("RGBA" if "A" in image.getbands() else "RGB")


def neutral_png(path: str, max_pixels: int = config_lib.DEFAULT_MAX_PIXELS
                ) -> io.BytesIO:
  """`neutral_image` as PNG bytes, with no colour profile or metadata of
  the file's."""
  buffer = io.BytesIO()
  neutral_image(path, max_pixels).save(buffer, "PNG", icc_profile=None)
  buffer.seek(0)
  return buffer


def check_images(paths: List[str], max_pixels: int) -> None:
  """Every image of `paths` decodes (fully, as `neutral_image` serves it)
  within `max_pixels`: ValueError naming the first that does not, so that
  a page is never left with an image it cannot show."""
  for path in paths:
    try:
      neutral_image(path, max_pixels)
    except data_lib.TooLargeError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      # Pillow's decoders raise OSError, SyntaxError, ValueError and more.
      reason = str(e)
      if isinstance(e, Image.UnidentifiedImageError):
        reason = ("the file is empty" if not os.path.getsize(path) else
                  "no image format Pillow reads")
      raise errors.CommandError(
          f"{path} cannot be decoded ({reason}); replace or remove it, then "
          "start again.") from None
