"""What no command may do, as a property of every command: replace or change
a file it did not write. Each command is pointed three ways at what is
already on disk, and every byte there must be the same afterwards.

- its own input: the output flag names what the command reads;
- a folder of the user's, holding files of the names the command writes;
- a file of the user's, where the command writes a file or a folder.

A command that writes nothing (serve, summary) is pointed the same ways
with its path flags, and must leave everything as it was too.

A new command or tool joins by adding one row to ROWS.
"""

import dataclasses
import os
import re
import resource
import shutil
import signal
import subprocess
import tempfile
import sys
import urllib.request
from typing import Callable, List, Optional, Sequence

import pytest

from conftest import ENV, ROOT, Lines, run_command, run_saying_imports
from pix2pix_tf import outputs
from pix2pix_tf import temporaries
from test_hostile_inputs import tree

PTH = os.path.join(ROOT, "tests", "models", "data")
CONVERT_FLAGS = ["--generator=unet", "--unet_depth=5", "--ngf=4", "--ndf=4",
                 "--norm=batch", "--dropout=0", "--load_size=32",
                 "--crop_size=32", "--batch_size=1", "--strategy=one_device",
                 "--mixed_precision=none"]
TRAIN_FLAGS = ["--generator=unet", "--unet_depth=5", "--load_size=32",
               "--crop_size=32", "--ngf=8", "--ndf=8", "--max_steps=1"]
WAYS = ("its own input", "a folder of user files", "a user's file")


class World:
  """A trained run, its data and a user's files, all under one root."""

  def __init__(self, root, trained_run):
    self.root = root
    self.run = str(root / "run")
    shutil.copytree(trained_run.outputs.model_dir, self.run)
    self.export = os.path.join(self.run, "export")
    self.data = str(root / "data")
    shutil.copytree(trained_run.data.data_dir, self.data)
    self.val = os.path.join(self.data, "val")
    self.variants = str(root / "variants.txt")
    with open(self.variants, "w") as f:
      f.write("small: --ngf=8 --ndf=8\n")

  def user_folder(self, names):
    """A folder of the user's, holding files of `names`."""
    folder = self.root / "mine"
    folder.mkdir()
    for name in names:
      path = folder / name
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_bytes(f"the user's {name}".encode())
    return str(folder)

  def user_file(self, name):
    """A file of the user's named `name`."""
    path = self.root / name
    path.write_text("the user's file")
    return str(path)


@dataclasses.dataclass(frozen=True)
class Row:
  """One command: how it runs with its output at `target`, what "its own
  input" is, and the names it writes (planted in the user's folder)."""
  command: str  # A pix2pix_tf module, or a tool's path.
  arguments: Callable[[World, str], List[str]]
  own_input: Optional[Callable[[World], str]]  # None: it reads no path.
  writes: Sequence[str] = ()  # Empty: it writes nothing at all.
  user_file: str = "notes.txt"

  @property
  def ways(self):
    return WAYS if self.own_input else WAYS[1:]


def datasets_row(subcommand, sources):
  return Row("datasets", lambda w, t: [
      subcommand, *(f"--{flag}={w.val}" for flag in sources),
      f"--output={t}", "--size=0"], lambda w: w.val,
             ["train/0001.png", "train/0002.png"])


def tool(name):
  return os.path.join(ROOT, "tools", name)


SAVED_MODEL_FILES = ["saved_model.pb", "variables/variables.index"]
ROWS = {
    # Its own input: a split inside --data_dir, which train reads.
    "train": Row("train", lambda w, t: [
        f"--data_dir={w.data}", f"--model_dir={t}", *TRAIN_FLAGS],
                 lambda w: os.path.join(w.data, "train"),
                 ["flags.txt", "config.json", "samples/step_0000001.png",
                  "checkpoints/checkpoint"]),
    "export saved_model": Row("export", lambda w, t: [
        f"--model_dir={w.run}", f"--export_dir={t}"], lambda w: w.run,
                              SAVED_MODEL_FILES),
    "export keras": Row("export", lambda w, t: [
        f"--model_dir={w.run}", "--format=keras", f"--export_dir={t}"],
                        lambda w: w.export, ["model.keras"], "model.keras"),
    "export onnx": Row("export", lambda w, t: [
        f"--model_dir={w.run}", "--format=onnx", f"--export_dir={t}"],
                       lambda w: w.export, ["model.onnx"], "model.onnx"),
    "export litert": Row("export", lambda w, t: [
        f"--model_dir={w.run}", "--format=litert", f"--export_dir={t}"],
                         lambda w: w.export, ["model.tflite"],
                         "model.tflite"),
    "predict": Row("predict", lambda w, t: [
        f"--model_dir={w.run}", f"--input={w.val}", f"--output={t}"],
                   lambda w: w.val, ["0001.png", "0002.png"]),
    "predict --paired": Row("predict", lambda w, t: [
        f"--model_dir={w.run}", f"--input={w.val}", f"--output={t}",
        "--paired"], lambda w: w.val,
                            ["index.html", "inputs/0001.png", "0001.png"]),
    "evaluate": Row("evaluate", lambda w, t: [
        f"--model_dir={w.run}", f"--data_dir={w.data}", "--split=val",
        f"--output={t}"], lambda w: os.path.join(w.val, "0001.png"),
                    ["results.json"], "results.json"),
    "serve": Row("serve", lambda w, t: [f"--saved_model={t}", "--port=0"],
                 lambda w: w.export),
    "study": Row("study", lambda w, t: [
        "--protocol=single", f"--real_dir={w.val}",
        f"--generated_dir={w.data}/train", f"--answers={t}", "--port=0"],
                 lambda w: os.path.join(w.val, "0001.png"),
                 ["answers.jsonl"], "answers.jsonl"),
    "convert": Row("convert", lambda w, t: [
        f"--from_pytorch={PTH}/unet_batch.pth", f"--model_dir={t}",
        *CONVERT_FLAGS], lambda w: os.path.join(PTH, "unet_batch.pth"),
                   ["flags.txt", "config.json", "checkpoints/checkpoint"]),
    # Pointed at a server that is not there: the run's refusal comes first.
    "convert --pretrained": Row("convert", lambda w, t: [
        "--pretrained=facades_label2photo", f"--model_dir={t}",
        "--base_url=http://127.0.0.1:9", "--retries=0"], None,
                                ["flags.txt", "config.json",
                                 "checkpoints/checkpoint"]),
    "summary": Row("summary", lambda w, t: [
        f"--data_dir={w.data}", f"--model_dir={t}", *TRAIN_FLAGS],
                   lambda w: w.data),
    "datasets combine": datasets_row("combine", ("a_dir", "b_dir")),
    "datasets colorize": datasets_row("colorize", ("photos",)),
    "datasets edges": datasets_row("edges", ("photos",)),
    # split sorts the folder it is given in place: it has no separate
    # output to point at its input. With --force it moves val/ and test/
    # back first: a name in two splits must stop it before any move.
    "datasets split": Row("datasets", lambda w, t: [
        "split", f"--data_dir={t}", "--val=0.5", "--force"], None,
                          ["train/0001.png", "val/0001.png"]),
    "tools/ablate.py": Row(tool("ablate.py"), lambda w, t: [
        f"--data_dir={w.data}", f"--out={t}", "--steps=1",
        "--image_size=32", f"--study={w.variants}"], lambda w: w.data,
                           ["results.csv", "results.md", "losses.png"]),
    "tools/make_tfrecords.py": Row(tool("make_tfrecords.py"), lambda w, t: [
        f"--data_dir={w.data}", f"--output={t}"], lambda w: w.data,
                                   ["dataset.json", "train-00000-of-00001.tfrecord"]),
    "segmenter": Row("segmenter", lambda w, t: [
        f"--data_dir={w.data}", "--label_palette=facades", f"--output={t}",
        "--image_size=32", "--depth=2", "--epochs=1"], lambda w: w.data,
                                    SAVED_MODEL_FILES),
    "tools/compare_resolutions.py": Row(
        tool("compare_resolutions.py"), lambda w, t: [
            f"--saved_model={w.export}", f"--input={w.val}",
            f"--output={t}"], lambda w: os.path.join(w.val, "0001.png"),
        ["grid.png"], "grid.png"),
    "tools/compare_formats.py": Row(tool("compare_formats.py"), lambda w, t: [
        f"--model_dir={w.run}", f"--input={w.val}", f"--output_dir={t}"],
                                    lambda w: w.run,
                                    ["export/saved_model.pb", "export.keras"]),
    "tools/benchmark.py": Row(tool("benchmark.py"), lambda w, t: [
        f"--data_dir={w.data}", f"--output={t}", *TRAIN_FLAGS],
                              lambda w: os.path.join(w.data, "train",
                                                     "0001.png"),
                              ["report.json"], "report.json"),
    "datasets demo": Row("datasets", lambda w, t: [
        "demo", f"--output={t}", "--num_train=2", "--num_val=1",
        "--size=16"], None, ["palette.json", "train/0001.png"]),
    # Pointed at a server that is not there: a refusal comes first.
    "datasets download": Row("datasets", lambda w, t: [
        "download", "facades", f"--output={t}",
        "--base_url=http://127.0.0.1:9"], None, ["facades/notes.txt"]),
}
# What the error lines of each program start with.
PROGRAMS = ("pix2pix_tf.", "ablate:", "make_tfrecords:",
            "compare_resolutions:", "compare_formats:", "benchmark:")


@pytest.fixture(scope="module")
def trained(trained_run):
  return trained_run


def ctrl_c_stops_it():
  """In the child before it starts: Ctrl-C (SIGINT) back to its default. A
  shell that runs the suite in the background hands its children SIGINT
  ignored, and Python then never raises KeyboardInterrupt."""
  signal.signal(signal.SIGINT, signal.SIG_DFL)


def serve_and_stop(command, arguments):
  """Runs a server until it answers its health check, then stops it with
  Ctrl-C; the run's outcome as subprocess.run gives it, its stdout the
  health check's answer ("" if it never listened)."""
  process = subprocess.Popen(
      [sys.executable, "-m", f"pix2pix_tf.{command}", *arguments],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
      preexec_fn=ctrl_c_stops_it)
  lines = Lines(process.stdout)
  health = ""
  try:
    line = lines.wait_for(" on http://127.0.0.1:", process)
    url = re.search(r"(http://127\.0\.0\.1:\d+)", line).group(1)
    with urllib.request.urlopen(f"{url}/healthz", timeout=30) as response:
      health = f"healthz: {response.status}"
  except AssertionError:  # It exited (refused): its outcome is the result.
    pass
  finally:
    if process.poll() is None:
      process.send_signal(signal.SIGINT)
    try:
      process.wait(timeout=60)
    except subprocess.TimeoutExpired:
      process.kill()
      raise
  return subprocess.CompletedProcess(process.args, process.returncode,
                                     health, lines.text())


def run_row(row, arguments):
  if row.command.endswith(".py"):
    return run_saying_imports(row.command, *arguments)
  if row.command == "serve":
    return serve_and_stop(row.command, arguments)
  return run_command(row.command, *arguments)


@pytest.mark.slow
@pytest.mark.parametrize("name, way", [
    (name, way) for name in sorted(ROWS) for way in ROWS[name].ways])
def test_no_command_changes_what_it_did_not_write(trained, tmp_path, name,
                                                   way):
  row = ROWS[name]
  world = World(tmp_path, trained)
  if way == "its own input":
    target = row.own_input(world)
  elif way == "a folder of user files":
    target = world.user_folder(row.writes or ["notes.txt"])
    if row.user_file in row.writes:  # A single file: named in that folder.
      target = os.path.join(target, row.user_file)
  else:
    target = world.user_file(row.user_file)
  before = tree(tmp_path), tree(PTH)
  result = run_row(row, row.arguments(world, target))
  assert (tree(tmp_path), tree(PTH)) == before, result.stderr
  if row.command == "serve" and way == "its own input":
    assert result.stdout == "healthz: 200", result.stderr  # It served.
    return
  if not row.writes and row.command == "summary":
    assert result.returncode == 0, result.stderr  # --model_dir is not read.
    return
  assert result.returncode != 0, result.stdout
  assert "Traceback" not in result.stderr, result.stderr
  lines = [line for line in result.stderr.splitlines()
           if line.startswith(PROGRAMS)]
  assert len(lines) == 1, result.stderr
  assert os.path.normpath(target) in lines[0], lines[0]


def test_a_file_is_replaced_only_while_it_is_the_one_written(tmp_path):
  folder = outputs.Folder(str(tmp_path), "output")
  folder.write_text("a.txt", "first")
  folder.write_text("a.txt", "second")  # Its own, unchanged: replaced.
  (tmp_path / "a.txt").write_text("edited by the user")
  with pytest.raises(outputs.OutputError, match="a.txt"):
    folder.write_text("a.txt", "third")
  assert (tmp_path / "a.txt").read_text() == "edited by the user"
  (tmp_path / "b.txt").write_text("the user's")
  again = outputs.Folder(str(tmp_path), "output")  # A later run.
  with pytest.raises(outputs.OutputError, match="--output"):
    again.check(["c.txt", "b.txt"])
  assert (tmp_path / "b.txt").read_text() == "the user's"


@pytest.mark.parametrize("name", ["../x.png", "/tmp/x.png", "a/../../x.png",
                                  "link/x.png"])
def test_no_name_leads_outside_the_folder(tmp_path, name):
  (tmp_path / "out").mkdir()
  os.symlink(tmp_path, tmp_path / "out" / "link")
  folder = outputs.Folder(str(tmp_path / "out"), "output")
  with pytest.raises(outputs.OutputError, match="outside"):
    folder.write_text(name, "x")
  assert not (tmp_path / "x.png").exists()


def test_inputs_are_never_outputs(tmp_path):
  (tmp_path / "photos").mkdir()
  (tmp_path / "photos" / "a.png").write_bytes(b"photo")
  photos = outputs.Input(str(tmp_path / "photos"), "input")
  with pytest.raises(outputs.OutputError, match="--input"):
    outputs.Folder(str(tmp_path / "photos"), "output", [photos])
  folder = outputs.Folder(str(tmp_path), "output", [photos])
  with pytest.raises(outputs.OutputError, match="--input"):
    folder.write_text("photos/a.png", "translated")
  assert (tmp_path / "photos" / "a.png").read_bytes() == b"photo"


def test_a_killed_writers_temporaries_are_removed_at_the_next_run(tmp_path):
  folder = outputs.Folder(str(tmp_path), "output")
  staged = []

  def write(path):
    staged.append(path)
    with open(path, "w") as f:
      f.write("a")

  folder.write("sub/a.txt", write)
  # Staged at the folder's top, the one place the next run looks.
  assert os.path.dirname(os.path.dirname(staged[0])) == str(tmp_path)
  dead = 2**22 + 7  # Above the default pid_max: no such process.
  leftover = tmp_path / f"{temporaries.PREFIX}{dead}-x"
  leftover.mkdir()
  (leftover / "a.txt").write_text("half")
  alive = tmp_path / f"{temporaries.PREFIX}{os.getppid()}-z"
  alive.mkdir()
  outputs.Folder(str(tmp_path), "output")
  assert not leftover.exists()
  assert alive.exists()  # A running writer's are left alone.


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
  folder = outputs.Folder(str(tmp_path), "output")
  folder.write_text("a.txt", "good")

  def fail(path):
    with open(path, "w") as f:
      f.write("half")
    raise OSError(28, "No space left on device", path)

  with pytest.raises(OSError):
    folder.write("a.txt", fail)
  assert (tmp_path / "a.txt").read_text() == "good"
  assert sorted(os.listdir(tmp_path)) == [outputs.MANIFEST, "a.txt"]
  folder.write_text("a.txt", "better")  # Still its own.


@pytest.mark.parametrize("path, message", [
    ("{tmp}", "--answers={tmp} is a folder"),
    ("/proc/a.jsonl", "--answers=/proc/a.jsonl cannot be written"),
    ("{tmp}/notes.txt/a.jsonl", "notes.txt is a file, not a folder")])
def test_an_output_file_is_checked_before_any_work(tmp_path, path, message):
  (tmp_path / "notes.txt").write_text("a user's notes")
  path, message = (s.format(tmp=tmp_path) for s in (path, message))
  with pytest.raises(outputs.OutputError) as error:
    outputs.file_output(path, "answers")
  assert message in str(error.value)
  assert os.listdir(tmp_path) == ["notes.txt"]


def test_a_file_output_refuses_a_users_file_when_named(tmp_path):
  (tmp_path / "notes.json").write_text("a user's notes")
  with pytest.raises(outputs.OutputError) as error:
    outputs.file_output(str(tmp_path / "notes.json"), "output",
                        kind="evaluate")
  assert "notes.json" in str(error.value)
  assert (tmp_path / "notes.json").read_text() == "a user's notes"


def test_a_journal_torn_by_a_crash_is_still_its_own(tmp_path):
  folder = outputs.Folder(str(tmp_path), "answers")
  folder.append_line("a.jsonl", '{"id": 0}')
  with open(tmp_path / "a.jsonl", "ab") as f:
    f.write(b'{"id": 1, "ans')  # A crash mid-line.
  again = outputs.Folder(str(tmp_path), "answers")
  again.append_line("a.jsonl", '{"id": 2}')
  assert (tmp_path / "a.jsonl").read_bytes() == (
      b'{"id": 0}\n{"id": 1, "ans\n{"id": 2}\n')
  (tmp_path / "a.jsonl").write_bytes(b'{"id": 9}\n')  # Rewritten whole.
  with pytest.raises(outputs.OutputError, match="a.jsonl"):
    outputs.Folder(str(tmp_path), "answers").append_line("a.jsonl", "{}")


def limit_file_size():
  """The child's `ulimit -f`: 1 MiB, below a checkpoint's or an export's
  largest file and above every other file the small run writes."""
  resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


@pytest.mark.slow
@pytest.mark.parametrize("command", ["export", "train"])
def test_a_file_size_limit_is_one_line_and_keeps_what_was_there(
    trained, tmp_path, command):
  world = World(tmp_path, trained)
  if command == "export":  # Replacing the run's own export.
    arguments = [f"--model_dir={world.run}"]
  else:
    # Resuming the run with its flagfile: its next checkpoint does not fit.
    arguments = [f"--flagfile={world.run}/flags.txt",
                 f"--data_dir={world.data}", f"--model_dir={world.run}",
                 f"--max_steps={trained.optimisation.max_steps + 1}"]
  before = tree(tmp_path)
  result = subprocess.run(
      [sys.executable, "-m", f"pix2pix_tf.{command}", *arguments],
      capture_output=True, text=True, env=ENV, preexec_fn=limit_file_size,
      timeout=600)
  assert result.returncode == 1, result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  lines = [line for line in result.stderr.splitlines()
           if line.startswith(f"pix2pix_tf.{command}: error:")]
  assert len(lines) == 1, result.stderr
  assert "the file-size limit is reached" in lines[0], lines[0]
  after = tree(tmp_path)
  if command == "export":
    assert after == before
  else:
    # The resumed run records its new --max_steps (its own files) and may
    # add logs and a sample; its checkpoints and export are as they were.
    rewritten = {os.path.join("run", name) for name in (
        "flags.txt", "config.json", outputs.MANIFEST)}
    assert {k: v for k, v in after.items()
            if k in before and k not in rewritten} == {
                k: v for k, v in before.items() if k not in rewritten}
    added = set(after) - set(before)
    assert not any(k.startswith(("run/checkpoints", "run/export"))
                   for k in added), added
    assert re.search(rf"Resumed from \S+ at step "
                     rf"{trained.optimisation.max_steps}\.", result.stdout), (
                         result.stdout)


def test_an_output_inside_an_input_folder_is_refused(tmp_path):
  """Not only the input folder itself: no folder under it either (a run
  written into its own data's train/ split)."""
  (tmp_path / "data" / "train").mkdir(parents=True)
  data = outputs.Input(str(tmp_path / "data"), "data_dir")
  for path in ("data", "data/train", "data/train/run"):
    with pytest.raises(outputs.OutputError, match="--data_dir"):
      outputs.Folder(str(tmp_path / path), "model_dir", [data])
  outputs.Folder(str(tmp_path / "run"), "model_dir", [data])  # Beside: fine.


def test_a_replaced_folder_gets_the_mode_of_a_new_folder(tmp_path):
  folder = outputs.Folder(str(tmp_path), "export_dir")
  folder.replace_folder("export", lambda staging: None)
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(tmp_path / "export").st_mode & 0o777 == 0o777 & ~umask


def test_split_refuses_a_file_where_a_split_belongs_before_moving(tmp_path):
  data = tmp_path / "data"
  (data / "train").mkdir(parents=True)
  for index in range(4):
    (data / "train" / f"{index}.png").write_bytes(b"pair %d" % index)
  (data / "val").write_text("a user's notes named val")
  before = tree(data)
  result = run_command("datasets", "split", f"--data_dir={data}",
                       "--val=0.5")
  assert result.returncode == 1, result.stderr
  assert "Traceback" not in result.stderr
  assert f"{data / 'val'} is a file where the val split" in result.stderr
  assert tree(data) == before


@pytest.mark.slow
def test_train_refuses_a_cache_inside_its_data(trained, tmp_path):
  world = World(tmp_path, trained)
  before = tree(tmp_path)
  cache = os.path.join(world.data, "train", "cache")
  result = run_command("train", f"--data_dir={world.data}",
                       f"--model_dir={tmp_path / 'new'}", f"--cache={cache}",
                       *TRAIN_FLAGS)
  assert result.returncode == 1, result.stderr
  lines = [line for line in result.stderr.splitlines()
           if line.startswith("pix2pix_tf.train: error:")]
  assert len(lines) == 1 and f"--cache={cache}" in lines[0], result.stderr
  assert "--data_dir" in lines[0]
  assert tree(tmp_path) == before


def test_scratch_folders_a_killed_process_left_are_removed(tmp_path,
                                                           monkeypatch):
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
  dead = tmp_path / f"{temporaries.PREFIX}{2**22 + 7}-evaluate-x"
  dead.mkdir()
  (dead / "saved_model.pb").write_bytes(b"an export a killed run left")
  alive = tmp_path / f"{temporaries.PREFIX}{os.getppid()}-evaluate-y"
  alive.mkdir()
  with temporaries.scratch("evaluate") as folder:
    assert os.path.dirname(folder) == str(tmp_path)
    assert not dead.exists() and alive.exists()
    (tmp_path / folder / "a").write_text("work")
  assert sorted(os.listdir(tmp_path)) == [alive.name]


def test_one_command_never_replaces_anothers_output(tmp_path):
  run = outputs.Folder(str(tmp_path), "model_dir", kind="run")
  run.write_text("config.json", "{}")
  evaluation = outputs.Folder(str(tmp_path), "output", kind="evaluate")
  with pytest.raises(outputs.OutputError) as error:
    evaluation.check(["config.json"])
  assert "another command's output (run), not this command's (evaluate)" in (
      str(error.value))
  with pytest.raises(outputs.OutputError):
    evaluation.append_line("config.json", "{}")
  assert (tmp_path / "config.json").read_text() == "{}"
  outputs.Folder(str(tmp_path), "model_dir", kind="run").write_text(
      "config.json", "{\"resumed\": 1}")  # The same kind: its own.


@pytest.mark.slow
@pytest.mark.parametrize("name, target", [
    ("evaluate", "config.json"), ("study", "flags.txt"),
    ("tools/benchmark.py", "config.json")])
def test_a_file_output_pointed_at_a_runs_file_is_refused(trained, tmp_path,
                                                         name, target):
  """A run's own files, which pix2pix_tf wrote, are not another command's
  to replace: evaluate --output=RUN/config.json would break the run."""
  row = ROWS[name]
  world = World(tmp_path, trained)
  target = os.path.join(world.run, target)
  before = tree(tmp_path)
  result = run_row(row, row.arguments(world, target))
  assert tree(tmp_path) == before, result.stderr
  assert result.returncode != 0
  lines = [line for line in result.stderr.splitlines()
           if line.startswith(PROGRAMS)]
  assert len(lines) == 1 and "another command's output (run)" in lines[0], (
      result.stderr)


def test_a_folder_being_replaced_is_never_lost(tmp_path, monkeypatch):
  """A failed swap puts the old folder back; one a kill interrupted between
  its two renames is put back when the folder is next opened."""
  folder = outputs.Folder(str(tmp_path), "export_dir")
  folder.replace_folder("export", lambda staging: open(
      os.path.join(staging, "v1"), "w").close())
  real_replace = os.replace

  def fail_moving_in(source, target):
    if os.path.basename(target) == "export" and "-replaced-" not in source:
      raise OSError(28, "No space left on device")
    real_replace(source, target)

  monkeypatch.setattr(os, "replace", fail_moving_in)
  with pytest.raises(OSError):
    folder.replace_folder("export", lambda staging: open(
        os.path.join(staging, "v2"), "w").close())
  monkeypatch.undo()
  assert os.listdir(tmp_path / "export") == ["v1"]
  # Killed after the old export was moved aside (its process is gone).
  holder = tmp_path / f"{temporaries.PREFIX}{2**22 + 7}-replaced-x"
  holder.mkdir()
  (holder / "name").write_text("export")
  real_replace(tmp_path / "export", holder / "folder")
  outputs.Folder(str(tmp_path), "export_dir")
  assert os.listdir(tmp_path / "export") == ["v1"]
  assert not holder.exists()
