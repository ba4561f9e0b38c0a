"""datasets download against a local HTTP server on 127.0.0.1."""

import functools
import hashlib
import http.server
import io
import os
import socket
import tarfile

import pytest

from conftest import run_command, serving_in_thread
from pix2pix_tf import outputs


def make_archive(path, name="facades"):
  """A small NAME.tar.gz laid out like the real ones."""
  with tarfile.open(path, "w:gz") as tar:
    for split, count in (("train", 3), ("val", 2), ("test", 1)):
      for i in range(count):
        data = f"{split}-{i}".encode() * 100
        info = tarfile.TarInfo(f"{name}/{split}/{i + 1}.jpg")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def server(tmp_path):
  root = tmp_path / "www"
  root.mkdir()
  handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                              directory=str(root))
  with serving_in_thread(http.server.ThreadingHTTPServer(
      ("127.0.0.1", 0), handler)) as httpd:
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"


def run_tool(name, dest, *args):
  """datasets download NAME into dest/NAME."""
  return run_command("datasets", "download", name,
                     f"--output={os.path.join(dest, name)}", *args,
                     timeout=300)


@pytest.mark.slow
def test_downloads_checks_and_extracts_into_output(server, tmp_path):
  root, url = server
  make_archive(root / "facades.tar.gz")
  digest = hashlib.sha256((root / "facades.tar.gz").read_bytes()).hexdigest()
  dest = tmp_path / "datasets"
  result = run_tool("facades", dest, f"--base_url={url}",
                    f"--sha256={digest}")
  assert result.returncode == 0, result.stderr
  assert f"SHA-256 of facades.tar.gz: {digest}" in result.stdout
  for split, count in (("train", 3), ("val", 2), ("test", 1)):
    assert len(os.listdir(dest / "facades" / split)) == count
  assert (dest / "facades" / "val" / "2.jpg").read_bytes() == b"val-1" * 100
  # Nothing else is left beside it: no archive, no staging folder.
  assert sorted(os.listdir(dest)) == [outputs.MANIFEST, "facades"]
  assert sorted(os.listdir(dest / "facades")) == ["test", "train", "val"]
  # A second run finds it and does nothing.
  again = run_tool("facades", dest, f"--base_url={url}")
  assert again.returncode == 0 and "already exists" in again.stdout


@pytest.mark.slow
def test_an_archive_of_another_digest_is_refused(server, tmp_path):
  root, url = server
  make_archive(root / "maps.tar.gz", "maps")
  dest = tmp_path / "datasets"
  digest = hashlib.sha256((root / "maps.tar.gz").read_bytes()).hexdigest()
  result = run_tool("maps", dest, f"--base_url={url}", "--sha256=" + "0" * 64)
  assert result.returncode != 0
  assert (f"{url}/maps.tar.gz has the SHA-256 {digest}, not --sha256="
          + "0" * 64) in result.stderr
  assert "trying again" not in result.stdout  # A wrong digest is final.
  assert not (dest / "maps").exists()
  assert os.listdir(dest) == []
  # A digest in capitals is the same digest; a value of another length is
  # refused before anything is downloaded.
  upper = run_tool("maps", dest, f"--base_url={url}",
                   f"--sha256={digest.upper()}")
  assert upper.returncode == 0, upper.stderr
  short = run_tool("maps", tmp_path / "elsewhere", f"--base_url={url}",
                   "--sha256=abc")
  assert short.returncode != 0
  assert "--sha256=abc is not a SHA-256 (64 hex digits)" in short.stderr
  assert "Downloading" not in short.stdout


@pytest.mark.slow
def test_a_silent_server_times_out(tmp_path):
  with socket.socket() as silent:  # Accepts connections, never answers.
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    port = silent.getsockname()[1]
    result = run_tool("facades", tmp_path / "datasets",
                      f"--base_url=http://127.0.0.1:{port}", "--timeout=2",
                      "--retries=1")
  assert result.returncode != 0
  # Tried twice, then the error.
  assert result.stdout.count("Download failed") == 1
  assert "trying again in 2 s (1 of 1)" in result.stdout
  assert "in 2 attempts" in result.stderr
  assert f"Could not download http://127.0.0.1:{port}/facades.tar.gz" in (
      result.stderr)
  assert not (tmp_path / "datasets" / "facades").exists()


@pytest.mark.slow
def test_unreachable_server_is_a_clear_error(tmp_path):
  with socket.socket() as s:  # A port on loopback that nobody listens on.
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  dest = tmp_path / "datasets"
  result = run_tool("maps", dest, f"--base_url=http://127.0.0.1:{port}",
                    "--retries=0")
  assert result.returncode != 0
  assert f"Could not download http://127.0.0.1:{port}/maps.tar.gz" in (
      result.stderr)
  assert "Check the network connection" in result.stderr
  assert not (dest / "maps").exists()
  assert os.listdir(dest) == []


@pytest.mark.slow
def test_missing_archive_is_a_clear_error(server, tmp_path):
  _, url = server
  result = run_tool("cityscapes", tmp_path / "d", f"--base_url={url}")
  assert result.returncode != 0
  assert "404" in result.stderr and "cityscapes.tar.gz" in result.stderr
  assert ("Check --base_url and the name, or download the archive by hand"
          in result.stderr)
  assert "trying again" not in result.stdout  # A 404 is final.
  assert not (tmp_path / "d" / "cityscapes").exists()


def flaky_handler():
  """A handler class that answers the first GET with HTTP 503 and the second
  with a body cut short of its Content-Length, and serves the file from the
  third on; `answered` counts the GETs."""

  class FlakyHandler(http.server.SimpleHTTPRequestHandler):
    answered = 0

    def do_GET(self):  # pylint: disable=invalid-name
      FlakyHandler.answered += 1
      if FlakyHandler.answered == 1:
        self.send_error(503, "Busy")
      elif FlakyHandler.answered == 2:
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"x" * 1000)
        self.close_connection = True
      else:
        super().do_GET()

  return FlakyHandler


@pytest.mark.slow
def test_a_server_error_and_a_cut_download_are_tried_again(tmp_path):
  root = tmp_path / "www"
  root.mkdir()
  make_archive(root / "facades.tar.gz")
  digest = hashlib.sha256((root / "facades.tar.gz").read_bytes()).hexdigest()
  flaky = flaky_handler()
  handler = functools.partial(flaky, directory=str(root))
  with serving_in_thread(http.server.ThreadingHTTPServer(
      ("127.0.0.1", 0), handler)) as httpd:
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    dest = tmp_path / "datasets"
    result = run_tool("facades", dest, f"--base_url={url}",
                      f"--sha256={digest}")
  assert result.returncode == 0, result.stderr
  assert flaky.answered == 3
  assert "503" in result.stdout
  assert "trying again in 2 s (1 of 2)" in result.stdout
  assert "trying again in 4 s (2 of 2)" in result.stdout
  assert f"SHA-256 of facades.tar.gz: {digest}" in result.stdout
  assert len(os.listdir(dest / "facades" / "train")) == 3
  assert sorted(os.listdir(dest)) == [outputs.MANIFEST, "facades"]


@pytest.mark.slow
def test_corrupt_archive_leaves_no_half_extracted_folder(server, tmp_path):
  root, url = server
  make_archive(root / "good.tar.gz")
  # Cut the archive short: the first members extract, the rest fail.
  data = (root / "good.tar.gz").read_bytes()
  (root / "night2day.tar.gz").write_bytes(data[: len(data) // 2])
  dest = tmp_path / "datasets"
  result = run_tool("night2day", dest, f"--base_url={url}")
  assert result.returncode != 0
  assert "not a readable .tar.gz archive" in result.stderr
  assert os.listdir(dest) == []


@pytest.mark.slow
def test_unknown_dataset_name_is_rejected(tmp_path):
  result = run_tool("imagenet", tmp_path)
  assert result.returncode != 0
  assert ("Give one dataset name after download: facades, cityscapes"
          in result.stderr)


@pytest.mark.parametrize("failure, tried", [
    ("http 503", 3), ("http 429", 3), ("http 404", 1), ("refused", 3),
    ("timeout", 3), ("cut", 3), ("disk full", 1), ("bad scheme", 1)])
def test_only_failures_the_server_may_not_repeat_are_tried_again(
    monkeypatch, tmp_path, failure, tried):
  """download() against get_file failing as it does for each cause (read
  from Keras's get_file: HTTP and URL errors become a bare Exception with the
  error as its context; others pass through)."""
  import urllib.error
  import urllib.request
  import keras
  from pix2pix_tf.data import download

  def fail():
    if failure.startswith("http"):
      code = int(failure.split()[1])
      error = urllib.error.HTTPError("u", code, "msg", None, None)
    elif failure == "refused":
      error = urllib.error.URLError(ConnectionRefusedError(111, "refused"))
    elif failure == "cut":
      error = urllib.request.ContentTooShortError("got only 1 byte", None)
    elif failure == "timeout":
      raise TimeoutError("timed out")
    elif failure == "disk full":
      raise OSError(28, "No space left on device")
    else:
      raise ValueError("unknown url type: 'example.org/x.tar.gz'")
    try:
      raise error
    except urllib.error.URLError:
      raise Exception(f"URL fetch failure on u: {error}")  # pylint: disable=raise-missing-from

  calls = []

  def get_file(**kwargs):
    calls.append(kwargs["origin"])
    if len(calls) <= 2:
      fail()
    return "saved"

  monkeypatch.setattr(keras.utils, "get_file", get_file)
  waits = []
  monkeypatch.setattr(download.time, "sleep", waits.append)
  if tried == 3:  # Fails twice, then the third attempt succeeds.
    assert download.download("http://h/x.tar.gz", str(tmp_path)) == "saved"
    assert waits == [2, 4]
  else:
    with pytest.raises(download.DownloadError) as error:
      download.download("http://h/x.tar.gz", str(tmp_path))
    assert waits == []
    if failure == "disk full":
      assert "Could not write" in str(error.value)
      assert "--output" in str(error.value)
    else:
      assert "--base_url" in str(error.value)
  assert len(calls) == tried


def test_the_wait_between_attempts_is_at_most_a_minute(monkeypatch,
                                                         tmp_path):
  import keras
  from pix2pix_tf.data import download

  calls = []

  def get_file(**kwargs):
    calls.append(kwargs)
    raise TimeoutError("timed out")

  monkeypatch.setattr(keras.utils, "get_file", get_file)
  waits = []
  monkeypatch.setattr(download.time, "sleep", waits.append)
  with pytest.raises(download.DownloadError, match="in 9 attempts"):
    download.download("http://h/x.tar.gz", str(tmp_path), retries=8)
  assert waits == [2, 4, 8, 16, 32, 60, 60, 60]
  # No retries (or fewer than none, from Python): one attempt, no wait.
  assert len(calls) == 9
  for retries in (0, -1):
    waits.clear(), calls.clear()
    with pytest.raises(download.DownloadError, match="in one attempt:"):
      download.download("http://h/x.tar.gz", str(tmp_path), retries=retries)
    assert (waits, len(calls)) == ([], 1)
