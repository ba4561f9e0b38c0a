"""Writing `.pth` files as torch.save lays them out, without PyTorch: for
fixtures the safe reader must read (random weights of any architecture)
and for crafted files it must refuse."""

import collections
import pickle
import sys
import types
import zipfile
from typing import Dict, Sequence, Tuple
from unittest import mock

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.save's, before PyTorch 1.6.


class Storage:
  """A float32 storage: its key in the archive and its values."""

  def __init__(self, key: str, values):
    self.key, self.values = key, values


def _stand_in_torch(rebuild="_rebuild_tensor_v2"):
  """Modules named as torch.save's pickle names PyTorch's globals (the
  tensor rebuild function by `rebuild`: PyTorch 0.3 wrote
  _rebuild_tensor)."""
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")

  class FloatStorage:
    pass

  def _rebuild_tensor_v2(*args):
    del args

  FloatStorage.__module__ = "torch"
  FloatStorage.__qualname__ = "FloatStorage"
  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = rebuild
  torch.FloatStorage = FloatStorage
  setattr(utils, rebuild, _rebuild_tensor_v2)
  return torch, utils


def _pickler_and_state(tensors, legacy, rebuild):
  """A Pickler class writing storages as torch.save's persistent ids, the
  state dict of stand-in tensors, and its storages by key."""
  torch, utils = _stand_in_torch(rebuild)

  class Tensor:
    def __init__(self, storage, offset, size, stride):
      self.args = (storage, offset, tuple(size), tuple(stride))

    def __reduce__(self):
      extra = (() if rebuild == "_rebuild_tensor" else
               (False, collections.OrderedDict()))
      return (getattr(utils, rebuild), self.args + extra)

  class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
      if isinstance(obj, Storage):
        return (("storage", torch.FloatStorage, obj.key, "cpu",
                 len(obj.values)) + ((None,) if legacy else ()))
      return None

  state = collections.OrderedDict(
      (k, Tensor(*v)) for k, v in tensors.items())
  storages = {v[0].key: v[0] for v in tensors.values()}
  modules = {"torch": torch, "torch._utils": utils}
  return Pickler, state, storages, modules


def write(path: str,
          tensors: Dict[str, Tuple[Storage, int, Sequence[int],
                                   Sequence[int]]],
          compress: int = zipfile.ZIP_STORED, legacy: bool = False,
          rebuild: str = "_rebuild_tensor_v2") -> str:
  """Writes {name: (storage, offset, size, stride)} as a state dict, in
  torch.save's zip format or (`legacy`) the one before PyTorch 1.6."""
  pickler, state, storages, modules = _pickler_and_state(tensors, legacy,
                                                         rebuild)
  with mock.patch.dict(sys.modules, modules):
    if legacy:
      with open(path, "wb") as f:
        for header in (LEGACY_MAGIC, 1001, {
            "protocol_version": 1001, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}):
          pickle.dump(header, f, protocol=2)
        pickler(f, protocol=2).dump(state)
        pickle.dump(sorted(storages), f, protocol=2)
        for key in sorted(storages):
          values = np.asarray(storages[key].values, "<f4")
          f.write(np.int64(values.size).astype("<i8").tobytes())
          f.write(values.tobytes())
      return path
    with zipfile.ZipFile(path, "w") as archive:
      with archive.open("archive/data.pkl", "w") as f:
        pickler(f, protocol=2).dump(state)
      for key, storage in storages.items():
        archive.writestr(f"archive/data/{key}",
                         np.asarray(storage.values, "<f4").tobytes(),
                         compress_type=compress)
  return path


def write_state_dict(path: str, arrays: Dict[str, np.ndarray],
                     legacy: bool = False) -> str:
  """Writes {name: array} as torch.save writes a float32 state dict: one
  contiguous storage per tensor."""
  tensors = {}
  for i, (name, array) in enumerate(arrays.items()):
    array = np.ascontiguousarray(array, np.float32)
    strides = tuple(s // 4 for s in array.strides)
    tensors[name] = (Storage(str(i), array.ravel()), 0, array.shape, strides)
  return write(path, tensors, legacy=legacy)
