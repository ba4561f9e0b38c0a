"""What no command may do, as a property of every command: replace or change
a file it did not write. Each command is pointed three ways at what is
already on disk, and every byte there must be the same afterwards.

- its own input: the output flag names what the command reads;
- a folder of the user's, holding files of the names the command writes;
- a file of the user's, where the command writes a file or a folder.

A new command or tool joins by adding one row to COMMANDS.
"""

import os
import shutil

import pytest

from conftest import ROOT, run_command, run_saying_imports
from pix2pix_tf import outputs
from test_hostile_inputs import tree

PTH = os.path.join(ROOT, "tests", "models", "data")
CONVERT_FLAGS = ["--generator=unet", "--unet_depth=5", "--ngf=4", "--ndf=4",
                 "--norm=batch", "--dropout=0", "--load_size=32",
                 "--crop_size=32", "--batch_size=1", "--strategy=one_device",
                 "--mixed_precision=none"]
# The names each command writes, planted in the user's folder.
COLLIDING = {
    "train": ["flags.txt", "config.json", "samples/step_0000001.png",
              "checkpoints/checkpoint"],
    "export": ["saved_model.pb", "variables/variables.index"],
    "predict": ["0001.png", "0002.png"],
    "predict_paired": ["index.html", "inputs/0001.png", "0001.png"],
    "evaluate": ["results.json"],
    "study": ["answers.jsonl"],
    "convert": ["flags.txt", "config.json", "checkpoints/checkpoint"],
    "datasets": ["train/0001.png", "train/0002.png"],
    "ablate": ["results.csv", "results.md", "losses.png"],
}


class World:
  """A trained run, its data and a user's files, all under one root."""

  def __init__(self, root, trained_run):
    self.root = root
    self.run = str(root / "run")
    shutil.copytree(trained_run.model_dir, self.run)
    self.data = str(root / "data")
    shutil.copytree(trained_run.data_dir, self.data)
    self.val = os.path.join(self.data, "val")
    self.variants = str(root / "variants.txt")
    with open(self.variants, "w") as f:
      f.write("small: --ngf=8 --ndf=8\n")
    self.notes = str(root / "notes.txt")
    with open(self.notes, "w") as f:
      f.write("a user's notes")

  def user_folder(self, kind):
    """A folder of the user's, holding files of the names `kind` writes."""
    folder = self.root / f"mine_{kind}"
    for name in COLLIDING[kind]:
      path = folder / name
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_bytes(f"the user's {name}".encode())
    return str(folder)

  def user_file(self, name):
    """A file of the user's named `name`."""
    path = self.root / name
    path.write_text("the user's file")
    return str(path)


def datasets_row(subcommand, sources):
  def arguments(world, target):
    return [subcommand, *(f"--{flag}={world.val}" for flag in sources),
            f"--output={target}", "--size=0"]
  return arguments


# name: (command, the argument list for (world, target), where "its input"
# points: a function of the world).
COMMANDS = {
    "train": ("train", lambda w, t: [
        f"--data_dir={w.data}", f"--model_dir={t}", "--generator=unet",
        "--unet_depth=5", "--load_size=32", "--crop_size=32", "--ngf=8",
        "--ndf=8", "--max_steps=1"],
              lambda w: w.data),
    "export saved_model": ("export", lambda w, t: [
        f"--model_dir={w.run}", f"--export_dir={t}"], lambda w: w.run),
    "export keras": ("export", lambda w, t: [
        f"--model_dir={w.run}", "--format=keras", f"--export_dir={t}"],
                     lambda w: os.path.join(w.run, "export")),
    "export onnx": ("export", lambda w, t: [
        f"--model_dir={w.run}", "--format=onnx", f"--export_dir={t}"],
                    lambda w: os.path.join(w.run, "export")),
    "export litert": ("export", lambda w, t: [
        f"--model_dir={w.run}", "--format=litert", f"--export_dir={t}"],
                      lambda w: os.path.join(w.run, "export")),
    "predict": ("predict", lambda w, t: [
        f"--model_dir={w.run}", f"--input={w.val}", f"--output={t}"],
                lambda w: w.val),
    "predict --paired": ("predict", lambda w, t: [
        f"--model_dir={w.run}", f"--input={w.val}", f"--output={t}",
        "--paired"], lambda w: w.val),
    "evaluate": ("evaluate", lambda w, t: [
        f"--model_dir={w.run}", f"--data_dir={w.data}", "--split=val",
        f"--output={t}"], lambda w: os.path.join(w.val, "0001.png")),
    "study": ("study", lambda w, t: [
        "--protocol=single", f"--real_dir={w.val}",
        f"--generated_dir={w.data}/train", f"--answers={t}", "--port=0"],
              lambda w: os.path.join(w.val, "0001.png")),
    "convert": ("convert", lambda w, t: [
        f"--from_pytorch={PTH}/unet_batch.pth", f"--model_dir={t}",
        *CONVERT_FLAGS], lambda w: os.path.join(PTH, "unet_batch.pth")),
    "datasets combine": ("datasets", datasets_row(
        "combine", ("a_dir", "b_dir")), lambda w: w.val),
    "datasets colorize": ("datasets", datasets_row("colorize", ("photos",)),
                          lambda w: w.val),
    "datasets edges": ("datasets", datasets_row("edges", ("photos",)),
                       lambda w: w.val),
    "tools/ablate.py": (os.path.join(ROOT, "tools", "ablate.py"),
                        lambda w, t: [
                            f"--data_dir={w.data}", f"--out={t}",
                            "--steps=1", "--image_size=32",
                            f"--study={w.variants}"], lambda w: w.data),
}
# Which colliding names (COLLIDING) a row's user folder holds, and the user
# file it is pointed at where it writes a file.
KINDS = {"train": "train", "export saved_model": "export",
         "predict --paired": "predict_paired", "tools/ablate.py": "ablate"}
USER_FILES = {"export keras": "model.keras", "export onnx": "model.onnx",
              "export litert": "model.tflite", "evaluate": "results.json",
              "study": "answers.jsonl"}
WAYS = ("its own input", "a folder of user files", "a user's file")


def kind(name):
  return KINDS.get(name, name.split()[0])


@pytest.fixture(scope="module")
def trained(trained_run):
  return trained_run


@pytest.mark.slow
@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_no_command_changes_what_it_did_not_write(trained, tmp_path, name,
                                                   way):
  command, arguments, own_input = COMMANDS[name]
  world = World(tmp_path, trained)
  if way == "its own input":
    target = own_input(world)
  elif way == "a folder of user files":
    target = world.user_folder(kind(name))
  else:
    target = world.user_file(USER_FILES.get(name, "notes.txt"))
  before = tree(tmp_path), tree(PTH)
  if command.endswith(".py"):
    result = run_saying_imports(command, *arguments(world, target))
  else:
    result = run_command(command, *arguments(world, target))
  assert (tree(tmp_path), tree(PTH)) == before, result.stderr
  assert result.returncode != 0, result.stdout
  assert "Traceback" not in result.stderr, result.stderr
  lines = [line for line in result.stderr.splitlines()
           if line.startswith(("pix2pix_tf.", "ablate:"))]
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
  folder.write_text("sub/a.txt", "a")
  dead = 2**22 + 7  # Above the default pid_max: no such process.
  leftovers = [tmp_path / f"{outputs.TEMPORARY_PREFIX}{dead}-x",
               tmp_path / "sub" / f"{outputs.TEMPORARY_PREFIX}{dead}-y"]
  for path in leftovers:
    path.mkdir()
    (path / "a.txt").write_text("half")
  alive = tmp_path / f"{outputs.TEMPORARY_PREFIX}{os.getppid()}-z"
  alive.mkdir()
  outputs.Folder(str(tmp_path), "output")
  assert not any(path.exists() for path in leftovers)
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
