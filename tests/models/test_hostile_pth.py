"""Crafted and damaged .pth files: the reader refuses each with a message
naming the file, reads nothing outside a storage, allocates nothing a
storage does not hold, and stays unchanged for the next file."""

import collections
import os
import pickle
import shutil
import sys
import types
import zipfile

import numpy as np
import pytest

from pix2pix_tf.models import pytorch_weights

DATA = os.path.join(os.path.dirname(__file__), "data")


class Storage:
  def __init__(self, key, values):
    self.key, self.values = key, values


@pytest.fixture
def write_pth(monkeypatch, tmp_path):
  """write(name, {tensor name: (storage, offset, size, stride)}) -> a .pth
  whose pickle names PyTorch's globals as torch.save writes them (stand-in
  modules, so that no PyTorch is needed to write it)."""
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")

  class FloatStorage:
    pass

  def _rebuild_tensor_v2(*args):
    del args

  FloatStorage.__module__ = "torch"
  FloatStorage.__qualname__ = "FloatStorage"
  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  torch.FloatStorage, utils._rebuild_tensor_v2 = (FloatStorage,
                                                  _rebuild_tensor_v2)
  monkeypatch.setitem(sys.modules, "torch", torch)
  monkeypatch.setitem(sys.modules, "torch._utils", utils)

  class Tensor:
    def __init__(self, storage, offset, size, stride):
      self.args = (storage, offset, size, stride)

    def __reduce__(self):
      storage, offset, size, stride = self.args
      return (_rebuild_tensor_v2, (storage, offset, size, stride, False,
                                   collections.OrderedDict()))

  class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
      if isinstance(obj, Storage):
        return ("storage", FloatStorage, obj.key, "cpu", len(obj.values))
      return None

  def write(name, tensors, compress=zipfile.ZIP_STORED):
    path = tmp_path / name
    state = collections.OrderedDict(
        (k, Tensor(*v)) for k, v in tensors.items())
    storages = {v[0].key: v[0] for v in tensors.values()}
    with zipfile.ZipFile(path, "w") as archive:
      with archive.open("archive/data.pkl", "w") as f:
        Pickler(f, protocol=2).dump(state)
      for key, storage in storages.items():
        archive.writestr(f"archive/data/{key}",
                         np.asarray(storage.values, "<f4").tobytes(),
                         compress_type=compress)
    return str(path)

  return write


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
