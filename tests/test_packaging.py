"""The release files: the wheel carries every file the package needs (the
shipped flagfiles among them) and every command's script; the sdist is the
whole project, tests included. .ci/wheel_check installs the wheel on the
lowest and highest supported Python and follows the README with it."""

import configparser
import os
import re
import subprocess
import sys
import tarfile
import zipfile

import pytest

from conftest import ENV, ROOT
from test_layout import COMMANDS


# What a checkout or an unpacked sdist holds that is not the project's own.
NOT_PROJECT = {".git", ".venv", ".pytest_cache", "__pycache__", "build",
               "dist", "datasets", "runs", "PKG-INFO", "setup.cfg"}


def tracked_files():
  """The project's files: as git has them, or (in an unpacked sdist) the
  files under the project's folder."""
  done = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True,
                        text=True)
  if done.returncode == 0 and done.stdout:
    return done.stdout.split()
  found = []
  for folder, subfolders, names in os.walk(ROOT):
    subfolders[:] = [d for d in subfolders if d not in NOT_PROJECT and
                     not d.endswith(".egg-info")]
    found += [os.path.relpath(os.path.join(folder, name), ROOT)
              for name in names if name not in NOT_PROJECT and
              not name.endswith(".pyc")]
  return found


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  """(wheel, sdist) built by `python -m build`, as a release is: the wheel
  is built from the sdist, so the sdist alone must build it."""
  out = tmp_path_factory.mktemp("dist")
  done = subprocess.run([sys.executable, "-m", "build", "-q", "--outdir",
                         str(out), ROOT], capture_output=True, text=True,
                        env=ENV)
  assert done.returncode == 0, done.stderr[-3000:]
  names = sorted(os.listdir(out))
  wheel, = [n for n in names if n.endswith(".whl")]
  sdist, = [n for n in names if n.endswith(".tar.gz")]
  return str(out / wheel), str(out / sdist)


def test_the_wheel_carries_every_file_of_the_package(release):
  with zipfile.ZipFile(release[0]) as wheel:
    inside = set(wheel.namelist())
  package = [f for f in tracked_files() if f.startswith("pix2pix_tf/")]
  assert len(package) > 50
  assert set(package) <= inside, sorted(set(package) - inside)
  flagfiles = {f for f in inside if f.startswith("pix2pix_tf/configs/")}
  assert {"pix2pix_tf/configs/demo.flags",
          "pix2pix_tf/configs/facades.flags"} <= flagfiles


def test_the_wheel_has_a_script_per_command(release):
  with zipfile.ZipFile(release[0]) as wheel:
    name, = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    entry_points = configparser.ConfigParser()
    entry_points.read_string(wheel.read(name).decode())
  scripts = dict(entry_points["console_scripts"])
  assert scripts == {f"pix2pix-{c}": f"pix2pix_tf.{c}:run" for c in COMMANDS}


def test_the_wheel_states_the_versions_ci_installs(release):
  """Requires-Python and the Python classifiers are the range .ci/wheel_check
  installs the wheel on; each lower bound is in .ci/lower_bounds.txt, which
  that check installs on the lowest Python."""
  with zipfile.ZipFile(release[0]) as wheel:
    name, = [n for n in wheel.namelist() if n.endswith("METADATA")]
    metadata = wheel.read(name).decode()
  check = open(os.path.join(ROOT, ".ci", "wheel_check")).read()
  lowest, highest = re.search(r'PYTHONS=\("(3\.\d+)" "(3\.\d+)"\)',
                              check).groups()
  requires_python, = re.findall(r"^Requires-Python: (.*)$", metadata, re.M)
  assert set(requires_python.split(",")) == {
      f">={lowest}", f"<3.{int(highest[2:]) + 1}"}
  classified = re.findall(r"Programming Language :: Python :: (3\.\d+)",
                          metadata)
  assert classified == [f"3.{m}" for m in range(int(lowest[2:]),
                                                int(highest[2:]) + 1)]
  pins = dict(line.split("==") for line in open(
      os.path.join(ROOT, ".ci", "lower_bounds.txt")).read().split()
              if "==" in line)
  requirements = re.findall(r"^Requires-Dist: ([\w-]+)([^;\n]*)$", metadata,
                            re.M)
  assert len(requirements) == 7 and set(pins) == {n for n, _ in requirements}
  for package, specifiers in requirements:
    lower, = re.findall(r">=([\d.]+)", specifiers)
    assert release_of(pins[package]) == release_of(lower), package


def release_of(version):
  """A version's numbers, to three places: 2.1 is 2.1.0."""
  numbers = [int(n) for n in version.split(".")]
  return numbers + [0] * (3 - len(numbers))


def test_the_sdist_is_the_whole_project(release):
  with tarfile.open(release[1]) as sdist:
    top = sdist.getnames()[0].split("/")[0]
    inside = {n[len(top) + 1:] for n in sdist.getnames()
              if sdist.getmember(n).isfile()}
  tracked = tracked_files()
  # configs/ is a link to the package's flagfiles: the sdist has the files.
  expected = {f for f in tracked if f not in ("configs", ".gitignore")}
  expected |= {"configs/" + os.path.basename(f) for f in tracked
               if f.startswith("pix2pix_tf/configs/")}
  assert {"Makefile", "pytest.ini", "tests/conftest.py", ".ci/run",
          "configs/facades.flags", "docs/python_api.ipynb"} <= expected
  assert expected <= inside, sorted(expected - inside)
