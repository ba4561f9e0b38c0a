"""Exports written before the package's layout changed still load and serve.

data/export_3cc0b56 was exported by pix2pix_tf 0.1.0 at commit 3cc0b56 (the
flat layout, before the subpackages): a 32x32 U-Net (unet_depth=5, ngf=4)
trained 60 steps on demo pairs, inference_mode=eval.
data/export_3cc0b56_expected.npz holds a 32x48 input and what that code's
translate_uint8 and translate_encoded returned for it.
"""

import base64
import io
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import run_command
from pix2pix_tf import serving
from pix2pix_tf.serving import server as server_lib

DATA = os.path.join(os.path.dirname(__file__), "data")
OLD_EXPORT = os.path.join(DATA, "export_3cc0b56")


@pytest.fixture(scope="module")
def expected():
  with np.load(os.path.join(DATA, "export_3cc0b56_expected.npz")) as arrays:
    expected = dict(arrays)
  # The stored answer is an image, not a constant a broken model could give.
  assert expected["translate_uint8"].std() > 20
  return expected


def png_bytes(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


def test_an_old_export_loads_and_translates_as_it_did(expected):
  loaded = serving.load_export(OLD_EXPORT)
  out = loaded.translate_uint8(images=tf.constant(expected["image"][None]))
  np.testing.assert_allclose(out["generated_image"].numpy()[0],
                             expected["translate_uint8"], atol=1)
  assert serving.read_metadata(OLD_EXPORT)["flags"]["ngf"] == 4


def test_an_old_export_serves_the_same_answer(expected):
  translator = server_lib.Translator(OLD_EXPORT)
  client = server_lib.create_app(translator).test_client()
  reply = client.post("/v1/models/pix2pix:predict", json={
      "signature_name": "translate_encoded", "instances": [
      {"b64": base64.b64encode(png_bytes(expected["image"])).decode()}]})
  assert reply.status_code == 200, reply.get_json()
  png = base64.b64decode(reply.get_json()["predictions"][0]["b64"])
  np.testing.assert_allclose(np.array(Image.open(io.BytesIO(png))),
                             expected["translate_encoded"], atol=1)


@pytest.mark.slow
def test_predict_translates_with_an_old_export(expected, tmp_path):
  (tmp_path / "in").mkdir()
  Image.fromarray(expected["image"]).save(tmp_path / "in" / "a.png")
  result = run_command("predict", f"--saved_model={OLD_EXPORT}",
                       f"--input={tmp_path / 'in'}",
                       f"--output={tmp_path / 'out'}")
  assert result.returncode == 0, result.stderr
  np.testing.assert_allclose(np.array(Image.open(tmp_path / "out" / "a.png")),
                             expected["translate_encoded"], atol=1)


def test_native_resolution_is_refused_alike_by_predict_and_serve():
  """The old export predates native resolution: predict's translate
  function and serve's Translator refuse it with the one sentence of
  saved_model.translate_signature."""
  loaded = serving.load_export(OLD_EXPORT)
  metadata = serving.read_metadata(OLD_EXPORT)
  with pytest.raises(serving.ExportError, match=(
      "This export has no translate_native signature .* pass "
      "--resolution=training")):
    serving.make_translate(loaded, metadata, "native")
  with pytest.raises(serving.ExportError, match=(
      re.escape(OLD_EXPORT) + " has no translate_encoded_native signature "
      ".* pass --resolution=training")):
    server_lib.Translator(OLD_EXPORT, "native")
  assert server_lib.Translator(OLD_EXPORT).encoded_signature == (
      "translate_encoded")
