"""Reading PyTorch checkpoints (`.pth`) without PyTorch, and without
running anything the file holds.

`torch.save` writes two formats. Since PyTorch 1.6 a `.pth` is a zip of a
pickle (`*/data.pkl`) and one raw file per tensor storage
(`*/data/<key>`); before, and on request since, it is pickles in a row
followed by the storages' bytes (`_read_legacy`): the reference's older
checkpoints and pytorch-fid's Inception weights are in that format.
Unpickling runs whatever callables the pickle names, so `read_state_dict`
unpickles with an `Unpickler` that resolves only the handful of names a
state dict needs (an ordered dict, PyTorch's tensor rebuild functions, its
storage types) to local stand-ins that build numpy arrays; any other name
stops the read. Written by hand because the point is to read these files
where PyTorch is not installed (and `torch.load` with
`weights_only=False`, its default before 2.6, would run the file's code).
"""

import collections
import math
import os
import pickle
import zipfile
from typing import Callable, Dict, Tuple

import numpy as np

from pix2pix_tf import errors


class UnsafeCheckpointError(errors.CommandError):
  """A .pth that names something a state dict never needs."""


# PyTorch's storage types, by the name the pickle gives them -> numpy dtype.
# (bfloat16 has no numpy dtype: read as uint16 and widened, see _array.)
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64,
    "HalfStorage": np.float16, "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
  """Stands in for torch.<Name>Storage: only its dtype is used. Immutable,
  so that a pickle cannot change how this or a later file is read."""
  __slots__ = ("name", "dtype")

  def __init__(self, name: str):
    object.__setattr__(self, "name", name)
    object.__setattr__(self, "dtype", _STORAGE_DTYPES[name])

  def __setattr__(self, name, value):
    raise UnsafeCheckpointError("A storage type cannot be changed.")

  def __setstate__(self, state):
    raise UnsafeCheckpointError("A storage type cannot be changed.")


def _array(raw: bytes, dtype) -> np.ndarray:
  """A storage's bytes as a flat numpy array (little-endian, as PyTorch
  writes them)."""
  if dtype == "bfloat16":
    # The high 16 bits of a float32.
    return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(
        np.float32)
  return np.frombuffer(raw, np.dtype(dtype).newbyteorder("<"))


def _rebuild_tensor(storage: np.ndarray, offset: int, size: Tuple[int, ...],
                    stride: Tuple[int, ...], *unused) -> np.ndarray:
  """torch._utils._rebuild_tensor_v2 (and _rebuild_tensor, PyTorch 0.3's):
  a read-only view of `storage`. Not a copy: a pickle can name one storage
  from any number of tensors for a few bytes each, and copies would let a
  small file allocate without bound."""
  del unused  # requires_grad, backward hooks, metadata.
  # as_strided reads wherever it is told: the view must lie in the storage.
  if not isinstance(size, tuple) or not isinstance(stride, tuple):
    raise errors.CommandError(f"a tensor of size {size!r}, stride "
                              f"{stride!r} is not a view PyTorch writes")
  numbers = [offset, *size, *stride]
  if not all(isinstance(n, int) and n >= 0 for n in numbers) or len(
      size) != len(stride):
    raise errors.CommandError(f"a tensor of size {size}, stride {stride} at offset "
                     f"{offset} is not a view PyTorch writes")
  if math.prod(size) > len(storage):
    raise errors.CommandError(f"a tensor of size {size} holds more values than its "
                     f"storage of {len(storage)}")
  if 0 not in size and offset + sum(
      (n - 1) * step for n, step in zip(size, stride)) >= len(storage):
    raise errors.CommandError(f"a tensor of size {size}, stride {stride} at offset "
                     f"{offset} reaches past its storage of {len(storage)} "
                     "values")
  itemsize = storage.itemsize
  return np.lib.stride_tricks.as_strided(
      storage[offset:], shape=size,
      strides=tuple(s * itemsize for s in stride), writeable=False)


def _rebuild_parameter(data: np.ndarray, *unused) -> np.ndarray:
  """torch._utils._rebuild_parameter: the parameter's data."""
  del unused
  return data


def _ordered_dict() -> collections.OrderedDict:
  """collections.OrderedDict as torch.save pickles it: called with no
  arguments (its items and attributes follow), so that a pickle cannot
  copy a dict again and again for a few bytes each."""
  return collections.OrderedDict()


class _Frozen:
  """One of the functions a pickle may call, which the pickle cannot
  change (a BUILD on a plain function could set its defaults for this and
  every later file)."""
  __slots__ = ("_function",)

  def __init__(self, function):
    object.__setattr__(self, "_function", function)

  def __call__(self, *args):
    return self._function(*args)

  def __setattr__(self, name, value):
    raise UnsafeCheckpointError("A function cannot be changed.")

  def __setstate__(self, state):
    raise UnsafeCheckpointError("A function cannot be changed.")


_REBUILD = _Frozen(_rebuild_tensor)
_PARAMETER = _Frozen(_rebuild_parameter)

# (module, name) -> what it becomes. Nothing else is resolved.
_ALLOWED = {
    ("collections", "OrderedDict"): _Frozen(_ordered_dict),
    ("torch._utils", "_rebuild_tensor_v2"): _REBUILD,
    ("torch._utils", "_rebuild_tensor"): _REBUILD,
    ("torch._utils", "_rebuild_parameter"): _PARAMETER,
}
_ALLOWED.update({("torch", name): _StorageType(name)
                 for name in _STORAGE_DTYPES})


# Stands in for the tensor rebuild functions while a legacy file's storages
# are only listed (their bytes come after the pickle).
_SKIP = _Frozen(lambda *unused: None)


class _Unpickler(pickle.Unpickler):
  """Resolves only `_ALLOWED`; each tensor storage is what `storage(key,
  storage type, number of values)` returns. With `rebuild=False` tensors
  are not built (the storages are only listed)."""

  def __init__(self, file, path: str,
               storage: Callable[[str, "_StorageType", int], object],
               rebuild: bool = True):
    super().__init__(file)
    self._path = path
    self._storage = storage
    self._rebuild = rebuild

  def find_class(self, module: str, name: str):
    try:
      found = _ALLOWED[(module, name)]
    except KeyError:
      raise UnsafeCheckpointError(
          f"{self._path} names {module}.{name}, which a PyTorch state dict "
          "never needs: not reading it (unpickling it could run code). "
          "Save the model's state_dict() (torch.save(net.state_dict(), "
          "path)) and convert that.") from None
    if not self._rebuild and found in (_REBUILD, _PARAMETER):
      return _SKIP
    return found

  def persistent_load(self, pid):
    # (kind, type, key, location, number of values), and in the legacy
    # format a sixth entry, the view metadata PyTorch 0.3 wrote (None since).
    if not isinstance(pid, tuple) or len(pid) not in (5, 6) or (
        len(pid) == 6 and pid[5] is not None):
      raise errors.CommandError(f"{self._path} holds a persistent id that is "
                                "not a tensor storage's")
    kind, storage_type, key, _, numel = pid[:5]
    if kind != "storage" or not isinstance(storage_type, _StorageType):
      raise UnsafeCheckpointError(
          f"{self._path} holds a persistent object {kind!r} that is not a "
          "tensor storage.")
    if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
      raise errors.CommandError(f"{self._path} holds a storage id that is "
                                "not PyTorch's")
    return self._storage(key, storage_type, numel)


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
  """The tensors of a PyTorch state dict file, by name, as numpy arrays;
  the `module.` prefix of DataParallel models is removed, and batch norm's
  `num_batches_tracked` counters are left out.

  Raises:
    UnsafeCheckpointError: the file names anything but a state dict's
      parts.
    ValueError: a file that is not a `.pth` torch.save wrote, or whose
      pickle is not a mapping of names to tensors.
  """
  if not os.path.isfile(path):
    raise errors.CommandError(f"{path} is not a file: give the path of a .pth "
                     "(e.g. checkpoints/facades_label2photo/latest_net_G.pth).")
  with open(path, "rb") as file:
    start = file.read(4)
  try:
    # By the first bytes, as torch.load tells them apart: a zip's local
    # header, or the protocol opcode of the legacy format's first pickle.
    if start == b"PK\x03\x04":
      state = _read_zip(path)
    elif start[:1] == b"\x80" and start[1:2] in (b"\x02", b"\x03", b"\x04",
                                                  b"\x05"):
      state = _read_legacy(path)
    else:
      raise errors.CommandError(_NOT_TORCH.format(path=path))
  except ValueError as e:  # UnsafeCheckpointError too.
    if isinstance(e, errors.CommandError) and str(e).startswith(path):
      raise
    kind = (UnsafeCheckpointError if isinstance(e, UnsafeCheckpointError)
            else errors.CommandError)
    raise kind(f"{path} cannot be read as a state dict: "
               f"{str(e).rstrip('.')}. {_AGAIN}") from None
  except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, KeyError,
          TypeError, AttributeError, IndexError, MemoryError) as e:
    raise errors.CommandError(f"{path} is damaged or not a state dict saved by "
                     f"torch.save ({type(e).__name__}: {e}); download or "
                     "save it again.") from None
  if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
    state = state["state_dict"]  # A checkpoint dict around the weights.
  if not isinstance(state, dict) or not all(
      isinstance(v, np.ndarray) for v in state.values()):
    raise errors.CommandError(f"{path} does not hold a state dict (a mapping of "
                     "names to tensors).")
  return {(k[len("module."):] if k.startswith("module.") else k): v
          for k, v in state.items() if not k.endswith("num_batches_tracked")}


_NOT_TORCH = ("{path} is not a checkpoint torch.save wrote (neither its zip "
              "format nor its older one). Give the .pth file itself.")
_AGAIN = ("Download it again, or save it again with "
          "torch.save(model.state_dict(), path).")


def _read_zip(path: str) -> object:
  """The unpickled contents of the zip-format .pth at `path`."""
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
    if len(pickles) != 1:
      raise errors.CommandError(f"{path} is a zip, but not one torch.save "
                                "wrote (no single */data.pkl in it).")
    prefix = pickles[0][:-len("/data.pkl")]
    storages: Dict[str, np.ndarray] = {}

    def storage(key, storage_type, unused_numel):
      if key not in storages:
        name = f"{prefix}/data/{key}"
        info = archive.getinfo(name)  # KeyError: no such storage.
        if info.compress_type != zipfile.ZIP_STORED:
          # torch.save stores tensors uncompressed; a compressed one could
          # unpack to any size.
          raise errors.CommandError(f"storage {key} is compressed, which "
                                    "torch.save never does")
        storages[key] = _array(archive.read(name), storage_type.dtype)
      return storages[key]

    with archive.open(pickles[0]) as file:
      return _Unpickler(file, path, storage).load()


# The legacy format (torch.save before PyTorch 1.6, and since then with
# _use_new_zipfile_serialization=False) is pickles in a row: this magic
# number, a protocol version, system information, the object, the sorted
# storage keys; then each storage as its number of values (int64) and its
# bytes, in that order.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _itemsize(dtype) -> int:
  return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def _read_legacy(path: str) -> object:
  """The unpickled contents of the legacy-format .pth at `path`: the
  object's pickle is read twice, first to list its storages (whose bytes
  follow it), then to build its tensors from them."""
  with open(path, "rb") as file:

    def refuse(*unused):
      raise errors.CommandError("a storage outside the object's pickle")

    if _Unpickler(file, path, refuse).load() != _LEGACY_MAGIC:
      raise errors.CommandError(_NOT_TORCH.format(path=path))
    protocol = _Unpickler(file, path, refuse).load()
    if protocol != _LEGACY_PROTOCOL:
      raise errors.CommandError(
          f"{path} is in torch.save's legacy format version {protocol!r}, "
          f"not {_LEGACY_PROTOCOL}: load it in PyTorch and save it again "
          "with torch.save(model.state_dict(), path).")
    header = _Unpickler(file, path, refuse).load()
    if not isinstance(header, dict) or header.get("little_endian") is False:
      raise errors.CommandError(
          f"{path} was written on a big-endian machine or its header is "
          f"damaged. {_AGAIN}")
    start = file.tell()
    listed: Dict[str, Tuple[object, int]] = {}
    _Unpickler(file, path, lambda key, kind, numel: listed.setdefault(
        key, (kind.dtype, numel)), rebuild=False).load()
    keys = _Unpickler(file, path, refuse).load()
    if not isinstance(keys, list) or sorted(keys) != sorted(listed):
      raise errors.CommandError(f"{path} lists other storages than its "
                                f"tensors use. {_AGAIN}")
    storages = {}
    remaining = os.fstat(file.fileno()).st_size - file.tell()
    for key in keys:
      dtype, numel = listed[key]
      count = int.from_bytes(file.read(8), "little", signed=True)
      size = numel * _itemsize(dtype)
      if count != numel or size + 8 > remaining:
        raise errors.CommandError(f"{path} is cut short or damaged at "
                                  f"storage {key}. {_AGAIN}")
      storages[key] = _array(file.read(size), dtype)
      remaining -= size + 8
    file.seek(start)
    return _Unpickler(file, path, lambda key, *unused: storages[key]).load()
