"""python -m pix2pix_tf.convert --pretrained=NAME: the reference's published
generator downloaded by name (here from a server on 127.0.0.1 holding a
small file of the same network), converted with its dataset's
configuration; a failed download leaves nothing behind."""

import contextlib
import http.server
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import pth_writer
from conftest import ENV, run_command, serving_in_thread
from pix2pix_tf import config as config_lib
from pix2pix_tf import errors
from pix2pix_tf import outputs
from pix2pix_tf import pretrained
from pix2pix_tf.models import pytorch_weights

NAME = "facades_label2photo"
# What each of the reference's generators translates from its dataset's
# pairs: maps are A aerial, B map; day2night is night2day's BtoA.
DIRECTIONS = {"facades_label2photo": "BtoA", "sat2map": "AtoB",
              "map2sat": "BtoA", "edges2shoes": "AtoB", "day2night": "BtoA"}
# The reference's unet_256, narrowed: the same tensors, 1/256 of the bytes.
NARROW = "--ngf=4"


def reference_state(config):
  """A random generator of `config` as the reference's state dict names
  and lays it out (the inverse of pytorch_weights.keras_weights)."""
  from pix2pix_tf import models
  generator = models.build_generator(config)
  state = {}
  for module, layer_name, kind in pytorch_weights.generator_layers(config):
    weights = generator.get_layer(layer_name).get_weights()
    if kind == pytorch_weights.NORM:
      keys = ("weight", "bias", "running_mean", "running_var")
      rng = np.random.default_rng(len(state))
      weights = [(w + rng.uniform(0.1, 0.5, w.shape)).astype(np.float32)
                 for w in weights]
    else:
      keys = ("weight", "bias")
      weights = [weights[0].transpose(3, 2, 0, 1)] + weights[1:]
    state.update({f"{module}.{key}": value
                  for key, value in zip(keys, weights)})
  return state


@contextlib.contextmanager
def serving(files):
  """{path: bytes} served on 127.0.0.1 by a thread: (its URL, the paths
  requested). A value of (bytes, n) announces n bytes more than it sends,
  then closes the connection: a cut download."""
  requested = []

  class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # pylint: disable=invalid-name
      requested.append(self.path)
      body = files.get(self.path)
      if body is None:
        self.send_error(404)
        return
      body, missing = body if isinstance(body, tuple) else (body, 0)
      self.send_response(200)
      self.send_header("Content-Length", str(len(body) + missing))
      self.end_headers()
      self.wfile.write(body)

    def log_message(self, *args):
      pass

  with serving_in_thread(http.server.ThreadingHTTPServer(
      ("127.0.0.1", 0), Handler)) as server:
    yield f"http://127.0.0.1:{server.server_port}", requested


@pytest.fixture(scope="module")
def narrow_file(tmp_path_factory):
  """(the reference's state dict of a narrow facades_label2photo, its .pth
  bytes)."""
  state = reference_state(pretrained.config_for(NAME, NARROW))
  path = str(tmp_path_factory.mktemp("pth") / f"{NAME}.pth")
  pth_writer.write_state_dict(path, state)
  with open(path, "rb") as file:
    return state, file.read()


def files_under(folder):
  return sorted(os.path.relpath(os.path.join(parent, name), folder)
                for parent, _, names in os.walk(folder) for name in names)


def test_each_name_has_a_shipped_configuration_and_a_direction():
  listed = pretrained.table().splitlines()
  assert len(listed) == len(DIRECTIONS) + 1
  for line, (name, entry) in zip(listed, pretrained.PRETRAINED.items()):
    assert line.startswith(name + " ") and entry.translates in line
    config = pretrained.config_for(name, "")
    assert config.data.direction == DIRECTIONS[name], name
    assert config.flat()["label_palette"] == (
        "facades" if name == NAME else config_lib.Config().flat()[
            "label_palette"]), name
    assert (config.model.generator, config.model.norm,
            config.model.ngf) == ("unet_256", "batch", 64)
    assert config.outputs.model_dir == f"runs/{name}_pretrained"
  assert "about 208 MiB" in listed[-1] and pretrained.URL in listed[-1]
  # The flags given override the configuration's.
  config = pretrained.config_for("map2sat", "--model_dir=elsewhere --ngf=8")
  assert (config.outputs.model_dir, config.model.ngf,
          config.data.direction) == ("elsewhere", 8, "BtoA")
  # But not the direction: the weights translate one way.
  with pytest.raises(config_lib.ConfigError, match="--pretrained=map2sat "
                     "translates maps to aerial photos: --direction=BtoA. "
                     "Leave out the flag or flagfile that sets "
                     "--direction=AtoB"):
    pretrained.config_for("map2sat", "--direction=AtoB")


@pytest.mark.slow
def test_a_name_downloads_once_and_converts(tmp_path, narrow_file,
                                            monkeypatch):
  state, body = narrow_file
  monkeypatch.setitem(ENV, "KERAS_HOME", str(tmp_path / "keras"))
  run = tmp_path / "run"
  with serving({f"/{NAME}.pth": body}) as (url, requested):
    result = run_command("convert", f"--pretrained={NAME}",
                         f"--base_url={url}", f"--model_dir={run}", NARROW)
    assert result.returncode == 0, result.stderr
    cached = tmp_path / "keras" / "pix2pix_tf" / "pretrained" / f"{NAME}.pth"
    assert cached.read_bytes() == body
    assert f"SHA-256 of {NAME}.pth: {outputs.sha256(str(cached))}" in (
        result.stdout)
    recorded = json.loads((run / "config.json").read_text())
    assert {k: recorded[k] for k in (
        "direction", "label_palette", "generator", "norm", "ngf",
        "dropout_placement", "crop_size", "load_size")} == {
            "direction": "BtoA", "label_palette": "facades",
            "generator": "unet_256", "norm": "batch", "ngf": 4,
            "dropout_placement": "reference", "crop_size": 256,
            "load_size": 286}
    # The run's generator holds the file's weights (its first convolution
    # and last batch norm's statistics, in Keras's layout), and its export
    # translates with them.
    config = config_lib.Config.from_json((run / "config.json").read_text())
    from pix2pix_tf import models
    generator = models.build_generator(config)
    tf.train.Checkpoint(generator=generator).read(
        tf.train.latest_checkpoint(str(run / "checkpoints"))).expect_partial()
    layers = pytorch_weights.generator_layers(config)
    for module, layer_name, kind in (layers[0], layers[-1]):
      for ours, theirs in zip(
          generator.get_layer(layer_name).get_weights(),
          pytorch_weights.keras_weights(state, module, kind)):
        np.testing.assert_array_equal(ours, theirs)
    image = tf.zeros([1, 256, 256, 3])
    exported = tf.saved_model.load(str(run / "export")).signatures[
        "serving_default"](images=image)["generated_image"]
    assert exported.shape == (1, 256, 256, 3)
    # Another run of the same name: from the cache, no second download.
    result = run_command("convert", f"--pretrained={NAME}",
                         f"--base_url={url}", f"--model_dir={tmp_path / 'b'}",
                         NARROW)
    assert result.returncode == 0, result.stderr
    # Into a run: refused before any download.
    os.remove(cached)
    result = run_command("convert", f"--pretrained={NAME}",
                         f"--base_url={url}", f"--model_dir={run}", NARROW)
    assert result.returncode == 1 and "already holds a run's checkpoints" in (
        result.stderr)
    result = run_command("convert", "--pretrained=list")
    assert result.returncode == 0 and result.stdout == pretrained.table() + "\n"
    for bad, words in ((["--pretrained=cats"], "--pretrained=cats: value "
                        "should be one of <list|facades_label2photo|"),
                       ([f"--pretrained={NAME}", "--from_pytorch=G.pth"],
                        "Give one of --from_pytorch"),
                       ([f"--pretrained={NAME}",
                         "--from_pytorch_discriminator=D.pth"],
                        "it publishes no discriminator"),
                       (["--pretrained=map2sat", "--config=maps"],
                        "--pretrained=map2sat is converted with --config=maps "
                        "--direction=BtoA; leave out --config=maps"),
                       (["--pretrained=map2sat", "--flagfile=maps"],
                        "that sets --direction=AtoB")):
      result = run_command("convert", *bad, f"--model_dir={tmp_path / 'c'}",
                           f"--base_url={url}")
      assert result.returncode != 0 and words in result.stderr, result.stderr
    assert requested == [f"/{NAME}.pth"]
  assert not (tmp_path / "c").exists()


def failed_download(tmp_path, monkeypatch, served, **options):
  """import_pretrained's error for `served` as NAME.pth; checks that it left
  nothing behind: no run, nothing in the cache."""
  from pix2pix_tf.training import importing
  monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
  config = pretrained.config_for(
      NAME, f"{NARROW} --model_dir={tmp_path / 'run'}")
  with serving({f"/{NAME}.pth": served}) as (url, _):
    with pytest.raises(errors.CommandError) as raised:
      importing.import_pretrained(NAME, config, url, retries=0, **options)
  assert files_under(tmp_path / "keras") == []
  assert not (tmp_path / "run").exists()
  return str(raised.value)


def test_a_download_of_another_digest_is_refused(tmp_path, narrow_file,
                                                 monkeypatch):
  _, body = narrow_file
  message = failed_download(tmp_path, monkeypatch, body, sha256="0" * 64)
  assert "has the SHA-256" in message and f"not --sha256={'0' * 64}" in message


def test_a_cut_download_is_named(tmp_path, narrow_file, monkeypatch):
  _, body = narrow_file
  message = failed_download(tmp_path, monkeypatch, (body[:1000], 5000))
  assert message.startswith("Could not download http://127.0.0.1:")
  assert (f"download {NAME}.pth by hand and give it as --from_pytorch, "
          "with --config=facades --direction=BtoA --generator=unet_256 "
          "--norm=batch") in message


def test_a_missing_file_is_named(tmp_path, monkeypatch):
  from pix2pix_tf.training import importing
  monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
  config = pretrained.config_for(
      NAME, f"{NARROW} --model_dir={tmp_path / 'run'}")
  with serving({}) as (url, requested):
    with pytest.raises(errors.CommandError, match="404.*Check --base_url "
                       "and the name, or download facades_label2photo.pth "
                       "by hand"):
      importing.import_pretrained(NAME, config, url, retries=2)
  assert requested == [f"/{NAME}.pth"]  # Final: not tried again.
  assert files_under(tmp_path / "keras") == []


def test_a_page_that_is_no_checkpoint_is_named(tmp_path, monkeypatch):
  message = failed_download(tmp_path, monkeypatch, b"<html>moved</html>")
  assert (f"/{NAME}.pth sent is not a PyTorch checkpoint that pix2pix_tf "
          "reads; it was deleted. Run the command again to download it "
          "anew; if that fails too, check --base_url, or download") in message
