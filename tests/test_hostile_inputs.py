"""Careless and hostile inputs: each gets a clear message and the right exit
code, and every file that existed before is byte-identical afterwards."""

import base64
import hashlib
import http.client as http_client
import io
import json
import os
import re
import shutil
import socket
import struct
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import (NO_TENSORFLOW, run_command, run_saying_imports,
                      serving_in_thread, small_config)
from pix2pix_tf.data import building
from pix2pix_tf.data import demo
from pix2pix_tf.data import headers
from pix2pix_tf.data import images as images_lib
from pix2pix_tf import outputs
from pix2pix_tf import serving
from pix2pix_tf import data as data_lib
from pix2pix_tf.serving import server as server_lib
from pix2pix_tf.serving import study
from pix2pix_tf import training
from pix2pix_tf.serving import web


def tree(root):
  """{relative path: sha256} of every file under `root`, and every folder
  (as None), so that a removed empty folder shows as well."""
  files = {}
  for folder, subfolders, names in os.walk(root):
    for name in subfolders:
      files[os.path.relpath(os.path.join(folder, name), root)] = None
    for name in names:
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        files[os.path.relpath(path, root)] = hashlib.sha256(
            f.read()).hexdigest()
  return files


def assert_one_line_error(result, *fragments):
  """A non-zero exit with a one-line message (no traceback) that holds
  every fragment."""
  assert result.returncode != 0, result.stdout
  assert "Traceback" not in result.stderr, result.stderr
  lines = [line for line in result.stderr.splitlines()
           if line.startswith("pix2pix_tf.")]
  assert len(lines) == 1, result.stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


@pytest.fixture
def run_copy(trained_run, tmp_path):
  """A copy of the trained run, free to be damaged by a test."""
  path = str(tmp_path / "run")
  shutil.copytree(trained_run.outputs.model_dir, path)
  return path


def foreign_saved_model(path):
  """A SavedModel that pix2pix_tf did not write."""
  module = tf.Module()
  module.v = tf.Variable(1.0)
  module.f = tf.function(lambda x: x * module.v,
                         input_signature=[tf.TensorSpec([], tf.float32)])
  tf.saved_model.save(module, path)


def own_export_with_a_note(run, path):
  serving.export(run, path)
  with open(os.path.join(path, "NOTES.txt"), "w") as f:
    f.write("my notes")


@pytest.mark.slow
@pytest.mark.parametrize("target", [
    "the run folder", "a folder of user files", "a file",
    "a foreign SavedModel", "an export with a user's file in it",
    "a symbolic link to a folder"])
def test_export_replaces_nothing_but_its_own_export(run_copy, tmp_path,
                                                     target):
  user = tmp_path / "user"
  user.mkdir()
  (user / "thesis.tex").write_text("years of work")
  if target == "the run folder":
    export_dir = run_copy
  elif target == "a folder of user files":
    export_dir = str(user)
  elif target == "a file":
    export_dir = str(user / "thesis.tex")
  elif target == "a foreign SavedModel":
    export_dir = str(tmp_path / "foreign")
    foreign_saved_model(export_dir)
  elif target == "an export with a user's file in it":
    export_dir = str(tmp_path / "noted")
    own_export_with_a_note(run_copy, export_dir)
  else:
    export_dir = str(tmp_path / "link")
    os.symlink(user, export_dir)
  before = tree(tmp_path)
  with pytest.raises(outputs.OutputError) as error:
    serving.export(run_copy, export_dir)
  assert os.path.normpath(export_dir) in str(error.value)
  assert "which pix2pix_tf did not write" in str(
      error.value) or "is not a folder" in str(error.value)
  assert tree(tmp_path) == before


@pytest.mark.slow
def test_export_replaces_its_own_export(run_copy, tmp_path):
  path = str(tmp_path / "export")
  serving.export(run_copy, path, inference_mode="eval")
  serving.export(run_copy, path, inference_mode="paper")
  assert serving.read_metadata(path)["inference_mode"] == "paper"
  assert sorted(os.listdir(tmp_path)) == sorted(
      ["export", outputs.MANIFEST, "run"])


@pytest.mark.slow
def test_the_export_command_refuses_the_run_folder(run_copy):
  before = tree(run_copy)
  result = run_command("export", f"--model_dir={run_copy}",
                       f"--export_dir={run_copy}")
  assert_one_line_error(result, run_copy, "--export_dir")
  assert tree(run_copy) == before


@pytest.mark.slow
def test_training_checks_the_export_folder_before_it_starts(
    trained_run, tmp_path):
  run = tmp_path / "run"
  (run / "export").mkdir(parents=True)
  (run / "export" / "plots.png").write_bytes(b"not a SavedModel")
  before = tree(tmp_path)
  config = small_config(trained_run.data.data_dir, run, max_steps=2)
  with pytest.raises(outputs.OutputError, match=f"{run}/export, which"):
    training.train_and_evaluate(config,
                               tf.distribute.OneDeviceStrategy("/cpu:0"))
  assert tree(tmp_path) == before


@pytest.mark.slow
@pytest.mark.parametrize("change", [
    dict(unet_depth=4), dict(unet_depth=6), dict(ngf=16),
    dict(generator="resnet_6blocks")])
def test_export_refuses_a_checkpoint_that_does_not_fit(run_copy, tmp_path,
                                                       change):
  """A config.json that describes another generator (edited, or from another
  run) must not give an export with some weights left random."""
  path = os.path.join(run_copy, "config.json")
  with open(path) as f:
    changed = {**json.load(f), **change}
  with open(path, "w") as f:
    json.dump(changed, f)
  before = tree(tmp_path)
  with pytest.raises(serving.ExportError, match="does not fit"):
    serving.export(run_copy, str(tmp_path / "export"))
  assert tree(tmp_path) == before


@pytest.mark.slow
def test_export_errors_name_the_file(run_copy, tmp_path):
  missing = os.path.join(run_copy, "checkpoints", "ckpt-999")
  result = run_command("export", f"--model_dir={run_copy}",
                       f"--checkpoint={missing}")
  assert_one_line_error(result, missing, "not found")
  config_path = os.path.join(run_copy, "config.json")
  with open(config_path, "w") as f:
    f.write('{"data_dir": "x", "crop_si')
  before = tree(tmp_path)
  result = run_command("export", f"--model_dir={run_copy}")
  assert_one_line_error(result, config_path, "not readable")
  assert tree(tmp_path) == before


# --- Every command: one sentence, a non-zero exit, nothing changed --------


def damaged_export(run, path):
  shutil.copytree(os.path.join(run.outputs.model_dir, "export"), path)
  with open(os.path.join(path, "saved_model.pb"), "wb") as f:
    f.write(b"\x08\x01garbage")
  return str(path)


def split_with_a_bomb(run, path):
  shutil.copytree(os.path.join(run.data.data_dir, "val"), path / "val")
  small_bomb(path / "val" / "bomb.png")
  return str(path)


def with_an_empty_image(run, path):
  shutil.copytree(os.path.join(run.data.data_dir, "val"), path)
  (path / "empty.png").write_bytes(b"")
  return str(path)


def listening_socket():
  sock = socket.socket()
  sock.bind(("127.0.0.1", 0))
  sock.listen()
  return sock


# name: (command, a function of (trained run, tmp_path, busy port) giving the
# arguments, the fragments the one-line error holds (each formatted with
# tmp=tmp_path and port=the busy port)).
HOSTILE_COMMANDS = {
    "evaluate: a damaged SavedModel": (
        "evaluate", lambda run, tmp, port: [
            f"--saved_model={damaged_export(run, tmp / 'export')}",
            f"--data_dir={run.data.data_dir}", "--split=val"],
        ["{tmp}/export", "could not be loaded"]),
    "evaluate: a decompression bomb in the split": (
        "evaluate", lambda run, tmp, port: [
            f"--model_dir={run.outputs.model_dir}",
            f"--data_dir={split_with_a_bomb(run, tmp / 'data')}",
            "--split=val", "--max_pixels=1000000"],
        ["{tmp}/data/val/bomb.png", "--max_pixels=1000000"]),
    "evaluate: --output names a folder": (
        "evaluate", lambda run, tmp, port: [
            f"--model_dir={run.outputs.model_dir}",
            f"--data_dir={run.data.data_dir}",
            "--split=val", f"--output={tmp}"],
        ["--output={tmp}", "is a folder"]),
    "evaluate: a split that is not there": (
        "evaluate", lambda run, tmp, port: [
            f"--model_dir={run.outputs.model_dir}",
            f"--data_dir={run.data.data_dir}",
            "--split=tset"],
        ["tset"]),
    "predict: --output names a file": (
        "predict", lambda run, tmp, port: [
            f"--model_dir={run.outputs.model_dir}",
            f"--input={run.data.data_dir}/val",
            f"--output={tmp / 'notes.txt'}"],
        ["{tmp}/notes.txt"]),
    "serve: a port in use": (
        "serve", lambda run, tmp, port: [
            f"--saved_model={run.outputs.model_dir}/export", f"--port={port}"],
        ["127.0.0.1:{port}", "--port"]),
    "study: --answers names a folder": (
        "study", lambda run, tmp, port: [
            f"--real_dir={run.data.data_dir}/val",
            f"--generated_dir={run.data.data_dir}/train", f"--answers={tmp}"],
        ["--answers={tmp}", "is a folder"]),
    "study: a port in use": (
        "study", lambda run, tmp, port: [
            "--protocol=single", f"--real_dir={run.data.data_dir}/val",
            f"--generated_dir={run.data.data_dir}/train",
            f"--answers={tmp / 'answers.jsonl'}", f"--port={port}"],
        ["127.0.0.1:{port}", "--port"]),
    "study: an empty image (decoded at start-up, not mid-study)": (
        "study", lambda run, tmp, port: [
            "--protocol=single",
            f"--real_dir={with_an_empty_image(run, tmp / 'real')}",
            f"--generated_dir={run.data.data_dir}/train",
            f"--answers={tmp / 'answers.jsonl'}"],
        ["{tmp}/real/empty.png", "cannot be decoded (the file is empty)"]),
    "study: 2afc folders whose names do not pair": (
        "study", lambda run, tmp, port: [
            f"--real_dir={run.data.data_dir}/val",
            f"--generated_dir={run.data.data_dir}/train",
            f"--answers={tmp / 'answers.jsonl'}"],
        ["no namesake", "--protocol=single"]),
    "train: a data folder that is not there": (
        "train", lambda run, tmp, port: [
            f"--data_dir={tmp / 'nothing'}", f"--model_dir={tmp / 'run'}"],
        ["{tmp}/nothing"]),
}


# Answered before TensorFlow's import (seconds): the study page needs only
# Pillow and Flask, an --output is checked first, and serve takes its port
# before it loads the model.
ANSWERED_AT_ONCE = {"evaluate: --output names a folder",
                    "predict: --output names a file", "serve: a port in use"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HOSTILE_COMMANDS))
def test_each_command_answers_bad_input_with_a_sentence(trained_run, tmp_path,
                                                       name):
  command, make_args, fragments = HOSTILE_COMMANDS[name]
  (tmp_path / "notes.txt").write_text("a user's notes")
  busy = listening_socket()
  try:
    port = busy.getsockname()[1]
    args = make_args(trained_run, tmp_path, port)
    before = tree(tmp_path), tree(trained_run.outputs.model_dir)
    result = run_saying_imports(command, *args)
  finally:
    busy.close()
  assert_one_line_error(result, *(f.format(tmp=tmp_path, port=port)
                                  for f in fragments))
  if command == "study" or name in ANSWERED_AT_ONCE:
    assert NO_TENSORFLOW in result.stdout
  assert (tree(tmp_path), tree(trained_run.outputs.model_dir)) == before


# --- Images that declare more pixels than they are worth ------------------


def encode(array, image_format, **options):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format=image_format, **options)
  return buffer.getvalue()


@pytest.mark.parametrize("image_format, mode, options", [
    ("PNG", "RGB", {}), ("PNG", "RGBA", {}), ("PNG", "L", {}),
    ("JPEG", "RGB", {}), ("GIF", "P", {}), ("BMP", "RGB", {}),
    ("BMP", "P", {}), ("BMP", "L", {}),
    ("WEBP", "RGB", {"lossless": False}), ("WEBP", "RGB", {"lossless": True}),
    ("WEBP", "RGBA", {"lossless": False})])
def test_the_declared_size_is_read_from_the_header_alone(image_format, mode,
                                                        options):
  """encoded_pixels, which runs before decoding, agrees with Pillow's size
  and with the decoded image (a 37x23 image, so width and height differ)."""
  array = np.random.RandomState(0).randint(0, 255, (23, 37, 4), np.uint8)
  image = Image.fromarray(array).convert(mode)
  buffer = io.BytesIO()
  image.save(buffer, format=image_format, **options)
  contents = buffer.getvalue()
  assert Image.open(io.BytesIO(contents)).size == (37, 23)
  assert int(data_lib.encoded_pixels(tf.constant(contents))) == 37 * 23
  # And the header is all that is read: the first 32 bytes (JPEG aside,
  # whose header libjpeg parses, and GIF, whose frames are counted through
  # the file) give the same count.
  if image_format not in ("JPEG", "GIF"):
    assert int(data_lib.encoded_pixels(
        tf.constant(contents[:32]))) == 37 * 23


def os2_bmp(rgb):
  """A 24-bit BMP with the 12-byte OS/2 1.x header, rows bottom-up, each
  padded to 4 bytes (Pillow reads it; it writes Windows headers only)."""
  height, width, _ = rgb.shape
  stride = (3 * width + 3) // 4 * 4
  rows = b"".join(row[:, ::-1].tobytes().ljust(stride, b"\0")
                  for row in rgb[::-1])
  offset = 14 + 12
  return (b"BM" + (offset + len(rows)).to_bytes(4, "little") + b"\0" * 4 +
          offset.to_bytes(4, "little") + (12).to_bytes(4, "little") +
          width.to_bytes(2, "little") + height.to_bytes(2, "little") +
          (1).to_bytes(2, "little") + (24).to_bytes(2, "little") + rows)


def top_down_bmp(rgb):
  """A 24-bit Windows BMP whose height is negative: rows top-down."""
  buffer = io.BytesIO()
  Image.fromarray(rgb[::-1]).save(buffer, format="BMP")
  contents = bytearray(buffer.getvalue())
  contents[22:26] = (-rgb.shape[0]).to_bytes(4, "little", signed=True)
  return bytes(contents)


@pytest.mark.parametrize("write", [os2_bmp, top_down_bmp])
def test_a_bmps_size_is_read_from_either_header_and_either_row_order(write):
  rgb = np.random.RandomState(0).randint(0, 255, (23, 37, 3), np.uint8)
  contents = write(rgb)
  image = Image.open(io.BytesIO(contents))
  assert image.size == (37, 23)
  np.testing.assert_array_equal(np.asarray(image.convert("RGB")), rgb)
  assert int(data_lib.encoded_pixels(tf.constant(contents))) == 37 * 23
  assert int(data_lib.encoded_pixels(tf.constant(contents[:32]))) == 37 * 23


@pytest.mark.parametrize("frames, side", [(1, 30), (2, 30), (7, 64),
                                          (200, 300)])
def test_a_gifs_pixels_are_those_of_every_frame_it_decodes(frames, side):
  """TensorFlow decodes every frame of a GIF: the export's gate counts them
  (as Pillow does for serve and predict), with no frame decoded."""
  gif = animation(frames, side)
  decoded = tf.io.decode_gif(gif).shape[0]
  assert decoded == frames == Image.open(io.BytesIO(gif)).n_frames
  assert data_lib.check_pixels(gif, 10**9).pixels == frames * side * side
  assert int(data_lib.encoded_pixels(tf.constant(gif))) == (
      frames * side * side)


def animated_webp(frames=3, side=16):
  images = [Image.fromarray(np.full((side, side, 3), 40 * index, np.uint8))
            for index in range(frames)]
  buffer = io.BytesIO()
  images[0].save(buffer, "WEBP", save_all=True, append_images=images[1:])
  return buffer.getvalue()


def test_an_animated_webp_never_reaches_tensorflows_decoder(
    decoding_server):
  """TensorFlow's WebP decoder corrupts the heap on an animation (the
  process aborts soon after): every gate refuses one, by its header."""
  webp = animated_webp()
  still = encode(np.zeros((16, 16, 3), np.uint8), "WEBP", lossless=True)
  assert bool(data_lib.is_animated_webp(tf.constant(webp)))
  assert not bool(data_lib.is_animated_webp(tf.constant(still)))
  assert not bool(data_lib.is_animated_webp(tf.constant(b"RIFF")))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="an animated WebP image, which is not read"):
    data_lib.decode_image(tf.constant(webp))
  assert data_lib.decode_image(tf.constant(still)).shape == (16, 16, 3)
  with pytest.raises(data_lib.UnsupportedImageError,
                     match="is an animated WebP image"):
    data_lib.check_pixels(webp, 10**6)
  status, _, reply = http(decoding_server, "POST",
                          "/v1/models/pix2pix:predict", b64_body(webp),
                          {"Content-Type": "application/json"})
  assert status == 400, reply[:300]
  assert "animated WebP" in json.loads(reply)["error"]
  assert healthy_within_a_second(decoding_server)


def test_a_photo_gif_with_local_colour_tables_counts_its_frames():
  noise = np.random.RandomState(0).randint(0, 255, (5, 120, 160, 3),
                                           np.uint8)
  frames = [Image.fromarray(frame).convert("P", palette=Image.ADAPTIVE)
            for frame in noise]
  buffer = io.BytesIO()
  frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:],
                 comment=b"a comment block", loop=0, duration=100)
  gif = buffer.getvalue()
  assert tf.io.decode_gif(gif).shape[0] == 5
  # A bound: never fewer than the frames decoded; noise's compressed data
  # can look like one more descriptor.
  bound = int(data_lib.encoded_pixels(tf.constant(gif)))
  assert 5 * 160 * 120 <= bound <= 6 * 160 * 120


def small_bomb(path=None, side=3000):
  """A PNG of a few kilobytes that declares side x side pixels."""
  contents = encode(np.zeros((side, side), np.uint8), "PNG", optimize=True)
  assert len(contents) < 40_000
  if path:
    with open(path, "wb") as f:
      f.write(contents)
  return contents


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "GIF", "BMP"])
def test_the_gate_names_the_size_and_max_pixels_past_pillows_limit(
    tmp_path, monkeypatch, image_format):
  file = tmp_path / f"big.{image_format.lower()}"
  path = str(file)
  Image.new("RGB", (300, 200)).save(path, format=image_format)
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
  with pytest.raises(Image.DecompressionBombError):
    Image.open(path)  # Pillow's own refusal says no size.
  expected = (f"{path} is 300x200 = 60000 pixels, more than "
              "--max_pixels=59999. ")
  for source in (path, file.read_bytes()):
    with pytest.raises(data_lib.TooLargeError) as error:
      data_lib.check_pixels(source, 59_999, name=path)
    assert str(error.value).startswith(expected)
    assert data_lib.check_pixels(source, 60_000) == (300, 200, 1)


@pytest.mark.slow
def test_the_export_refuses_too_large_images_before_decoding(run_copy,
                                                             tmp_path):
  path = serving.export(run_copy, str(tmp_path / "export"),
                       max_pixels=1_000_000)
  loaded = tf.saved_model.load(path)
  assert json.loads(loaded.metadata_json.numpy())["max_pixels"] == 1_000_000
  translate = loaded.signatures["translate_encoded"]
  fine = encode(np.zeros((40, 60, 3), np.uint8), "PNG")
  assert len(translate(images_bytes=tf.constant([fine]))[
      "generated_image_bytes"].numpy()) == 1
  with pytest.raises(tf.errors.InvalidArgumentError, match="max_pixels"):
    translate(images_bytes=tf.constant([small_bomb()]))
  # A format TensorFlow decodes but the gate cannot size (JPEG XL: this
  # is 32x32; one of 14 KB declares 8000x8000) is refused, not decoded.
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="not a JPEG, PNG, GIF, BMP or WebP image"):
    translate(images_bytes=tf.constant([JPEG_XL]))


# A 32x32 JPEG XL image, which tf.io.decode_image decodes.
JPEG_XL = base64.b64decode(
    "/wpHQCQIAgEAvAJLGJuccYQDOIADOCBKwDkFAQAgRIAIEAEiQIT/9+/576Ex55xr7XNvki"
    "QJAVVVVVVV1f///3Pv6+7u7ob/9+/576Ex55xr7XNvkiQJAVVVVVVV1f///3Pv6+7u7ob/"
    "9+/576Ex55xr7XNvkiQJAVVVVVVV1f///3Pv6+7u7ob/9+/576Ex55xr7XNvkiQJAVVVVV"
    "VV1f///3Pv6+7u7j4AFxIAAADgf6Lnf+Lnf+IH")


def test_formats_the_gate_cannot_size_are_never_decoded():
  """tf.io.decode_image reads JPEG XL, whose size no gate reads: the one
  decoding rule refuses it (and anything else unknown) first."""
  assert tf.io.decode_image(JPEG_XL).shape == (32, 32, 3)  # It would.
  assert int(data_lib.encoded_pixels(tf.constant(JPEG_XL))) == -1
  for contents in (JPEG_XL, b"just text", b""):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="not a JPEG, PNG, GIF, BMP or WebP image"):
      data_lib.decode_image(tf.constant(contents))


def windows_bmp(pixels, width, height, bits, compression=0, table=b"",
                colours=0, header=40):
  """A BMP with a Windows header of `header` bytes whose first 40 are
  written here; `pixels` as stored (bottom-up rows, each padded to 4 bytes)
  and `table` (the rest of the header, then colour entries or BI_BITFIELDS
  masks) between those 40 bytes and them."""
  offset = 14 + 40 + len(table)
  return (b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) +
          struct.pack("<IiiHHIIiiII", header, width, height, 1, bits,
                      compression, len(pixels), 2835, 2835, colours, 0) +
          table + pixels)


def bmp_colour_table(count):
  """`count` random colours and their (blue, green, red, 0) entries."""
  rgb = np.random.RandomState(1).randint(0, 255, (count, 3), np.uint8)
  return rgb, b"".join(bytes([b, g, r, 0]) for r, g, b in rgb)


def four_bit_bmp(height=3, width=5):
  rgb, table = bmp_colour_table(16)
  index = np.random.RandomState(2).randint(0, 16, (height, width))
  rows = b""
  for row in index[::-1]:
    packed = bytes(int(row[i]) << 4 | (int(row[i + 1]) if i + 1 < width
                                       else 0) for i in range(0, width, 2))
    rows += packed.ljust(-(-len(packed) // 4) * 4, b"\0")
  return windows_bmp(rows, width, height, 4, 0, table, 16)


def rle8_bmp(height=3, width=5):
  """8 bits per pixel, RLE8-compressed: one run of one pixel at a time."""
  rgb, table = bmp_colour_table(4)
  index = np.random.RandomState(3).randint(0, 4, (height, width))
  runs = b"".join(b"".join(bytes([1, int(i)]) for i in row) + b"\0\0"
                  for row in index[::-1])
  return windows_bmp(runs + b"\0\1", width, height, 8, 1, table, 4)


def bitfields_bmp(masks, height=3, width=5):
  """32 bits per pixel with BI_BITFIELDS (red, green, blue) `masks`, whose
  fourth byte is 255; a 40-byte header and its masks after it."""
  rgb = np.random.RandomState(4).randint(0, 255, (height, width, 3))
  shifts = [m.bit_length() - 8 for m in masks]
  alpha = ({0, 8, 16, 24} - set(shifts)).pop()
  words = sum(rgb[..., c].astype(np.uint32) << s
              for c, s in enumerate(shifts)) + (np.uint32(255) << alpha)
  return windows_bmp(words[::-1].astype("<u4").tobytes(), width, height, 32,
                     3, struct.pack("<III", *masks))


def v5_bmp(height=3, width=5):
  """32 bits per pixel, BI_BITFIELDS, with the 124-byte header (red, green,
  blue and alpha masks in it, then an sRGB colour space) GIMP writes."""
  rgba = np.random.RandomState(5).randint(0, 255, (height, width, 4))
  rest = struct.pack("<IIII", 0xFF0000, 0xFF00, 0xFF, 0xFF000000) + b"BGRs"
  return windows_bmp(rgba[::-1, :, [2, 1, 0, 3]].astype(np.uint8).tobytes(),
                     width, height, 32, 3, rest.ljust(124 - 40, b"\0"),
                     header=124)


def sixteen_bit_bmp(green_bits, height=3, width=5):
  """16 bits per pixel: uncompressed (5 bits each, `green_bits` 5), or with
  BI_BITFIELDS masks of 5, 6 and 5 bits (`green_bits` 6)."""
  rgb = np.random.RandomState(6).randint(0, 255, (height, width, 3))
  words = ((rgb[..., 0] >> 3) << (5 + green_bits) |
           (rgb[..., 1] >> (8 - green_bits)) << 5 | rgb[..., 2] >> 3)
  rows = b"".join(row.astype("<u2").tobytes().ljust(-(-2 * width // 4) * 4,
                                                    b"\0")
                  for row in words[::-1])
  if green_bits == 5:
    return windows_bmp(rows, width, height, 16)
  return windows_bmp(rows, width, height, 16, 3,
                     struct.pack("<III", 0xF800, 0x7E0, 0x1F))


def pillow_bmp(mode):
  rgb = np.random.RandomState(0).randint(0, 255, (3, 5, 3), np.uint8)
  return encode(np.asarray(Image.fromarray(rgb).convert(mode)), "BMP")


RGB_23_BY_37 = np.random.RandomState(0).randint(0, 255, (23, 37, 3), np.uint8)


# BMPs of the kinds Pillow reads: whether TensorFlow's decoder reads each
# as Pillow does.
BMPS = {
    "8 bits, gray": (lambda: pillow_bmp("L"), True),
    "8 bits, palette": (lambda: pillow_bmp("P"), True),
    "24 bits": (lambda: pillow_bmp("RGB"), True),
    "24 bits, top-down": (lambda: top_down_bmp(RGB_23_BY_37), True),
    "32 bits": (lambda: pillow_bmp("RGBA"), True),
    "32 bits, BGRX bitfields": (
        lambda: bitfields_bmp((0xFF0000, 0xFF00, 0xFF)), True),
    "32 bits, 124-byte header": (v5_bmp, True),
    "32 bits, XBGR bitfields": (
        lambda: bitfields_bmp((0xFF000000, 0xFF0000, 0xFF00)), False),
    "1 bit": (lambda: pillow_bmp("1"), False),
    "4 bits": (four_bit_bmp, False),
    "16 bits": (lambda: sixteen_bit_bmp(5), False),
    "16 bits, 565 bitfields": (lambda: sixteen_bit_bmp(6), False),
    "8 bits, RLE8": (rle8_bmp, False),
    "OS/2 header": (lambda: os2_bmp(RGB_23_BY_37), False),
}


def test_the_two_bmp_rules_are_one():
  """images.is_unread_bmp (Python, before decoding) and headers.unread_bmp
  (in every graph that decodes) agree on each header a BMP can have: sizes
  of each header kind, every bit depth and compression, masks of either
  order, and files cut short."""
  rule = tf.function(headers.unread_bmp,
                     input_signature=[tf.TensorSpec([], tf.string)])
  count = 0
  for size in (12, 16, 39, 40, 52, 56, 64, 108, 124):
    for bits in (1, 4, 8, 16, 24, 32):
      for compression in (0, 1, 2, 3, 4, 5, 6):
        for masks in ((0xFF0000, 0xFF00, 0xFF), (0xFF, 0xFF00, 0xFF0000)):
          contents = (b"BM" + bytes(12) + struct.pack(
              "<IiiHHI", size, 5, 3, 1, bits, compression) + bytes(20) +
                      struct.pack("<III", *masks))
          for cut in (len(contents), 50, 30):
            assert images_lib.is_unread_bmp(contents[:cut]) == bool(
                rule(contents[:cut])), (size, bits, compression, masks, cut)
            count += 1
  assert count == 9 * 6 * 7 * 2 * 3
  assert not images_lib.is_unread_bmp(b"\x89PNG\r\n\x1a\n")
  assert not bool(rule(b"\x89PNG\r\n\x1a\n"))


@pytest.mark.parametrize("kind", BMPS)
def test_bmps_tensorflow_does_not_read_are_refused_where_it_decodes(
    kind, tmp_path, decoding_server):
  """Each kind TensorFlow's decoder reads as Pillow does decodes by the
  rule. Each other kind, which it would refuse with a message about
  channels or decode wrong, is refused by name where TensorFlow decodes
  (the rule, the gate of training and the server), and read with Pillow
  where Pillow decodes (the dataset tools, predict)."""
  write, read = BMPS[kind]
  contents = write()
  pillow = np.asarray(Image.open(io.BytesIO(contents)).convert("RGB"))
  assert images_lib.is_unread_bmp(contents) is not read
  assert bool(headers.unread_bmp(tf.constant(contents))) is not read
  path = tmp_path / "image.bmp"
  path.write_bytes(contents)
  np.testing.assert_array_equal(data_lib.read_rgb(str(path)), pillow)
  np.testing.assert_array_equal(serving.translation.read_image(
      str(path), serving.translation.decoder()), pillow)
  if read:
    np.testing.assert_array_equal(
        data_lib.decode_image(tf.constant(contents)), pillow)
    data_lib.check_pixels(str(path), 10**6)
    return
  try:  # TensorFlow's own decoder fails, or decodes it wrong.
    decoded = tf.io.decode_image(contents, channels=3).numpy()
    assert decoded.shape != pillow.shape or (decoded != pillow).any()
  except tf.errors.InvalidArgumentError:
    pass
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="a BMP of a kind that TensorFlow does not read"):
    data_lib.decode_image(tf.constant(contents))
  with pytest.raises(data_lib.UnsupportedImageError,
                     match=f"{path} is a BMP of a kind that TensorFlow does "
                     r"not read as Pillow does \(1, 4 or 16 bits .*save it "
                     "as PNG"):
    data_lib.check_pixels(str(path), 10**6)
  with pytest.raises(data_lib.UnsupportedImageError, match=str(path)):
    data_lib.check_headers([str(path)])  # Training's, before a step.
  status, _, reply = http(decoding_server, "POST",
                          "/v1/models/pix2pix:predict", b64_body(contents),
                          {"Content-Type": "application/json"})
  assert status == 400, reply[:300]
  assert "a BMP of a kind that TensorFlow does not read" in json.loads(
      reply)["error"]


@pytest.mark.slow
def test_predict_skips_a_too_large_image_with_a_message(trained_run,
                                                       tmp_path):
  inputs = tmp_path / "inputs"
  inputs.mkdir()
  Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(inputs / "ok.png")
  small_bomb(inputs / "bomb.png")
  export = os.path.join(trained_run.outputs.model_dir, "export")
  result = run_command(
      "predict", f"--saved_model={export}",
      f"--input={inputs}", f"--output={tmp_path / 'out'}",
      "--max_pixels=1000000")
  assert result.returncode != 0  # Not every image was translated.
  assert "bomb.png is 3000x3000 = 9000000 pixels, more than " \
         "--max_pixels=1000000" in result.stderr
  assert sorted(os.listdir(tmp_path / "out")) == [outputs.MANIFEST, "ok.png"]


def test_dataset_tools_skip_too_large_images(tmp_path):
  photos = tmp_path / "photos"
  photos.mkdir()
  Image.fromarray(np.random.RandomState(0).randint(
      0, 255, (40, 40, 3), np.uint8)).save(photos / "ok.png")
  small_bomb(photos / "bomb.png")
  summary = building.colorize(data_lib.list_images(str(photos)),
                              outputs.Folder(str(tmp_path / "out"), "output"),
                              "train", 32, max_pixels=1_000_000)
  assert summary.written == 1
  assert "larger than --max_pixels" in summary.report()
  assert str(photos / "bomb.png") in summary.report()


# --- The translation server ------------------------------------------------


class Unused:
  """A translator that must not be reached: what is refused is refused
  before anything is decoded or translated."""

  metadata = {"image_size": 32, "max_pixels": 1_000_000,
              "flags": {"data_dir": "/home/someone/data",
                        "model_dir": "/home/someone/runs/x", "ngf": 64}}
  signatures = {"translate_encoded": None, "translate_encoded_native": None}
  signature_defs = {}
  encoded_signature = "translate_encoded"
  requested_resolution = None
  version = 1

  def input_specs(self, signature):
    return {"images_bytes": tf.TensorSpec([None], tf.string)}

  def run(self, signature, inputs, wait=None):
    raise AssertionError("the model was called")


class Decoding(Unused):
  """A translator that decodes every image it is given, as the export's
  signatures do, before it fails: what reaches it costs memory."""

  def run(self, signature, inputs, wait=None):
    decoded = [np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))
               for image in inputs["images_bytes"]]
    raise AssertionError(f"{len(decoded)} images reached the model")


def served(app):
  """Serves `app` on a free port in this process: yields the port."""
  with serving_in_thread(web.make_server("127.0.0.1", 0, app,
                                         request_timeout=1.0)) as httpd:
    yield httpd.server_port


@pytest.fixture
def translation_server():
  yield from served(server_lib.create_app(Unused(), [
      {"name": "</script><script>document.title='pwned'</script>",
       "color": [1, 2, 3]}], max_upload_mb=0.05, request_timeout=1.0))


@pytest.fixture
def decoding_server():
  """A translation server whose model decodes what reaches it; --max_pixels
  is the export's 1,000,000, --max_upload_mb 0.05."""
  yield from served(server_lib.create_app(
      Decoding(), max_upload_mb=0.05, request_timeout=1.0))


def http(port, method, path, body=None, headers=None, chunked=False):
  connection = http_client.HTTPConnection("127.0.0.1", port, timeout=10)
  try:
    connection.request(method, path, body=body, headers=headers or {},
                       encode_chunked=chunked)
    reply = connection.getresponse()
    return reply.status, dict(reply.getheaders()), reply.read()
  finally:
    connection.close()


def healthy_within_a_second(port):
  start = time.monotonic()
  status, _, _ = http(port, "GET", "/healthz")
  return status == 200 and time.monotonic() - start < 1.0


def b64_body(contents):
  return json.dumps({"signature_name": "translate_encoded",
                     "instances": [{"b64": base64.b64encode(
                         contents).decode()}]}).encode()


def chunks(size, piece=16_384):
  for start in range(0, size, piece):
    yield b"x" * min(piece, size - start)


HOSTILE_REQUESTS = {
    "a decompression bomb": (lambda: b64_body(small_bomb()), False, 413,
                             "--max_pixels=1000000"),
    "deeply nested JSON": (lambda: b"[" * 100_000 + b"]" * 100_000, False,
                           413, "--max_upload_mb"),
    "nested JSON under the size limit": (
        lambda: b"[" * 20_000 + b"]" * 20_000, False, 400, "nested"),
    "a JSON list": (lambda: b"[1, 2]", False, 400, "no object"),
    "not JSON": (lambda: b"\xff\xfe{", False, 400, "not JSON"),
    "an oversized chunked body": (lambda: chunks(200_000), True, 413,
                                  "--max_upload_mb"),
    "not base64": (lambda: b'{"signature_name": "translate_encoded", '
                   b'"instances": [{"b64": "%%%"}]}', False, 400, "base64"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_REQUESTS))
def test_the_server_refuses_hostile_requests_with_json(translation_server,
                                                      name):
  make_body, chunked, status, fragment = HOSTILE_REQUESTS[name]
  got, headers, body = http(translation_server, "POST",
                            "/v1/models/pix2pix:predict", make_body(),
                            {"Content-Type": "application/json"}, chunked)
  assert got == status, body[:300]
  assert headers["Content-Type"] == "application/json"
  assert fragment in json.loads(body)["error"]
  assert healthy_within_a_second(translation_server)


def memory(field):
  """This process's VmRSS, or VmHWM (its peak since the last reset), in
  bytes."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) * 1024
  raise AssertionError(f"no {field} in /proc/self/status")


def peak_memory_growth(action):
  """How far this process's peak resident memory rose above its resident
  memory before `action` ran (bytes), and what `action` returned."""
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # Resets the peak (VmHWM) to the current VmRSS.
  before = memory("VmRSS")
  result = action()
  return memory("VmHWM") - before, result


def test_a_request_of_many_bombs_is_refused_before_decoding(
    decoding_server):
  """30 PNGs of a kilobyte, each declaring a blank 1000x1000 image, within
  --max_pixels=1000000 one by one: 30,000,000 pixels in all, 90 MB of RGB
  decoded. The request may hold 1,000,000 pixels in all: refused before
  anything is decoded, with the memory unchanged (up to 20 MB)."""
  bomb = {"b64": base64.b64encode(small_bomb(side=1000)).decode()}
  body = json.dumps({"signature_name": "translate_encoded",
                     "instances": [bomb] * 30}).encode()
  assert len(body) < 0.05 * 2**20  # Under --max_upload_mb.
  growth, (status, headers, reply) = peak_memory_growth(lambda: http(
      decoding_server, "POST", "/v1/models/pix2pix:predict", body,
      {"Content-Type": "application/json"}))
  assert growth < 20 * 2**20, f"the peak grew {growth / 2**20:.0f} MB"
  assert status == 413, reply[:300]
  assert headers["Content-Type"] == "application/json"
  error = json.loads(reply)["error"]
  assert "--max_pixels=1000000" in error, error
  assert "send the images in separate requests" in error, error
  assert healthy_within_a_second(decoding_server)


def animation(frames, side):
  """An animated GIF of `frames` frames of side x side, a few kilobytes:
  each frame after the first changes one pixel."""
  images = []
  for index in range(frames):
    image = np.zeros((side, side), np.uint8)
    image[index % side, index // side] = 255
    images.append(Image.fromarray(image))
  buffer = io.BytesIO()
  images[0].save(buffer, "GIF", save_all=True, append_images=images[1:])
  return buffer.getvalue()


def test_an_animation_counts_every_frame_it_decodes(decoding_server):
  """TensorFlow decodes every frame of a GIF (then keeps the first): 200
  frames of 300x300 are 18,000,000 pixels (54 MB) decoded, though the
  screen is 90,000. Refused before decoding, naming the frames."""
  gif = animation(200, 300)
  assert len(gif) < 0.05 * 2**20
  assert data_lib.check_pixels(gif, 18_000_000).pixels == 18_000_000
  growth, (status, _, reply) = peak_memory_growth(lambda: http(
      decoding_server, "POST", "/v1/models/pix2pix:predict", b64_body(gif),
      {"Content-Type": "application/json"}))
  assert status == 413, reply[:300]
  error = json.loads(reply)["error"]
  assert "an animation of 200 frames of 300x300" in error, error
  assert "--max_pixels=1000000" in error, error
  assert growth < 20 * 2**20, f"the peak grew {growth / 2**20:.0f} MB"
  assert healthy_within_a_second(decoding_server)


def test_a_bomb_past_pillows_own_limit_is_refused_with_its_size(
    translation_server, monkeypatch):
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
  status, _, reply = http(translation_server, "POST",
                          "/v1/models/pix2pix:predict",
                          b64_body(small_bomb()),
                          {"Content-Type": "application/json"})
  assert status == 413, reply[:300]
  assert ("is 3000x3000 = 9000000 pixels, more than --max_pixels=1000000"
          in json.loads(reply)["error"])


@pytest.fixture(params=["translation", "study"])
def either_server(request, tmp_path):
  """Each server on a free port."""
  if request.param == "translation":
    app = server_lib.create_app(Unused(), request_timeout=1.0)
  else:
    real, generated = study_folders(tmp_path)
    app = study.create_app(study.Study(
        data_lib.list_images(real, required=True),
        data_lib.list_images(generated, required=True),
        str(tmp_path / "answers.jsonl")))
  yield from served(app)


def raw_http(port, request_bytes):
  """The status, Content-Type and body of the answer to `request_bytes`,
  sent as they are."""
  with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
    sock.sendall(request_bytes)
    reply = http_client.HTTPResponse(sock)
    reply.begin()
    return reply.status, reply.getheader("Content-Type"), reply.read()


# Requests that Werkzeug's server refuses before the app sees them.
BELOW_FLASK = {
    "a header line over 64 KB": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: " + b"a" * 70_000 +
        b"\r\n\r\n", 431, "headers are too large"),
    "over 100 header lines": (
        b"GET /healthz HTTP/1.1\r\n" +
        b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n", 431,
        "headers are too large"),
    "a request line over 64 KB": (
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414,
        "URL is longer than 65536 bytes"),
}


@pytest.mark.parametrize("name", sorted(BELOW_FLASK))
def test_errors_found_below_flask_are_json_too(either_server, name):
  request_bytes, status, fragment = BELOW_FLASK[name]
  got, content_type, body = raw_http(either_server, request_bytes)
  assert got == status, body[:300]
  assert content_type == "application/json"
  assert fragment in json.loads(body)["error"]
  assert healthy_within_a_second(either_server)


def test_a_silent_connection_is_closed_after_the_timeout(translation_server):
  sock = socket.create_connection(("127.0.0.1", translation_server))
  sock.sendall(b"POST /v1/models/pix2pix:predict HTTP/1.1\r\n"
               b"Host: x\r\nContent-Length: 1000\r\n\r\n{")
  assert healthy_within_a_second(translation_server)
  sock.settimeout(10)  # The server's timeout is 1 s.
  start = time.monotonic()
  try:
    while sock.recv(4096):
      pass  # Whatever the server answers, it then closes.
  finally:
    sock.close()
  assert time.monotonic() - start < 9


def test_a_request_waits_for_the_model_no_longer_than_the_timeout():
  translator = object.__new__(server_lib.Translator)
  translator._lock = threading.Lock()
  translator.signatures = {"translate_encoded": lambda images_bytes: {
      "generated_image_bytes": images_bytes}}
  translator._input_specs = {"translate_encoded": {
      "images_bytes": tf.TensorSpec([None], tf.string)}}
  translator.encoded_signature = "translate_encoded"
  assert translator.translate([b"x"], wait=0.1) == [b"x"]
  with translator._lock:  # Another request holds the model.
    with pytest.raises(server_lib.Busy):
      translator.translate([b"x"], wait=0.1)


def test_the_page_runs_only_its_own_script(translation_server):
  status, headers, body = http(translation_server, "GET", "/")
  assert status == 200
  html = body.decode()
  # The palette name cannot close the page's script element.
  assert html.count("<script") == 1 and html.count("</script>") == 1
  assert "\\u003c/script\\u003e" in html
  policy = headers["Content-Security-Policy"]
  nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
  assert f'<script nonce="{nonce}">' in html
  assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
  # A fresh nonce for every page.
  assert nonce not in http(translation_server, "GET", "/")[1][
      "Content-Security-Policy"]


def test_the_metadata_endpoint_tells_no_paths(translation_server):
  status, _, body = http(translation_server, "GET",
                         "/v1/models/pix2pix/metadata")
  assert status == 200
  assert "/home/someone" not in body.decode()
  assert json.loads(body)["metadata"]["pix2pix_tf"]["flags"] == {"ngf": 64}


# --- The perceptual study --------------------------------------------------


def study_folders(root, hostile_name=False):
  folders = []
  for kind, value in (("real", 10), ("generated", 200)):
    folder = root / kind
    folder.mkdir()
    for i in range(2):
      name = (f'"><img src=x onerror=alert({i})>.png'
              if hostile_name and kind == "generated" else f"{i}.png")
      Image.fromarray(np.full((8, 8, 3), value + i, np.uint8)).save(
          folder / name)
    folders.append(str(folder))
  return folders


def test_study_answers_survive_a_torn_line_and_other_spellings_of_paths(
    tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  real, generated = study_folders(tmp_path)
  answers = tmp_path / "answers.jsonl"
  relative = [os.path.relpath(f, tmp_path) for f in (real, generated)]
  first = study.Study(data_lib.list_images(relative[0], required=True),
                      data_lib.list_images(relative[1], required=True),
                      str(answers))
  first.answer(0, "real")
  # A crash cut the next line short.
  with open(answers, "a") as f:
    f.write('{"file": "/x", "truth": "re')
  # Restarted with absolute paths: the same session, and the next answer is
  # a whole line of its own.
  second = study.Study(data_lib.list_images(real, required=True),
                       data_lib.list_images(generated, required=True),
                       str(answers))
  assert second.answers == {0: "real"}
  second.answer(1, "fake")
  third = study.Study(data_lib.list_images(real, required=True),
                      data_lib.list_images(generated, required=True),
                      str(answers))
  assert third.answers == {0: "real", 1: "fake"}
  lines = answers.read_bytes().split(b"\n")
  assert lines[-1] == b"" and json.loads(lines[-2])["answer"] == "fake"


@pytest.fixture(params=["2afc", "single"])
def study_server(request, tmp_path):
  """A live study server (of each protocol) on two real and two generated
  images, with the tree of tmp_path as it was before any request."""
  real, generated = study_folders(tmp_path)
  app = study.create_app(study.STUDIES[request.param](
      data_lib.list_images(real, required=True),
      data_lib.list_images(generated, required=True),
      str(tmp_path / "answers.jsonl")))
  with serving_in_thread(web.make_server("127.0.0.1", 0, app,
                                         request_timeout=1.0)) as httpd:
    yield httpd.server_port, tree(tmp_path), request.param


HOSTILE_ANSWERS = [
    b'{"id": 1.5, "answer": "real"}', b'{"id": NaN, "answer": "real"}',
    b'{"id": Infinity, "answer": "real"}', b'{"id": "1", "answer": "real"}',
    b'{"id": true, "answer": "real"}', b'{"id": 99, "answer": "real"}',
    b'{"id": -1, "answer": "real"}', b'{"id": 0, "answer": "maybe"}',
    b'[0, "real"]', b'"real"', b"[" * 5000 + b"]" * 5000, b"not json",
    b"\xff\xfe{"]


@pytest.mark.parametrize("body", HOSTILE_ANSWERS)
def test_study_refuses_bad_answers_with_json(study_server, tmp_path, body):
  port, before, protocol = study_server
  # A valid answer of the protocol and the page's session token, so that
  # what is checked is the rest.
  body = body.replace(b'"real"', b'"left"' if protocol == "2afc" else
                      b'"real"')
  token = json.loads(http(port, "GET", "/api/session")[2])["session"]
  if body.startswith(b'{"id"'):
    body = b'{"session": "%s", ' % token.encode() + body[1:]
  status, headers, reply = http(port, "POST", "/api/answer", body,
                                {"Content-Type": "application/json"})
  assert status == 400, reply
  assert headers["Content-Type"] == "application/json"
  assert "error" in json.loads(reply)
  assert healthy_within_a_second(port)
  assert tree(tmp_path) == before  # No answers file, nothing else touched.


@pytest.mark.parametrize("path, body, chunked, status", [
    ("/api/answer", lambda: b"{" + b" " * 100_000 + b"}", False, 413),
    ("/api/answer", lambda: chunks(100_000), True, 413),
    ("/image/99/0", None, False, 404),
    ("/image/-1/0", None, False, 404),
    ("/image/0/2", None, False, 404),
    ("/image/0/-1", None, False, 404),
    ("/image/0", None, False, 404),
    ("/image/..%2f..%2fetc%2fpasswd", None, False, 404),
    ("/../../etc/passwd", None, False, 404)])
def test_study_server_refuses_hostile_requests(study_server, tmp_path, path,
                                               body, chunked, status):
  port, before, _ = study_server
  got, headers, reply = http(port, "POST" if body else "GET", path,
                             body() if body else None,
                             {"Content-Type": "application/json"}, chunked)
  assert got == status, reply[:300]
  assert headers["Content-Type"] == "application/json"
  assert "error" in json.loads(reply)
  assert b"root:" not in reply
  assert healthy_within_a_second(port)
  assert tree(tmp_path) == before


def test_a_silent_connection_does_not_hold_the_study(study_server):
  port, _, _ = study_server
  sock = socket.create_connection(("127.0.0.1", port))
  sock.sendall(b"POST /api/answer HTTP/1.1\r\n"
               b"Host: x\r\nContent-Length: 1000\r\n\r\n{")
  try:
    assert healthy_within_a_second(port)
    assert http(port, "GET", "/api/session")[0] == 200
  finally:
    sock.close()


def test_study_page_shows_hostile_file_names_as_text(tmp_path):
  from conftest import headless_chromium
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import WebDriverWait

  real, generated = study_folders(tmp_path, hostile_name=True)
  the_study = study.Study(data_lib.list_images(real, required=True),
                          data_lib.list_images(generated, required=True),
                          str(tmp_path / "answers.jsonl"))
  for trial in the_study.trials:
    the_study.answer(trial["id"], "real")
  server = web.make_server("127.0.0.1", 0, study.create_app(the_study), 5.0)
  with serving_in_thread(server) as httpd:
    driver = headless_chromium()
    try:
      driver.get(f"http://127.0.0.1:{httpd.server_port}/")
      WebDriverWait(driver, 20, poll_frequency=0.05).until(
          lambda d: len(d.find_elements(By.CSS_SELECTOR, "#answers figure"))
          == 4)
      # One image per figure: the names became alt text, not elements.
      assert len(driver.find_elements(By.CSS_SELECTOR, "#answers img")) == 4
      alts = sorted(i.get_attribute("alt") for i in
                    driver.find_elements(By.CSS_SELECTOR, "#answers img"))
      assert alts[:2] == ['"><img src=x onerror=alert(0)>.png',
                          '"><img src=x onerror=alert(1)>.png']
    finally:
      driver.quit()


# --- Dataset tools ---------------------------------------------------------


def photo(path, seed=0, size=24):
  Image.fromarray(np.random.RandomState(seed).randint(
      0, 255, (size, size, 3), np.uint8)).save(path)


def test_split_never_overwrites_a_file_it_does_not_move(tmp_path):
  data = tmp_path / "data"
  (data / "train").mkdir(parents=True)
  photo(data / "train" / "0001.png", seed=1)  # Already in place.
  for i in range(5):
    photo(data / f"000{i}.png", seed=10 + i)  # Including a second 0001.png.
  before = tree(data)
  with pytest.raises(ValueError, match="0001.png"):
    building.split(str(data), 0.2, 0.2)
  assert tree(data) == before


def test_split_with_force_refuses_one_name_in_two_splits(tmp_path):
  data = tmp_path / "data"
  for split_name in ("train", "val"):
    (data / split_name).mkdir(parents=True)
    photo(data / split_name / "a.png", seed=len(split_name))
  photo(data / "train" / "b.png")
  before = tree(data)
  with pytest.raises(ValueError, match="a.png"):
    building.split(str(data), 0.3, 0.0, force=True)
  assert tree(data) == before


def test_colorize_keeps_photos_that_share_a_stem(tmp_path):
  photos = tmp_path / "photos"
  photos.mkdir()
  photo(photos / "a.png", seed=1)
  photo(photos / "a.jpg", seed=2)
  summary = building.colorize(data_lib.list_images(str(photos)),
                              outputs.Folder(str(tmp_path / "out"), "output"),
                              "train", 24)
  assert summary.written == 2
  assert sorted(os.listdir(tmp_path / "out" / "train")) == [
      "a_jpg.png", "a_png.png"]
  assert "a.jpg -> a_jpg.png" in summary.report()
  # Run again (resumed): nothing is overwritten or written twice.
  before = tree(tmp_path / "out")
  again = building.colorize(data_lib.list_images(str(photos)),
                            outputs.Folder(str(tmp_path / "out"), "output"),
                            "train", 24)
  assert again.written == 0 and len(again.skipped["already written"]) == 2
  assert tree(tmp_path / "out") == before


def test_combine_names_every_file_of_a_shared_key(tmp_path):
  a_dir, b_dir = tmp_path / "a", tmp_path / "b"
  a_dir.mkdir()
  b_dir.mkdir()
  photo(a_dir / "x_1.png", 1)
  photo(a_dir / "y_1.png", 2)  # Both have the key 1.
  photo(a_dir / "x_2.png", 3)
  photo(b_dir / "t_1.png", 4)
  photo(b_dir / "t_2.png", 5)
  summary = building.combine(data_lib.list_images(str(a_dir)),
                             data_lib.list_images(str(b_dir)),
                             outputs.Folder(str(tmp_path / "out"), "output"),
                             "train", pattern=r"_(\d+)$")
  assert summary.written == 1
  assert summary.skipped["several files share a key"] == [
      "1: x_1.png, y_1.png, t_1.png"]
  assert os.listdir(tmp_path / "out" / "train") == ["2.png"]


@pytest.mark.slow
def test_dataset_tools_exit_non_zero_when_nothing_is_written(tmp_path):
  photos = tmp_path / "photos"
  photos.mkdir()
  photo(photos / "a.png")
  output = tmp_path / "a_file"
  output.write_text("mine")
  before = tree(tmp_path)
  result = run_command("datasets", "colorize", f"--photos={photos}",
                       f"--output={output}")
  assert_one_line_error(result, str(output), "is a file")
  assert tree(tmp_path) == before
  # Every photo unreadable: a summary, and a non-zero exit.
  (photos / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
  result = run_command("datasets", "colorize", f"--photos={photos}",
                       f"--output={tmp_path / 'out'}")
  assert "Skipped, unreadable: 1" in result.stdout
  assert_one_line_error(result, "no pair was written")


# --- Training, export, predict and serve: sentences, not tracebacks ------


@pytest.mark.slow
def test_bad_training_data_is_named_before_anything_is_written(tmp_path):
  data = demo.write_dataset(str(tmp_path / "data"), 4, 2, 32)
  val = sorted(os.listdir(os.path.join(data, "val")))[0]
  contents = open(os.path.join(data, "val", val), "rb").read()
  with open(os.path.join(data, "val", val), "wb") as f:
    f.write(contents[:len(contents) // 2])  # A truncated val image.
  run = tmp_path / "run"
  result = run_command("train", f"--data_dir={data}", f"--model_dir={run}",
                       "--max_steps=2", "--crop_size=32", "--load_size=36",
                       "--generator=unet", "--unet_depth=5", "--ngf=8",
                       "--ndf=8", "--batch_size=2")
  assert_one_line_error(result, os.path.join(data, "val", val), "(val)",
                        "--on_bad_image=skip")
  assert not run.exists()


@pytest.mark.slow
def test_a_one_pixel_training_image_is_named(tmp_path):
  data = demo.write_dataset(str(tmp_path / "data"), 4, 0, 32)
  tiny = os.path.join(data, "train", "tiny.png")
  Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tiny)
  config = small_config(data, tmp_path / "run", max_steps=4, batch_size=1)
  with pytest.raises(data_lib.DatasetError, match="narrower than 2"):
    training.train_and_evaluate(config,
                               tf.distribute.OneDeviceStrategy("/cpu:0"))
  assert not (tmp_path / "run").exists()  # No flags.txt, config.json, logs.


@pytest.mark.slow
def test_an_unwritable_model_dir_is_a_sentence(tmp_path):
  data = demo.write_dataset(str(tmp_path / "data"), 4, 0, 32)
  # Not even root can create files in /proc.
  config = small_config(data, "/proc/pix2pix_run", max_steps=2)
  with pytest.raises(outputs.OutputError, match="cannot be written"):
    training.train_and_evaluate(config,
                               tf.distribute.OneDeviceStrategy("/cpu:0"))


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "serve"])
def test_a_damaged_saved_model_is_a_sentence(trained_run, tmp_path,
                                             command):
  damaged = tmp_path / "export"
  shutil.copytree(os.path.join(trained_run.outputs.model_dir, "export"),
                  damaged)
  (damaged / "saved_model.pb").write_bytes(b"\x08\x01garbage")
  before = tree(tmp_path)
  args = [f"--saved_model={damaged}"]
  if command == "predict":
    args += [f"--input={trained_run.data.data_dir}/val",
             f"--output={tmp_path / 'out'}"]
  else:
    args += ["--port=0"]
  result = run_command(command, *args)
  assert_one_line_error(result, str(damaged), "could not be loaded")
  assert tree(tmp_path) == before
