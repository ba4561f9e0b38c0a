"""The shipped configurations chosen by name: --config=NAME, and --flagfile
naming a shipped flagfile from a folder that does not have it."""

import glob
import json
import os
import subprocess
import sys

import pytest
from absl import flags

from conftest import ENV, ROOT
from pix2pix_tf import options as options_lib
from pix2pix_tf import flagfiles


def shipped(name):
  return "--flagfile=" + flagfiles.path(name)


def test_names_are_the_files_in_configs():
  on_disk = sorted(os.path.basename(p)[:-len(".flags")]
                   for p in glob.glob(os.path.join(ROOT, "configs", "*.flags")))
  assert flagfiles.names() == tuple(on_disk)
  assert {"demo", "facades", "maps", "cityscapes"} <= set(on_disk)
  # The project's configs/ holds the package's flagfiles (a link to them in
  # the checkout, copies in the sdist).
  for name in on_disk:
    with open(os.path.join(ROOT, "configs", name + ".flags")) as ours, open(
        flagfiles.path(name)) as shipped_file:
      assert ours.read() == shipped_file.read(), name


# (argv after the program's name, what it becomes), run in an empty folder.
ROWS = {
    "--config=NAME in place": (["--config=facades", "--max_steps=5"],
                               [shipped("facades"), "--max_steps=5"]),
    "--config NAME": (["--ngf=8", "--config", "maps"],
                      ["--ngf=8", shipped("maps")]),
    "--flagfile=bare name": (["--flagfile=facades"], [shipped("facades")]),
    "--flagfile=NAME.flags": (["--flagfile=demo.flags"], [shipped("demo")]),
    "--flagfile=configs/NAME.flags (the README's)": (
        ["--flagfile=configs/maps.flags"], [shipped("maps")]),
    "--flagfile configs/NAME.flags": (
        ["--flagfile", "configs/maps.flags"], [shipped("maps")]),
    "a missing file elsewhere is absl's to refuse": (
        ["--flagfile=mine/facades.flags"], ["--flagfile=mine/facades.flags"]),
    "an unknown name is absl's to refuse": (["--config=nope"],
                                            ["--config=nope"]),
    "nothing after --": (["--", "--config=facades"],
                         ["--", "--config=facades"]),
}


@pytest.mark.parametrize("given, expected", ROWS.values(), ids=ROWS.keys())
def test_expand(given, expected, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  flag_values = flags.FlagValues()
  options_lib.define_command_flags([options_lib.CONFIG], flag_values)
  assert flagfiles.expand(["train", *given], flag_values) == [
      "train", *expected]


def test_a_file_of_that_name_is_read_as_given(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  os.mkdir("configs")
  with open("configs/facades.flags", "w") as file:
    file.write("--ngf=8\n")
  flag_values = flags.FlagValues()
  assert flagfiles.expand(["train", "--flagfile=configs/facades.flags"],
                          flag_values) == [
                              "train", "--flagfile=configs/facades.flags"]


def test_config_is_left_to_commands_without_it(tmp_path):
  """A command that does not define --config gets it as given, and absl
  refuses it: the training flags of a flagfile are not its flags."""
  assert flagfiles.expand(["predict", "--config=facades"],
                          flags.FlagValues()) == [
                              "predict", "--config=facades"]
  done = subprocess.run([sys.executable, "-m", "pix2pix_tf.predict",
                         "--config=facades"], capture_output=True,
                        text=True, env=ENV, cwd=tmp_path)
  assert done.returncode == 1
  assert "Unknown command line flag 'config'" in done.stderr


def summary(cwd, *arguments):
  done = subprocess.run(
      [sys.executable, "-m", "pix2pix_tf.summary", "--format=json",
       *arguments], capture_output=True, text=True, env=ENV, cwd=cwd)
  return done


def test_commands_read_shipped_configs_from_any_folder(tmp_path):
  """--config=demo and the README's --flagfile=configs/demo.flags, from a
  folder without configs/, build what the checkout's flagfile builds, and
  the flags after them override them."""
  by_name = summary(tmp_path, "--config=demo", "--ngf=16")
  by_path = summary(tmp_path, "--flagfile=configs/demo.flags", "--ngf=16")
  checkout = summary(ROOT, "--flagfile=configs/demo.flags")
  for done in (by_name, by_path, checkout):
    assert done.returncode == 0, done.stderr[-2000:]
  assert json.loads(by_name.stdout) == json.loads(by_path.stdout)
  assert (json.loads(by_name.stdout)["generator"]["total_params"] <
          json.loads(checkout.stdout)["generator"]["total_params"])


def test_an_unknown_config_is_refused_with_the_names(tmp_path):
  done = summary(tmp_path, "--config=facade")
  assert done.returncode == 1
  assert "--config=facade" in done.stderr
  assert "|".join(flagfiles.names()) in done.stderr


def test_config_inside_a_flagfile_is_refused(tmp_path):
  """Only the command line's --config is expanded: one inside a flagfile
  would be read as nothing."""
  (tmp_path / "mine.flags").write_text("--config=demo\n--ngf=16\n")
  done = summary(tmp_path, "--flagfile=mine.flags")
  assert done.returncode == 1
  assert "inside a flagfile, read one with --flagfile=PATH" in done.stderr
  # The installed package's folder (in an unpacked sdist, not this one's).
  assert os.path.join("pix2pix_tf", "configs", "NAME.flags") in done.stderr
