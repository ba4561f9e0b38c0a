"""What both pages' servers (the translation server and the study) share:
JSON errors, security headers, request bodies read safely, data put into a
page safely, the pages themselves (pages/), and a server that closes silent
connections."""

import importlib.resources
import io
import json
import os
import secrets
import socket
from typing import Optional

import flask
import numpy as np
from PIL import Image
from PIL import ImageOps
from werkzeug import exceptions
from werkzeug import serving



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
    raise ValueError(
        f"cannot listen on {host}:{port} "
        f"({os.strerror(e.errno) if e.errno else e}). Choose another "
        "--port (--port=0 takes a free one) or --host.") from None


def make_server(host: str, port: int, app: flask.Flask,
                request_timeout: float,
                sock: Optional[socket.socket] = None
                ) -> serving.BaseWSGIServer:
  """A threaded Werkzeug server on `sock` (which it takes over; by default
  `listen(host, port)`) whose connections time out after `request_timeout`
  seconds of silence. Raises ValueError (a sentence) when it cannot
  listen."""
  class Handler(serving.WSGIRequestHandler):
    timeout = request_timeout  # socketserver sets it on each connection.

  with sock or listen(host, port) as bound:  # Werkzeug uses a duplicate.
    server = serving.make_server(host, port, app, threaded=True,
                                 request_handler=Handler, fd=bound.fileno())
  # What http.server's bind would have set: the port chosen for --port=0.
  server.server_name, server.server_port = host, server.port
  return server


def neutral_png(path: str) -> io.BytesIO:
  """The image at `path` as 8-bit RGB(A) PNG bytes, turned as a browser
  shows it, with no colour profile or metadata of the file's."""
  with Image.open(path) as image:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit: scale.
      image = Image.fromarray((np.asarray(image, np.int64) >> 8).clip(
          0, 255).astype(np.uint8))
    if "transparency" in image.info:
      image = image.convert("RGBA")
    image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
  buffer = io.BytesIO()
  image.save(buffer, "PNG", icc_profile=None)
  buffer.seek(0)
  return buffer
