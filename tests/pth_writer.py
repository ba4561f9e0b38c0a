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


class Storage:
  """A float32 storage: its key in the archive and its values."""

  def __init__(self, key: str, values):
    self.key, self.values = key, values


def _stand_in_torch():
  """Modules named as torch.save's pickle names PyTorch's globals."""
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
  return torch, utils


def write(path: str,
          tensors: Dict[str, Tuple[Storage, int, Sequence[int],
                                   Sequence[int]]],
          compress: int = zipfile.ZIP_STORED) -> str:
  """Writes {name: (storage, offset, size, stride)} as a state dict."""
  torch, utils = _stand_in_torch()

  class Tensor:
    def __init__(self, storage, offset, size, stride):
      self.args = (storage, offset, tuple(size), tuple(stride))

    def __reduce__(self):
      return (utils._rebuild_tensor_v2,  # pylint: disable=protected-access
              self.args + (False, collections.OrderedDict()))

  class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
      if isinstance(obj, Storage):
        return ("storage", torch.FloatStorage, obj.key, "cpu",
                len(obj.values))
      return None

  state = collections.OrderedDict(
      (k, Tensor(*v)) for k, v in tensors.items())
  storages = {v[0].key: v[0] for v in tensors.values()}
  with mock.patch.dict(sys.modules, {"torch": torch, "torch._utils": utils}):
    with zipfile.ZipFile(path, "w") as archive:
      with archive.open("archive/data.pkl", "w") as f:
        Pickler(f, protocol=2).dump(state)
      for key, storage in storages.items():
        archive.writestr(f"archive/data/{key}",
                         np.asarray(storage.values, "<f4").tobytes(),
                         compress_type=compress)
  return path


def write_state_dict(path: str, arrays: Dict[str, np.ndarray]) -> str:
  """Writes {name: array} as torch.save writes a float32 state dict: one
  contiguous storage per tensor."""
  tensors = {}
  for i, (name, array) in enumerate(arrays.items()):
    array = np.ascontiguousarray(array, np.float32)
    strides = tuple(s // 4 for s in array.strides)
    tensors[name] = (Storage(str(i), array.ravel()), 0, array.shape, strides)
  return write(path, tensors)
