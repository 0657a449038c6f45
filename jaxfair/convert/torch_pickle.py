"""Reads PyTorch-written files (torch.save, NVIDIA persistence pickles) without torch.

The container formats around the restricted unpickler (``unpickler``):
  * torch.save zip archives (``*/data.pkl`` + ``*/data/<key>`` raw storages, torch >= 1.6);
    entries are checked for size and compression ratio before they are decompressed;
  * legacy torch.save streams (magic, protocol, sys_info, pickle, storage keys, raw storages),
    which is also what ``torch.storage._load_from_bytes`` wraps inside NVIDIA pickles;
  * plain pickles whose tensors arrive through ``_load_from_bytes`` (NVIDIA ``.pkl``).

Each load (``_Load``) gets its own budget (``guard.Budget``) and fresh stand-ins for the
allow-listed globals (``safe_types``), so nothing shared survives it; every tensor is checked
against its storage. The hardening as a whole is described in docs/security.md.

Tensors come back as numpy arrays; NVIDIA persistent modules come back as ``PersistentObj``.

Example:
  top = load_file("stylegan2-ffhq-config-f.pkl")   # CheckpointError if refused
  g_ema = top["G_ema"]                              # a safe_types.PersistentObj
"""

from __future__ import annotations

import collections
import io
import struct
import zipfile
from typing import Any, BinaryIO

import numpy as np

from jaxfair.convert import pickle_scan
from jaxfair.convert.guard import MAX_ZIP_RATIO, Budget, CheckpointError, describe_error, untrusted
from jaxfair.convert.pickle_scan import CALL, CONSTRUCT, MAPPING, VALUE
from jaxfair.convert.safe_types import (
    STORAGE_DTYPES,
    EasyDict,
    Namespace,
    PersistentObj,
    PickledArray,
    StorageType,
    check_keys,
    check_tensor,
    codecs_encode,
    numel_of,
    numpy_dtype,
    numpy_scalar,
    rebuild_parameter,
    safe_key,
)
from jaxfair.convert.unpickler import unpickle

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as np_reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as np_reconstruct

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _Load:
    """State of one file's load: its budget and fresh stand-ins for every allowed global.

    Nothing here outlives the load, so a file that sets attributes on a stand-in (which the
    scanner refuses anyway) cannot affect the next file.
    """

    def __init__(self, file_size: int):
        self.budget = Budget(file_size)
        self.materialize = True  # False in the first pass over a legacy stream
        self.ops_left = pickle_scan.MAX_OPS  # shared by all streams (nested ones included)
        self.easydict = type("EasyDict", (EasyDict,), {})
        self.namespace = type("Namespace", (Namespace,), {})
        storage_types = {n: StorageType(n) for n in STORAGE_DTYPES}
        self.storage_types = set(map(id, storage_types.values()))
        entries = {
            ("collections", "OrderedDict"): (MAPPING, self.ordered_dict),
            ("builtins", "set"): (CALL, self.set),
            ("builtins", "frozenset"): (CALL, self.frozenset),
            ("builtins", "slice"): (CALL, slice),
            ("__builtin__", "set"): (CALL, self.set),
            ("__builtin__", "frozenset"): (CALL, self.frozenset),
            ("_codecs", "encode"): (CALL, codecs_encode),
            ("copyreg", "_reconstructor"): (MAPPING, self.reconstructor),
            ("copy_reg", "_reconstructor"): (MAPPING, self.reconstructor),
            ("torch._utils", "_rebuild_tensor"): (CALL, self.rebuild_tensor),
            ("torch._utils", "_rebuild_tensor_v2"): (CALL, self.rebuild_tensor),
            ("torch._utils", "_rebuild_parameter"): (CALL, rebuild_parameter),
            ("torch._utils", "_rebuild_parameter_with_state"): (CALL, rebuild_parameter),
            ("torch.storage", "_load_from_bytes"): (CALL, self.storage_from_bytes),
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): (CALL, PersistentObj),
            ("dnnlib.util", "EasyDict"): (MAPPING, self.easydict),
            ("dnnlib", "EasyDict"): (MAPPING, self.easydict),
            ("argparse", "Namespace"): (CONSTRUCT, self.namespace),
            ("numpy", "dtype"): (CONSTRUCT, numpy_dtype),
            ("numpy", "ndarray"): (VALUE, np.ndarray),
            ("numpy.core.multiarray", "_reconstruct"): (CONSTRUCT, self.numpy_array),
            ("numpy._core.multiarray", "_reconstruct"): (CONSTRUCT, self.numpy_array),
            ("numpy.core.multiarray", "scalar"): (CALL, numpy_scalar),
            ("numpy._core.multiarray", "scalar"): (CALL, numpy_scalar),
        }
        for name, st in storage_types.items():
            entries[("torch", name)] = entries[("torch.storage", name)] = (VALUE, st)
        self.roles = {k: role for k, (role, _) in entries.items()}
        self.globals = {k: obj for k, (_, obj) in entries.items()}

    # allow-listed callables ------------------------------------------------------------------
    def ordered_dict(self, *args):
        # Python 2 pickles pass the items as a list of pairs; later ones use SETITEMS.
        if len(args) > 1:
            raise CheckpointError("refused OrderedDict() with several arguments")
        return collections.OrderedDict(check_keys(args[0] if args else (), "OrderedDict()"))

    def set(self, items=()):
        return set(self._elements(items))

    def frozenset(self, items=()):
        return frozenset(self._elements(items))

    @staticmethod
    def _elements(items) -> list:
        if type(items) not in (list, tuple) or not all(safe_key(x) for x in items):
            raise CheckpointError("refused set(): elements must be str, bytes, numbers or "
                                  "small tuples")
        return list(items)

    def reconstructor(self, cls, base, state=None):
        # copyreg._reconstructor(cls, object, None): how protocol < 2 rebuilds plain objects.
        if base is not object or cls not in (self.namespace, self.easydict):
            raise CheckpointError("refused copyreg._reconstructor for an unknown class")
        return cls.__new__(cls)

    def numpy_array(self, cls, shape, dtype):
        """numpy's own array unpickling (``ndarray.__setstate__`` then fills it from bytes)."""
        if cls is not np.ndarray:
            raise CheckpointError("refused numpy _reconstruct of a non-ndarray class")
        # numpy always passes an empty shape and a placeholder typecode (b'b'); the real
        # shape, dtype and bytes come with the BUILD state that PickledArray checks.
        if numel_of(shape, "ndarray") != 0 or not isinstance(dtype, (bytes, str)) or len(dtype) > 8:
            raise CheckpointError("refused numpy _reconstruct with unexpected arguments")
        return np_reconstruct(PickledArray, shape, dtype)

    def rebuild_tensor(self, storage, offset, size, stride, *unused) -> np.ndarray:
        if not isinstance(storage, np.ndarray) or storage.ndim != 1:
            raise CheckpointError("tensor without a readable storage")
        numel, size, stride = check_tensor(storage.size, offset, size, stride)
        if not self.materialize:
            return storage  # first legacy pass: storages are still empty, only learn them
        self.budget.take(numel * storage.itemsize, "a tensor")
        if numel == 0:
            return np.empty(size, storage.dtype)
        item = storage.itemsize
        view = np.lib.stride_tricks.as_strided(
            storage[offset:], shape=size, strides=[st * item for st in stride],
            writeable=False)
        return view.copy()  # own, writable memory (views of one storage stay independent)

    def storage_from_bytes(self, data):
        if not isinstance(data, bytes):
            raise CheckpointError("torch.storage._load_from_bytes of a non-bytes argument")
        return _load_torch_bytes(data, self)

    def storage_type(self, value) -> StorageType:
        if not isinstance(value, StorageType) or id(value) not in self.storage_types:
            raise CheckpointError("storage of an unknown type")
        return value


def _load_legacy(f: BinaryIO, load: _Load, end: int) -> Any:
    """Legacy torch.save stream: magic, protocol, sys_info, object, keys, raw storages."""
    if unpickle(f, load, end) != _LEGACY_MAGIC:
        raise CheckpointError("not a torch.save stream (bad magic number)")
    unpickle(f, load, end)  # protocol version
    sys_info = unpickle(f, load, end)
    if isinstance(sys_info, dict) and sys_info.get("little_endian", True) is not True:
        raise CheckpointError("big-endian torch files are not supported")
    pending: dict[str, tuple[np.dtype, np.ndarray]] = {}

    def load_storage(key, dtype, numel):
        if key in pending:
            if pending[key][0] != dtype or pending[key][1].size != numel:
                raise CheckpointError(f"storage {key[:20]} is declared twice, differently")
            return pending[key][1]
        if numel * dtype.itemsize > end:
            raise CheckpointError(f"storage {key[:20]} declares {numel} elements, more than "
                                  "the file holds")
        load.budget.take(numel * dtype.itemsize, f"storage {key[:20]}")
        pending[key] = (dtype, np.empty(numel, dtype))
        return pending[key][1]

    # The storages' bytes follow the pickle, so tensors unpickled now would view empty
    # buffers: a first pass only learns the storages; the second rebuilds the tensors.
    start = f.tell()
    load.materialize = False
    try:
        unpickle(f, load, end, load_storage)
    finally:
        load.materialize = True
    keys = unpickle(f, load, end)
    if type(keys) is not list or not all(isinstance(k, str) for k in keys):
        raise CheckpointError("legacy storage key list is not a list of strings")
    for key in keys:
        head = f.read(8)
        if len(head) != 8:
            raise CheckpointError("truncated storage data")
        (count,) = struct.unpack("<q", head)
        if key not in pending:
            raise CheckpointError(f"storage {key[:20]} listed but never used")
        dtype, buf = pending[key]
        if count != buf.size:
            raise CheckpointError(f"storage {key[:20]} has {count} elements, its tensors "
                                  f"say {buf.size}")
        raw = f.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise CheckpointError("truncated storage data")
        buf[...] = np.frombuffer(raw, dtype)
    missing = set(pending) - set(keys)
    if missing:
        raise CheckpointError(f"{len(missing)} storages missing from file")
    stop = f.tell()
    f.seek(start)
    obj = unpickle(f, load, end, load_storage)
    f.seek(stop)
    return obj


def check_zip_entries(zf: zipfile.ZipFile, archive_size: int, budget: int) -> None:
    """Refuses, before decompressing anything, entries whose declared sizes are absurd.

    Raises:
      CheckpointError: an unknown compression method, an entry inflating more than
        ``MAX_ZIP_RATIO`` times, or declared sizes adding up past ``budget`` bytes.
    """
    total = 0
    for info in zf.infolist():
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointError(f"zip entry {info.filename[:60]} uses compression method "
                                  f"{info.compress_type} (stored or deflated only)")
        if info.compress_size > archive_size:
            raise CheckpointError(f"zip entry {info.filename[:60]} is larger than the archive")
        if info.file_size > MAX_ZIP_RATIO * info.compress_size + (1 << 16):
            raise CheckpointError(f"zip entry {info.filename[:60]} would inflate "
                                  f"{info.compress_size} bytes to {info.file_size} (zip bomb?)")
        total += info.file_size
    if total > budget:
        raise CheckpointError(f"zip entries declare {total} bytes in all, more than an archive "
                              f"of {archive_size} bytes may (zip bomb?)")


def _load_zip(zf: zipfile.ZipFile, load: _Load, archive_size: int) -> Any:
    check_zip_entries(zf, archive_size, load.budget.left)
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise CheckpointError("zip archive is not a torch.save file (no */data.pkl)")
    root = pkl[0].split("/")[0]
    byteorder = f"{root}/byteorder"
    if byteorder in names and zf.read(byteorder).strip() != b"little":
        raise CheckpointError("big-endian torch files are not supported")
    storages: dict[str, np.ndarray] = {}

    def load_storage(key, dtype, numel):
        if key not in storages:
            try:
                info = zf.getinfo(f"{root}/data/{key}")
            except KeyError:
                raise CheckpointError(f"storage {key[:20]} missing from archive") from None
            if info.file_size < numel * dtype.itemsize:
                raise CheckpointError(f"storage {key[:20]} is truncated")
            load.budget.take(info.file_size, f"storage {key[:20]}")
            raw = zf.read(info)
            storages[key] = np.frombuffer(raw, np.uint8)
        raw = storages[key]
        if raw.size < numel * dtype.itemsize:
            raise CheckpointError(f"storage {key[:20]} is truncated")
        return raw[:numel * dtype.itemsize].view(dtype)

    data = zf.read(pkl[0])
    return unpickle(io.BytesIO(data), load, len(data), load_storage)


def _load_torch_bytes(data: bytes, load: _Load) -> Any:
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                return _load_zip(zf, load, len(data))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError,
                RuntimeError, EOFError, OSError) as e:
            raise CheckpointError(f"corrupt zip archive ({describe_error(e)})") from None
    return _load_legacy(io.BytesIO(data), load, len(data))


def load_torch_bytes(data: bytes) -> Any:
    """Loads a torch.save payload (zip or legacy) held in memory."""
    return _load_torch_bytes(data, _Load(len(data)))


def load_file(path: str) -> Any:
    """Loads a ``.pt``/``.pth`` (torch.save) or ``.pkl`` (NVIDIA pickle) file as plain data.

    Args:
      path: file to read.

    Returns:
      The pickled object with tensors as numpy arrays, persistent modules as
      ``PersistentObj`` and ``OrderedDict``/``EasyDict`` containers.

    Raises:
      CheckpointError: the file is unreadable, truncated, of an unknown format, asks for a
        global that is not on the allow-list, or is refused as hostile (docs/security.md).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"cannot read file ({e.strerror})") from None
    with untrusted():
        return _load_data(data)


def _load_data(data: bytes) -> Any:
    if not data:
        raise CheckpointError("file is empty")
    load = _Load(len(data))
    if data[:4] == b"PK\x03\x04":
        return _load_torch_bytes(data, load)
    if data[:1] != b"\x80":
        raise CheckpointError("unknown format: neither a pickle nor a torch.save archive")
    f = io.BytesIO(data)
    first = unpickle(f, load, len(data))
    if type(first) is int and first == _LEGACY_MAGIC:
        return _load_legacy(io.BytesIO(data), _Load(len(data)), len(data))
    if f.tell() != len(data):
        raise CheckpointError("trailing data after the pickle")
    return first
