"""Crafted and damaged .pth files: the reader refuses each with a message
naming the file, reads nothing outside a storage, allocates nothing a
storage does not hold, and stays unchanged for the next file."""

import os
import shutil
import zipfile

import numpy as np
import pytest

import pth_writer
from pth_writer import Storage
from pix2pix_tf.models import pytorch_weights

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture
def write_pth(tmp_path):
  """write(name, {tensor name: (storage, offset, size, stride)}) -> the
  path of such a .pth in tmp_path."""
  return lambda name, tensors, compress=zipfile.ZIP_STORED: (
      pth_writer.write(str(tmp_path / name), tensors, compress))


def test_the_crafting_writes_what_the_reader_reads(write_pth):
  storage = Storage("0", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
  path = write_pth("ok.pth", {"w": (storage, 1, (2, 2), (3, 1))})
  np.testing.assert_array_equal(
      pytorch_weights.read_state_dict(path)["w"], [[2, 3], [5, 6]])


@pytest.mark.parametrize("offset,size,stride,why", [
    (0, (32,), (1,), "more values than its storage"),
    (3, (2,), (1,), "reaches past its storage"),
    (0, (2, 2), (2, -1), "not a view PyTorch writes"),
    (-1, (1,), (1,), "not a view PyTorch writes"),
    (0, (10**6, 10**6), (0, 0), "more values than its storage"),
])
def test_a_view_outside_its_storage_is_refused(write_pth, offset, size,
                                              stride, why):
  storage = Storage("0", [1.0, 2.0, 3.0, 4.0])
  path = write_pth("bad.pth", {"w": (storage, offset, size, stride)})
  with pytest.raises(ValueError, match=rf"bad\.pth cannot be read.*{why}"):
    pytorch_weights.read_state_dict(path)


def test_a_compressed_storage_is_refused(write_pth):
  path = write_pth("zipped.pth",
                   {"w": (Storage("0", [0.0] * 1000), 0, (1000,), (1,))},
                   compress=zipfile.ZIP_DEFLATED)
  with pytest.raises(ValueError, match=r"zipped\.pth .*compressed"):
    pytorch_weights.read_state_dict(path)


def test_a_pickle_cannot_change_how_later_files_read(tmp_path):
  # GLOBAL torch.FloatStorage, then BUILD with {"dtype": "float16"}.
  crafted = (b"ctorch\nFloatStorage\n(dp0\nVdtype\np1\nVfloat16\np2\ns"
             b"b.")
  path = tmp_path / "retype.pth"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", crafted)
  with pytest.raises(pytorch_weights.UnsafeCheckpointError,
                     match=r"retype\.pth .*cannot be changed"):
    pytorch_weights.read_state_dict(str(path))
  # The next file reads as before.
  state = pytorch_weights.read_state_dict(os.path.join(DATA, "state.pth"))
  expected = np.load(os.path.join(DATA, "state_expected.npz"))
  np.testing.assert_array_equal(state["base"], expected["base"])


def test_damaged_and_missing_files_are_named(tmp_path):
  path = tmp_path / "damaged.pth"
  shutil.copy(os.path.join(DATA, "unet_batch.pth"), path)
  with zipfile.ZipFile(path) as archive:
    raw = max((archive.read(n) for n in archive.namelist()
               if "/data/" in n), key=len)
  data = bytearray(path.read_bytes())
  # Flip a byte inside the largest storage: its CRC no longer matches.
  data[data.find(raw) + len(raw) // 2] ^= 0xFF
  path.write_bytes(bytes(data))
  with pytest.raises(ValueError, match=r"damaged\.pth is damaged"):
    pytorch_weights.read_state_dict(str(path))
  with pytest.raises(ValueError, match=r"typo\.pth is not a file"):
    pytorch_weights.read_state_dict(str(tmp_path / "typo.pth"))


def test_legacy_files_cut_short_or_listing_other_storages_are_named(
    tmp_path):
  storage = Storage("0", np.arange(6, dtype=np.float32))
  path = pth_writer.write(str(tmp_path / "whole.pth"),
                          {"w": (storage, 0, (2, 3), (3, 1))}, legacy=True)
  np.testing.assert_array_equal(pytorch_weights.read_state_dict(path)["w"],
                                [[0, 1, 2], [3, 4, 5]])
  data = open(path, "rb").read()
  short = tmp_path / "short.pth"
  short.write_bytes(data[:-4])
  with pytest.raises(ValueError, match=r"short\.pth is cut short or damaged "
                     "at storage 0. Download it again"):
    pytorch_weights.read_state_dict(str(short))
  # A storage that declares as many values as the file does not hold
  # allocates nothing: the size is checked against what is left of it.
  huge = pth_writer.write(
      str(tmp_path / "huge.pth"),
      {"w": (Storage("0", np.zeros(6, np.float32)), 0, (2, 3), (3, 1))},
      legacy=True)
  declared = open(huge, "rb").read().replace(
      b"K\x06", b"J" + (2**31 - 1).to_bytes(4, "little")).replace(
          np.int64(6).tobytes(), np.int64(2**31 - 1).tobytes())
  open(huge, "wb").write(declared)
  with pytest.raises(ValueError, match=r"huge\.pth is cut short"):
    pytorch_weights.read_state_dict(huge)
  # The storage keys after the pickle must be those its tensors use.
  other = tmp_path / "other.pth"
  at = data.rfind(b"X\x01\x00\x00\x000")  # The key in the last pickle.
  other.write_bytes(data[:at] + b"X\x01\x00\x00\x001" + data[at + 6:])
  with pytest.raises(ValueError, match=r"other\.pth lists other storages"):
    pytorch_weights.read_state_dict(str(other))


@pytest.mark.parametrize("legacy", [False, True])
def test_tensors_over_one_storage_are_views_of_it(tmp_path, legacy):
  """However many tensors a file builds over a storage, the reader holds
  the storage once: a small file cannot make it allocate without bound."""
  storage = Storage("0", np.arange(1000, dtype=np.float32))
  path = pth_writer.write(
      str(tmp_path / "many.pth"),
      {f"w{i}": (storage, i, (10, 90), (90, 1)) for i in range(50)},
      legacy=legacy)
  state = pytorch_weights.read_state_dict(path)
  assert len(state) == 50 and np.shares_memory(state["w0"], state["w49"])
  np.testing.assert_array_equal(state["w7"][1, :3], [97, 98, 99])
  assert not state["w0"].flags.writeable


def test_pytorch_0_3_tensors_read(tmp_path):
  storage = Storage("0", [1.0, 2.0, 3.0, 4.0])
  path = pth_writer.write(str(tmp_path / "old.pth"),
                          {"w": (storage, 1, (3,), (1,))}, legacy=True,
                          rebuild="_rebuild_tensor")
  np.testing.assert_array_equal(pytorch_weights.read_state_dict(path)["w"],
                                [2, 3, 4])


@pytest.mark.parametrize("crafted,message", [
    # OrderedDict({}) : torch.save calls it with no arguments.
    (b"ccollections\nOrderedDict\n}\x85R.", "damaged or not a state dict"),
    # BUILD on a rebuild function, setting its defaults for later files.
    (b"ctorch._utils\n_rebuild_parameter\nN}X\x0c\x00\x00\x00__defaults__"
     b"X\x01\x00\x00\x00x\x85s\x86b.", "A function cannot be changed"),
])
def test_a_pickle_cannot_copy_dicts_or_change_functions(tmp_path, crafted,
                                                        message):
  path = tmp_path / "crafted.pth"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", crafted)
  with pytest.raises(ValueError, match=rf"crafted\.pth .*{message}"):
    pytorch_weights.read_state_dict(str(path))
  state = pytorch_weights.read_state_dict(os.path.join(DATA, "state.pth"))
  assert state["base"].shape == (4, 6)  # The next file reads as before.
