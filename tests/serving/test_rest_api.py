"""serve speaks TensorFlow Serving's REST API: every request form of
https://www.tensorflow.org/tfx/serving/api_rest for each signature of an
export, the model status and metadata documents, and its errors."""

import base64
import io
import json
import os
import re
import shlex
import shutil
import urllib.parse

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import ROOT, gradient_image, small_config, visible_generator
from pix2pix_tf import serving
from pix2pix_tf.serving import rest
from pix2pix_tf.serving import routes
from pix2pix_tf.serving import server as server_lib

PREDICT = "/v1/models/pix2pix:predict"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
  """An eval-mode export (deterministic) of a fresh 32x32 generator, in
  TensorFlow Serving's layout: version 7 of the model pix2pix."""
  root = tmp_path_factory.mktemp("rest")
  config = small_config(root / "data", root / "run", inference_mode="eval")
  return serving.save(visible_generator(config), config, 5,
                      str(root / "models" / "pix2pix" / "7"), "eval")


@pytest.fixture(scope="module")
def translator(export_dir):
  return server_lib.Translator(export_dir)


@pytest.fixture(scope="module")
def client(translator):
  return server_lib.create_app(translator).test_client()


@pytest.fixture(scope="module")
def signatures(export_dir):
  """The export's signatures, loaded apart from the server's copy."""
  return tf.saved_model.load(export_dir).signatures


def post(client, body, path=PREDICT):
  reply = client.post(path, json=body)
  return reply.status_code, reply.get_json()


def png_b64(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return base64.b64encode(buffer.getvalue()).decode()


def decode_b64_png(value):
  return tf.io.decode_png(base64.b64decode(value["b64"])).numpy()


def float_images(batch=2, size=32):
  return np.random.RandomState(0).uniform(
      -1, 1, (batch, size, size, 3)).astype(np.float32)


def test_serving_default_row_and_columnar_equal_the_signature(client,
                                                              signatures):
  images = float_images()
  expected = signatures["serving_default"](images=tf.constant(images))[
      "generated_image"].numpy()
  for body in ({"signature_name": "serving_default",
                "instances": images.tolist()},
               {"instances": images.tolist()},  # Numbers: serving_default.
               {"signature_name": "", "instances": images.tolist()},
               {"instances": [{"images": image} for image in
                              images.tolist()]}):  # Named instances.
    status, answer = post(client, body)
    assert status == 200, answer
    assert list(answer) == ["predictions"]
    # One output: each prediction is the value itself, [h, w, c].
    predictions = np.array(answer["predictions"], np.float32)
    assert predictions.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(predictions, expected, atol=1e-6)
  for inputs in (images.tolist(), {"images": images.tolist()}):
    status, answer = post(client, {"signature_name": "serving_default",
                                   "inputs": inputs})
    assert status == 200, answer
    assert list(answer) == ["outputs"]
    np.testing.assert_allclose(np.array(answer["outputs"], np.float32),
                               expected, atol=1e-6)
  assert np.abs(expected).max() > 0.05  # Not a constant answer.


@pytest.mark.parametrize("name", ["translate_uint8", "translate_native"])
def test_uint8_signatures_take_integer_lists(client, signatures, name):
  images = np.stack([gradient_image(20, 28), gradient_image(20, 28, 3, 9)])
  expected = signatures[name](images=tf.constant(images))[
      "generated_image"].numpy()
  status, row = post(client, {"signature_name": name,
                              "instances": images.tolist()})
  assert status == 200, row
  assert np.array(row["predictions"]).dtype.kind == "i"
  np.testing.assert_array_equal(np.array(row["predictions"]), expected)
  status, columnar = post(client, {"signature_name": name,
                                   "inputs": {"images": images.tolist()}})
  assert status == 200, columnar
  np.testing.assert_array_equal(np.array(columnar["outputs"]), expected)


@pytest.mark.parametrize("name", ["translate_encoded",
                                  "translate_encoded_native"])
@pytest.mark.slow
def test_encoded_signatures_take_and_answer_b64(client, signatures, name):
  images = [gradient_image(24, 40), gradient_image(24, 40, 3, 50)]
  encoded = [png_b64(image) for image in images]
  expected = [tf.io.decode_png(png).numpy() for png in signatures[name](
      images_bytes=tf.constant([base64.b64decode(e) for e in encoded]))[
          "generated_image_bytes"].numpy()]
  bodies = [{"instances": [{"b64": e} for e in encoded]},
            {"instances": [{"images_bytes": {"b64": e}} for e in encoded]},
            {"inputs": [{"b64": e} for e in encoded]},
            {"inputs": {"images_bytes": [{"b64": e} for e in encoded]}}]
  for body in bodies:
    status, answer = post(client, {"signature_name": name, **body})
    assert status == 200, answer
    values = answer.get("predictions", answer.get("outputs"))
    assert [sorted(v) for v in values] == [["b64"], ["b64"]]
    for value, want in zip(values, expected):
      np.testing.assert_array_equal(decode_b64_png(value), want)


def test_no_signature_name_runs_serving_default_as_tf_serving_does(
    client, translator):
  """TensorFlow Serving runs serving_default for a request without
  signature_name (or with ""), whatever its values: so does serve. Encoded
  images, which serving_default does not take, are refused naming the
  signature that does."""
  for body in ({"instances": [{"b64": png_b64(gradient_image(24, 40))}]},
               {"signature_name": "", "inputs": [{"b64": "AAAA"}]},
               {"instances": ["a string"]}):
    status, answer = post(client, body)
    assert status == 400, answer
    assert answer["error"].startswith(
        "serving_default, the signature a request without 'signature_name' "
        "runs (in TensorFlow Serving too), takes float32 images"), answer
    assert f'"signature_name": "{translator.encoded_signature}"' in (
        answer["error"])


def test_version_labels_route_as_tf_serving_routes_them(translator):
  """/labels/L paths: a label of --version_labels is the served version;
  any other is TensorFlow Serving's 400, "Unrecognized servable version
  label"."""
  images = float_images(1).tolist()
  labelled = server_lib.create_app(translator,
                                   version_labels=["stable"]).test_client()
  plain = server_lib.create_app(translator).test_client()
  root = "/v1/models/pix2pix/labels"
  status, answer = post(labelled, {"instances": images},
                        f"{root}/stable:predict")
  assert status == 200 and len(answer["predictions"]) == 1, answer
  assert labelled.get(f"{root}/stable").get_json() == rest.model_status(
      translator.version)
  assert labelled.get(f"{root}/stable/metadata").status_code == 200
  for client, label in ((labelled, "canary"), (plain, "stable")):
    for reply in (client.post(f"{root}/{label}:predict",
                              json={"instances": images}),
                  client.get(f"{root}/{label}"),
                  client.get(f"{root}/{label}/metadata")):
      assert reply.status_code == 400, reply.get_json()
      assert reply.get_json()["error"].startswith(
          f"Unrecognized servable version label: {label}")


def test_versioned_urls_and_unknown_models(client):
  images = float_images(1).tolist()
  status, answer = post(client, {"instances": images},
                        "/v1/models/pix2pix/versions/7:predict")
  assert status == 200 and len(answer["predictions"]) == 1
  for path, fragment in (
      ("/v1/models/pix2pix/versions/8:predict", "Specific(pix2pix, 8)"),
      ("/v1/models/other:predict", "Latest(other)"),
      ("/v1/models/other/versions/7:predict", "Latest(other)")):
    status, answer = post(client, {"instances": images}, path)
    assert status == 404 and fragment in answer["error"], (path, answer)


def test_model_status(client):
  expected = {"model_version_status": [{
      "version": "7", "state": "AVAILABLE",
      "status": {"error_code": "OK", "error_message": ""}}]}
  for path in ("/v1/models/pix2pix", "/v1/models/pix2pix/versions/7"):
    reply = client.get(path)
    assert (reply.status_code, reply.get_json()) == (200, expected)
  for path, fragment in (
      ("/v1/models/pix2pix/versions/1", "Could not find version 1"),
      ("/v1/models/other", "Could not find any versions of model other")):
    reply = client.get(path)
    assert reply.status_code == 404
    assert fragment in reply.get_json()["error"]


def test_the_version_is_the_folders_number_else_one():
  assert server_lib.export_version("/models/pix2pix/12/") == 12
  assert server_lib.export_version("runs/facades/export") == 1


def test_metadata_lists_the_signatures_as_tensorflow_serving_does(
    client, signatures):
  for path in ("/v1/models/pix2pix/metadata",
               "/v1/models/pix2pix/versions/7/metadata"):
    reply = client.get(path)
    assert reply.status_code == 200
    document = reply.get_json()
    assert document["model_spec"] == {"name": "pix2pix",
                                      "signature_name": "", "version": "7"}
  defs = document["metadata"]["signature_def"]["signature_def"]
  assert set(signatures) <= set(defs)
  dtypes = {tf.float32: "DT_FLOAT", tf.uint8: "DT_UINT8",
            tf.string: "DT_STRING"}
  for name, function in signatures.items():
    entry = defs[name]
    assert entry["method_name"] == "tensorflow/serving/predict"
    specs = function.structured_input_signature[1]
    assert {alias: info["dtype"] for alias, info in entry["inputs"].items()
            } == {alias: dtypes[spec.dtype] for alias, spec in specs.items()}
    assert {alias: info["dtype"] for alias, info in entry["outputs"].items()
            } == {alias: dtypes[spec.dtype]
                  for alias, spec in function.structured_outputs.items()}
  assert defs["serving_default"]["inputs"]["images"] == {
      "dtype": "DT_FLOAT", "name": "serving_default_images:0",
      "tensor_shape": {"dim": [], "unknown_rank": True}}
  assert defs["translate_encoded"]["inputs"]["images_bytes"][
      "tensor_shape"] == {"dim": [{"size": "-1", "name": ""}],
                          "unknown_rank": False}
  assert [d["size"] for d in defs["translate_uint8"]["outputs"][
      "generated_image"]["tensor_shape"]["dim"]] == ["-1", "-1", "-1", "3"]
  # The export's own metadata, without the training machine's paths.
  own = document["metadata"]["pix2pix_tf"]
  assert own["inference_mode"] == "eval" and own["step"] == 5
  assert "data_dir" not in own["flags"] and own["flags"]["ngf"] == 8
  assert client.get("/v1/models/other/metadata").status_code == 404
  assert client.get("/v1/models/pix2pix/versions/3/metadata"
                    ).status_code == 404


BAD_REQUESTS = {
    "an unknown signature": (
        {"signature_name": "nonsense", "inputs": [[1.0]]}, 400,
        "translate_encoded_native, translate_native"),
    "the metadata signature": (
        {"signature_name": "metadata", "inputs": {}}, 400,
        "takes no inputs"),
    "both forms": ({"instances": [1.0], "inputs": [1.0]}, 400, "not both"),
    "neither form": ({"signature_name": "serving_default"}, 400,
                     "Missing 'inputs' or 'instances'"),
    "no instances": ({"instances": []}, 400, "No values"),
    "the wrong rank": ({"instances": [[[0.5] * 3] * 32]}, 400,
                       "expected shape [batch, height, width, 3]"),
    "a size the generator does not take": (
        {"inputs": float_images(1, 24).tolist()}, 400,
        "multiples of 32; use translate_native"),
    "ragged lists": ({"inputs": [[[[0.5, 0.5, 0.5]], [[0.5, 0.5]]]]}, 400,
                     "not a dense tensor"),
    "strings for numbers": (
        {"signature_name": "serving_default", "inputs": [[[["a", "b"]]]]},
        400, "the input takes float32 numbers"),
    "booleans for numbers": ({"inputs": [[[[True, False, True]]]]}, 400,
                             "the input takes float32 numbers"),
    "instances of different shapes": (
        {"signature_name": "translate_uint8",
         "instances": [[[[1, 2, 3]]], [[[1, 2, 3], [4, 5, 6]]]]}, 400,
        "differ in shape"),
    "a uint8 value out of range": (
        {"signature_name": "translate_uint8", "inputs": [[[[1, 2, 256]]]]},
        400, "integers 0..255"),
    "floats for uint8": (
        {"signature_name": "translate_uint8", "inputs": [[[[1, 2, 3.5]]]]},
        400, "integers 0..255"),
    "named instances with a wrong name": (
        {"signature_name": "translate_uint8",
         "instances": [{"image": [[[1, 2, 3]]]}]}, 400, "['images']"),
    "named inputs with a wrong name": (
        {"signature_name": "translate_uint8",
         "inputs": {"image": [[[[1, 2, 3]]]]}}, 400,
        "Missing named input 'images'"),
    "not base64": ({"signature_name": "translate_encoded",
                    "instances": [{"b64": "***"}]}, 400, "base64"),
    "not an image": ({"signature_name": "translate_encoded",
                      "instances": [{"b64": base64.b64encode(
                          b"just text").decode()}]}, 400, "not a JPEG, PNG"),
    "a number for a string input": (
        {"signature_name": "translate_encoded", "instances": [3]}, 400,
        '{"b64": "..."}'),
    "an image list nested too deeply": (
        {"signature_name": "translate_encoded",
         "inputs": [[{"b64": "AAAA"}]]}, 400,
        "input 'images_bytes' takes shape [any]; got [1, 1]"),
    "a signature_name that is no string": (
        {"signature_name": 3, "instances": [1.0]}, 400, "must be a string"),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_bad_requests_get_tensorflow_servings_error_shape(client, name):
  body, status, fragment = BAD_REQUESTS[name]
  got, answer = post(client, body)
  assert got == status and list(answer) == ["error"], answer
  assert fragment in answer["error"]


def test_unknown_paths_and_methods_are_json_errors(client):
  for path in ("/v1/models/pix2pix:explain", "/v1/other",
               "/v1/models/pix2pix/versions/x"):
    reply = client.get(path)
    assert reply.status_code == 404, path
    assert "Malformed request" in reply.get_json()["error"]
  reply = client.get(PREDICT)
  assert reply.status_code == 405 and "error" in reply.get_json()
  reply = client.post("/v1/models/pix2pix")
  assert reply.status_code == 405 and "error" in reply.get_json()


def test_images_over_the_pixel_limit_are_refused_before_the_model(
    translator):
  client = server_lib.create_app(translator, max_pixels=32 * 32
                                 ).test_client()
  for body in ({"inputs": float_images(1, 64).tolist()},
               {"signature_name": "translate_uint8",
                "instances": [gradient_image(40, 40).tolist()]},
               {"signature_name": "translate_encoded",
                "instances": [{"b64": png_b64(gradient_image(40, 40))}]}):
    status, answer = post(client, body)
    assert status == 413 and "--max_pixels=1024" in answer["error"], answer
  # A request holds that many pixels in all: one image of that size, or
  # several smaller ones that add up to it.
  client = server_lib.create_app(translator, max_pixels=3 * 32 * 32
                                 ).test_client()
  status, _ = post(client, {"instances": float_images(3).tolist()})
  assert status == 200
  status, answer = post(client, {"instances": float_images(4).tolist()})
  assert status == 413 and "--max_pixels=3072 for a whole request" in \
      answer["error"], answer


def test_a_busy_model_answers_503(translator):
  client = server_lib.create_app(translator, request_timeout=0.05
                                 ).test_client()
  with translator._lock:  # Another request holds the model.
    status, answer = post(client, {"instances": float_images(1).tolist()})
  assert status == 503 and "busy" in answer["error"]
  assert post(client, {"instances": float_images(1).tolist()})[0] == 200


def test_the_server_answers_exactly_the_routes_of_the_table(translator):
  """routes.ENDPOINTS is the one list of the server's routes: create_app
  installs each of them and nothing else, and docs/rest_api.md's endpoint table
  is written from it (tools/update_docs.py)."""
  app = server_lib.create_app(translator)
  installed = {(method, rule.rule) for rule in app.url_map.iter_rules()
               if rule.endpoint != "static"
               for method in rule.methods - {"HEAD", "OPTIONS"}}
  assert installed == {(endpoint.method, rule)
                       for endpoint in routes.ENDPOINTS
                       for rule in endpoint.rules}
  rest_doc = open(os.path.join(ROOT, "docs", "rest_api.md")).read()
  assert routes.endpoint_table() in rest_doc, (
      "docs/rest_api.md's endpoint table is stale: run python "
      "tools/update_docs.py")


def test_answers_with_several_outputs_are_keyed_by_name():
  outputs = {"image_bytes": np.array([b"\x00\xff", b"ab"], object),
             "label": np.array([b"cat", b"dog"], object),
             "score": np.array([[0.5], [0.25]], np.float32)}
  assert rest.predict_answer(outputs, rest.ROW) == {"predictions": [
      {"image_bytes": {"b64": "AP8="}, "label": "cat", "score": [0.5]},
      {"image_bytes": {"b64": "YWI="}, "label": "dog", "score": [0.25]}]}
  assert rest.predict_answer(outputs, rest.COLUMNAR) == {"outputs": {
      "image_bytes": [{"b64": "AP8="}, {"b64": "YWI="}],
      "label": ["cat", "dog"], "score": [[0.5], [0.25]]}}
  scalar = {"metadata": np.array(b"{}", object)}
  assert rest.predict_answer(scalar, rest.COLUMNAR) == {"outputs": "{}"}
  with pytest.raises(rest.RequestError):
    rest.predict_answer(scalar, rest.ROW)


def test_requests_for_several_inputs_name_them():
  specs = {"a": tf.TensorSpec(None, tf.float32),
           "b_bytes": tf.TensorSpec([None], tf.string)}
  limits = rest.Limits(max_pixels=100, channels=3)
  inputs, form = rest.parse_predict({"instances": [
      {"a": [1, 2], "b_bytes": {"b64": "AP8="}},
      {"a": [3, 4], "b_bytes": "text"}]}, specs, limits)
  assert form == rest.ROW
  np.testing.assert_array_equal(inputs["a"], [[1, 2], [3, 4]])
  assert inputs["a"].dtype == np.float32
  assert inputs["b_bytes"].tolist() == [b"\x00\xff", b"text"]
  inputs, form = rest.parse_predict(
      {"inputs": {"a": [[1.5]], "b_bytes": [{"b64": "YWI="}]}}, specs,
      limits)
  assert form == rest.COLUMNAR and inputs["b_bytes"].tolist() == [b"ab"]
  for body in ({"instances": [[1, 2]]}, {"inputs": [[1, 2]]}):
    with pytest.raises(rest.RequestError, match="several inputs|object"):
      rest.parse_predict(body, specs, limits)


def png_bytes(height, width):
  buffer = io.BytesIO()
  Image.new("RGB", (width, height)).save(buffer, format="PNG")
  return buffer.getvalue()


def test_a_request_holds_at_most_max_pixels_in_all():
  """Not only each image: all of a request's images together, counted
  from their headers (numbers: their values over the channels)."""
  limits = rest.Limits(max_pixels=100, channels=3)
  numbers = {"images": tf.TensorSpec(None, tf.float32)}
  encoded = {"images_bytes": tf.TensorSpec([None], tf.string)}
  image = {"b64": base64.b64encode(png_bytes(8, 8)).decode()}
  within = [({"instances": np.zeros((4, 5, 5, 3)).tolist()}, numbers),
            ({"inputs": np.zeros((4, 5, 5, 3)).tolist()}, numbers),
            ({"instances": [image]}, encoded)]
  over = [({"instances": np.zeros((5, 5, 5, 3)).tolist()}, numbers),
          ({"inputs": np.zeros((5, 5, 5, 3)).tolist()}, numbers),
          ({"instances": [image, image]}, encoded),
          ({"inputs": [image, image]}, encoded)]
  for body, specs in within:
    rest.parse_predict(body, specs, limits)
  for body, specs in over:
    with pytest.raises(rest.RequestError, match="--max_pixels=100 for a "
                       "whole request") as error:
      rest.parse_predict(body, specs, limits)
    assert error.value.status == 413


def test_an_image_whose_header_cannot_be_read_is_refused():
  """A PNG with a broken ancillary chunk before its pixels: Pillow cannot
  read its header (so its size is not counted), TensorFlow would decode
  it."""
  contents = png_bytes(8, 8)
  broken = (contents[:33] + b"\0\0\0\3tEXtk\0v" + b"\0\0\0\0" +
            contents[33:])
  assert tf.io.decode_png(broken).shape == (8, 8, 3)
  specs = {"images_bytes": tf.TensorSpec([None], tf.string)}
  with pytest.raises(rest.RequestError, match="header cannot be read") as e:
    rest.parse_predict({"instances": [{"b64": base64.b64encode(
        broken).decode()}]}, specs, rest.Limits(100, 3))
  assert e.value.status == 400


# The REST API's doc, whose curl examples the test below sends to serve, and
# how many of them it holds at least (so that a change to their layout cannot
# make the test collect none and pass).
REST_DOC = os.path.join(ROOT, "docs", "rest_api.md")
MIN_DOC_REQUESTS = 5


def doc_requests():
  """(method, path, body or None) of every curl command of docs/rest_api.md
  that names the pix2pix model, with `$(base64 -w0 FILE)` standing for a
  PNG."""
  lines = open(REST_DOC).read().splitlines()
  requests = []
  for i, line in enumerate(lines):
    if not line.startswith("    curl "):
      continue
    command = [line]
    while command[-1].endswith("\\") or (
        i + len(command) < len(lines) and
        lines[i + len(command)].startswith("              ")):
      command.append(lines[i + len(command)])
    text = "\n".join(command).replace("\\\n", " ")
    text = re.sub(r"\$\(base64 -w0 [^)]*\)", "B64_OF_A_PNG", text)
    words = shlex.split(text)
    url = words[-1]
    if "/v1/models/pix2pix" not in url:
      continue
    body = (json.loads(words[words.index("-d") + 1]) if "-d" in words
            else None)
    requests.append(("POST" if body else "GET",
                     urllib.parse.urlparse(url).path, body))
  return requests


@pytest.mark.slow
def test_every_documented_request_runs_what_tf_serving_would_run(export_dir,
                                                                 tmp_path):
  """Each example of docs/rest_api.md, sent to serve, is answered by the
  signature that TensorFlow Serving's routing picks for it: its
  signature_name, else serving_default; status and metadata paths answer as
  documented."""
  version_one = str(tmp_path / "1")  # The doc's /versions/1.
  shutil.copytree(export_dir, version_one)
  client = server_lib.create_app(
      server_lib.Translator(version_one)).test_client()
  signatures = tf.saved_model.load(version_one).signatures
  png = base64.b64decode(png_b64(gradient_image(32, 32)))
  requests = doc_requests()
  assert len(requests) >= MIN_DOC_REQUESTS, requests
  assert {method for method, _, _ in requests} == {"GET", "POST"}
  for method, path, body in requests:
    if method == "GET":
      reply = client.get(path)
      assert reply.status_code == 200, (path, reply.get_json())
      continue
    body = json.loads(json.dumps(body).replace(
        "B64_OF_A_PNG", base64.b64encode(png).decode()))
    status, answer = post(client, body, path)
    assert status == 200, (body, answer)
    signature = signatures[body.get("signature_name") or "serving_default"]
    values = answer.get("predictions", answer.get("outputs"))
    inputs = body.get("instances", body.get("inputs"))
    if isinstance(inputs, dict):
      inputs = next(iter(inputs.values()))
    if "images_bytes" in signature.structured_input_signature[1]:
      expected = signature(images_bytes=tf.constant(
          [base64.b64decode(i["b64"]) for i in inputs]))[
              "generated_image_bytes"].numpy()
      for value, want in zip(values, expected):
        np.testing.assert_array_equal(decode_b64_png(value),
                                      tf.io.decode_png(want).numpy())
    else:
      dtype = signature.structured_input_signature[1]["images"].dtype
      expected = signature(images=tf.constant(np.array(
          inputs, dtype.as_numpy_dtype)))["generated_image"].numpy()
      np.testing.assert_array_equal(np.array(values), expected)
