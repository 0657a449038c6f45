"""Reads PyTorch-written files (torch.save, NVIDIA persistence pickles) without torch.

Nothing from a checkpoint is ever executed. A restricted unpickler resolves only an explicit
allow-list of globals, each mapped to a local, side-effect-free reconstruction; any other
global (``os.system``, ``builtins.eval``, a model class, ...) raises ``CheckpointError``.

Formats understood:
  * torch.save zip archives (``*/data.pkl`` + ``*/data/<key>`` raw storages, torch >= 1.6);
  * legacy torch.save streams (magic, protocol, sys_info, pickle, storage keys, raw storages),
    which is also what ``torch.storage._load_from_bytes`` wraps inside NVIDIA pickles;
  * plain pickles whose tensors arrive through ``_load_from_bytes`` (NVIDIA ``.pkl``).

Tensors come back as numpy arrays; NVIDIA persistent modules come back as ``PersistentObj``.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from typing import Any, BinaryIO

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
}


class CheckpointError(ValueError):
    """A checkpoint file cannot be read safely or is not what it claims to be."""


class PersistentObj:
    """A module pickled by NVIDIA's ``torch_utils.persistence``, kept as data.

    Attributes:
      class_name: e.g. ``"Generator"``, ``"SynthesisLayer"``.
      state: the module's pickled ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``,
        and plain attributes such as ``conv_clamp``).
    """

    def __init__(self, meta: dict):
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise CheckpointError("persistent object metadata is not a class record")
        self.class_name = str(meta.get("class_name"))
        self.version = meta.get("version")
        self.state = meta.get("state") or {}

    def __repr__(self) -> str:
        return f"PersistentObj({self.class_name})"


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict."""


class Namespace:
    """Stand-in for ``argparse.Namespace`` (training args in rosinality files)."""

    def __setstate__(self, state):
        self.__dict__.update(state if isinstance(state, dict) else {})


class _StorageType:
    """A torch storage class, reduced to its dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage, offset, size, stride, *unused) -> np.ndarray:
    if not isinstance(storage, np.ndarray):
        raise CheckpointError("tensor without a readable storage")
    size, stride = tuple(size), tuple(stride)
    if not size:
        return storage[offset].copy()
    need = offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1
    if min(size) > 0 and need > storage.size:
        raise CheckpointError("tensor extends past its storage (truncated file?)")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=[st * item for st in stride], writeable=False)
    return view.copy()  # own, writable memory (views of one storage stay independent)


def _rebuild_parameter(data, *unused) -> np.ndarray:
    return data


try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct


def _numpy_array(cls, shape, dtype):
    """numpy's own array unpickling (``ndarray.__setstate__`` then fills it from bytes).
    Object arrays can only hold what the allow-list itself admits."""
    if cls is not np.ndarray:
        raise CheckpointError("refused numpy _reconstruct of a non-ndarray class")
    return _np_reconstruct(cls, shape, dtype)


def _numpy_scalar(dtype, data=None):
    if data is None:
        return np.zeros((), dtype)[()]
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _codecs_encode(text, encoding="latin1"):
    # Protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1').
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise CheckpointError("refused _codecs.encode with unexpected arguments")
    return text.encode("latin1")


def _persistent_obj(meta):
    return PersistentObj(meta)


def _storage_from_bytes(data):
    return load_torch_bytes(bytes(data))


def _reconstructor(cls, base, state=None):
    # copyreg._reconstructor(cls, object, None) is how protocol < 2 rebuilds plain objects.
    if base is not object or cls not in (Namespace, EasyDict):
        raise CheckpointError("refused copyreg._reconstructor for an unknown class")
    return cls.__new__(cls)


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("_codecs", "encode"): _codecs_encode,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("argparse", "Namespace"): Namespace,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_array,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_array,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}
for _name in _STORAGE_DTYPES:
    _ALLOWED[("torch", _name)] = _StorageType(_name)
    _ALLOWED[("torch.storage", _name)] = _ALLOWED[("torch", _name)]


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals; storages come from ``load_storage``."""

    def __init__(self, file: BinaryIO, load_storage=None):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"refused to load global '{module}.{name}': not on the allow-list of "
                "tensor/container types (jaxfair never runs code from a checkpoint)") from None

    def persistent_load(self, pid):
        if self._load_storage is None:
            raise CheckpointError("unexpected persistent id in a plain pickle")
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise CheckpointError(f"unsupported persistent id {pid!r:.80}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError("storage of an unknown type")
        return self._load_storage(key, storage_type.dtype, numel)


def _unpickle(data: bytes | BinaryIO, load_storage=None) -> Any:
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    try:
        return _RestrictedUnpickler(f, load_storage).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, struct.error, UnicodeDecodeError, OverflowError) as e:
        raise CheckpointError(f"corrupt or truncated pickle data ({type(e).__name__}: {e})"
                              ) from None


def _load_legacy(f: BinaryIO) -> Any:
    """Legacy torch.save stream: magic, protocol, sys_info, object, keys, raw storages."""
    if _unpickle(f) != _LEGACY_MAGIC:
        raise CheckpointError("not a torch.save stream (bad magic number)")
    _unpickle(f)  # protocol version
    sys_info = _unpickle(f)
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise CheckpointError("big-endian torch files are not supported")
    pending: dict[str, tuple[np.dtype, np.ndarray]] = {}

    def load_storage(key, dtype, numel):
        if key not in pending:
            pending[key] = (dtype, np.empty(numel, dtype))
        return pending[key][1]

    # The storages' bytes follow the pickle, so tensors unpickled now would view empty
    # buffers: a first pass only learns the storages; the second rebuilds the tensors.
    start = f.tell()
    _unpickle(f, load_storage)
    keys = _unpickle(f)
    for key in keys:
        head = f.read(8)
        if len(head) != 8:
            raise CheckpointError("truncated storage data")
        (count,) = struct.unpack("<q", head)
        if key not in pending:
            raise CheckpointError(f"storage {key} listed but never used")
        dtype, buf = pending[key]
        raw = f.read(count * dtype.itemsize)
        if count != buf.size or len(raw) != count * dtype.itemsize:
            raise CheckpointError("truncated storage data")
        buf[...] = np.frombuffer(raw, dtype)
    missing = set(pending) - set(keys)
    if missing:
        raise CheckpointError(f"storages missing from file: {sorted(missing)[:3]}")
    end = f.tell()
    f.seek(start)
    obj = _unpickle(f, load_storage)
    f.seek(end)
    return obj


def _load_zip(zf: zipfile.ZipFile) -> Any:
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise CheckpointError("zip archive is not a torch.save file (no */data.pkl)")
    root = pkl[0].split("/")[0]
    byteorder = f"{root}/byteorder"
    if byteorder in names and zf.read(byteorder).strip() != b"little":
        raise CheckpointError("big-endian torch files are not supported")

    def load_storage(key, dtype, numel):
        try:
            raw = zf.read(f"{root}/data/{key}")
        except KeyError:
            raise CheckpointError(f"storage {key} missing from archive") from None
        if len(raw) < numel * dtype.itemsize:
            raise CheckpointError(f"storage {key} is truncated")
        return np.frombuffer(raw, dtype, count=numel)

    return _unpickle(zf.read(pkl[0]), load_storage)


def load_torch_bytes(data: bytes) -> Any:
    """Loads a torch.save payload (zip or legacy) held in memory."""
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                return _load_zip(zf)
        except zipfile.BadZipFile as e:
            raise CheckpointError(f"corrupt zip archive ({e})") from None
    return _load_legacy(io.BytesIO(data))


def load_file(path: str) -> Any:
    """Loads a ``.pt``/``.pth`` (torch.save) or ``.pkl`` (NVIDIA pickle) file as plain data.

    Args:
      path: file to read.

    Returns:
      The pickled object with tensors as numpy arrays, persistent modules as
      ``PersistentObj`` and ``OrderedDict``/``EasyDict`` containers.

    Raises:
      CheckpointError: the file is unreadable, truncated, of an unknown format, or asks for a
        global that is not on the allow-list.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"cannot read file ({e.strerror})") from None
    if not data:
        raise CheckpointError("file is empty")
    if data[:4] == b"PK\x03\x04":
        return load_torch_bytes(data)
    if data[:1] != b"\x80":
        raise CheckpointError("unknown format: neither a pickle nor a torch.save archive")
    f = io.BytesIO(data)
    first = _unpickle(f)
    if first == _LEGACY_MAGIC:
        return _load_legacy(io.BytesIO(data))
    if f.tell() != len(data):
        raise CheckpointError("trailing data after the pickle")
    return first
