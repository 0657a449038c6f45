"""Reads PyTorch-written files (torch.save, NVIDIA persistence pickles) without torch.

Nothing from a checkpoint is ever executed. A restricted unpickler resolves only an explicit
allow-list of globals, each mapped to a local, side-effect-free reconstruction; any other
global (``os.system``, ``builtins.eval``, a model class, ...) raises ``CheckpointError``.

A hostile file can still try to crash, poison or exhaust the reader, so (docs/security.md):
  * every pickle stream is scanned (``pickle_scan``) before it is unpickled: memo indices,
    lengths, frames, nesting, dict keys, BUILD targets and object counts;
  * each load gets fresh stand-ins for the allow-listed globals (nothing shared survives it);
  * every tensor is checked against its storage (sizes, strides, offset, extent) and every
    allocation against a budget derived from the file's size (``Budget``);
  * zip entries are checked for size and compression ratio before they are decompressed.

Formats understood:
  * torch.save zip archives (``*/data.pkl`` + ``*/data/<key>`` raw storages, torch >= 1.6);
  * legacy torch.save streams (magic, protocol, sys_info, pickle, storage keys, raw storages),
    which is also what ``torch.storage._load_from_bytes`` wraps inside NVIDIA pickles;
  * plain pickles whose tensors arrive through ``_load_from_bytes`` (NVIDIA ``.pkl``).

Tensors come back as numpy arrays; NVIDIA persistent modules come back as ``PersistentObj``.
"""

from __future__ import annotations

import collections
import contextlib
import io
import math
import pickle
import struct
import zipfile
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from jaxfair.convert import pickle_scan
from jaxfair.convert.pickle_scan import CALL, CONSTRUCT, MAPPING, VALUE
from jaxfair.errors import JaxfairError

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

# What one load may allocate: a fixed allowance plus a multiple of the file's size. A genuine
# file needs about twice its size (storages, then tensors copied out of them).
BASE_BUDGET = 64 << 20
BUDGET_PER_FILE_BYTE = 4
MAX_NDIM = 32  # numpy's own limit is 64; no checkpoint tensor comes close
# A zip entry may inflate at most this much (torch writes storages uncompressed, ratio 1).
MAX_ZIP_RATIO = 64
_MAX_MESSAGE = 600


class CheckpointError(JaxfairError, ValueError):
    """A checkpoint file cannot be read safely or is not what it claims to be.

    The message is one line (whitespace collapsed) of bounded length, whatever went into it.
    """

    def __init__(self, message: object = ""):
        text = " ".join(str(message).split())
        if len(text) > _MAX_MESSAGE:
            text = text[:_MAX_MESSAGE] + " ..."
        super().__init__(text)


def describe(value: object, limit: int = 40) -> str:
    """A short description of an untrusted value for an error message.

    Never calls ``repr``/``str``/``hash`` of anything but a plain primitive (a crafted tuple
    chain can take exponential time to print): strings are shown truncated, other values by
    type name.
    """
    if value is None or isinstance(value, (bool, float)):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else f"<int of {value.bit_length()} bits>"
    if isinstance(value, (str, bytes)):
        return repr(value[:limit]) + ("..." if len(value) > limit else "")
    return f"<{type(value).__name__}>"


def describe_error(e: BaseException) -> str:
    """``Type: message`` of an exception raised while reading untrusted data, safely.

    Only string/int arguments are shown (``KeyError(k)`` prints ``repr(k)``, which for a
    crafted ``k`` may never finish).
    """
    if all(isinstance(a, (str, int)) and not isinstance(a, bool) for a in e.args):
        text = ", ".join(describe(a, 200) if isinstance(a, int) else a[:200] for a in e.args)
    else:
        text = ", ".join(describe(a) for a in e.args)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


@contextlib.contextmanager
def untrusted(what: str = "checkpoint") -> Iterator[None]:
    """Turns any failure while reading untrusted data into one ``CheckpointError``.

    The importers' boundary: a crafted file can make parsing code fail in ways nobody
    enumerated (a string where a number belongs, a missing table, a cycle), and the user
    must see one line, never a traceback.
    """
    try:
        yield
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError(f"out of memory reading the {what} (crafted or corrupt file?)"
                              ) from None
    except RecursionError:
        raise CheckpointError(f"{what} structure is nested too deeply (crafted file?)"
                              ) from None
    except Exception as e:  # noqa: BLE001 (the boundary: anything else is a malformed file)
        raise CheckpointError(f"malformed {what} ({describe_error(e)})") from None


class Budget:
    """Bytes one load may still allocate; shared by every stream and storage of the file."""

    def __init__(self, file_size: int):
        self.left = BASE_BUDGET + BUDGET_PER_FILE_BYTE * file_size

    def take(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise CheckpointError(f"{what} would need {nbytes} bytes, more than a file of this "
                                  "size can hold (refused before allocating)")
        self.left -= nbytes


class PersistentObj:
    """A module pickled by NVIDIA's ``torch_utils.persistence``, kept as data.

    Attributes:
      class_name: e.g. ``"Generator"``, ``"SynthesisLayer"``.
      state: the module's pickled ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``,
        and plain attributes such as ``conv_clamp``); the three tables are always dicts.
    """

    def __init__(self, meta: dict):
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise CheckpointError("persistent object metadata is not a class record")
        name, state = meta.get("class_name"), meta.get("state")
        if not isinstance(name, str) or len(name) > 200:
            raise CheckpointError(f"persistent object class name is {describe(name)}")
        if state is None:
            state = {}
        if not isinstance(state, dict):
            raise CheckpointError(f"persistent {name[:80]} has a {type(state).__name__} "
                                  "state, expected a dict")
        for table in ("_parameters", "_buffers", "_modules"):
            if state.get(table) is None:
                state[table] = {}
            if not isinstance(state[table], dict):
                raise CheckpointError(f"persistent {name[:80]}.{table} is a "
                                      f"{type(state[table]).__name__}, expected a dict")
        self.class_name = name
        self.version = meta.get("version")
        self.state = state

    def __repr__(self) -> str:
        return f"PersistentObj({self.class_name})"


def _check_keys(pairs, what: str) -> list:
    """Pairs whose keys are safe to hash (see pickle_scan: primitives, small tuples)."""
    out = []
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not _safe_key(pair[0]):
            raise CheckpointError(f"refused {what}: items must be (key, value) pairs with str, "
                                  "bytes, number or small-tuple keys")
        out.append((pair[0], pair[1]))
    return out


def _safe_key(x, depth: int = pickle_scan.KEY_DEPTH) -> bool:
    # Bounded recursion: at most KEY_DEPTH levels of tuples of at most 16 items.
    if x is None or isinstance(x, (str, bytes, int, float)):
        return True
    return (type(x) is tuple and depth > 0 and len(x) <= 16
            and all(_safe_key(i, depth - 1) for i in x))


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict (each load subclasses it anew)."""

    def __init__(self, *args, **kwargs):
        if len(args) > 1:
            raise CheckpointError("refused EasyDict() with several arguments")
        items = args[0] if args else ()
        super().__init__(_check_keys(items.items() if isinstance(items, dict) else items,
                                     "EasyDict()"), **kwargs)


class Namespace:
    """Stand-in for ``argparse.Namespace`` (training args in rosinality files)."""

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update((k, v) for k, v in state.items() if isinstance(k, str))


class _StorageType:
    """A torch storage class, reduced to its dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _PickledArray(np.ndarray):
    """ndarray made by numpy's unpickling; refuses states that lie about their size."""

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise CheckpointError("refused ndarray state of an unknown layout")
        shape, dtype, raw = state[-4], state[-3], state[-1]
        _check_dtype(dtype)
        numel = _numel(shape, "ndarray")
        if not isinstance(raw, bytes) or len(raw) != numel * dtype.itemsize:
            raise CheckpointError("refused ndarray state whose data does not match its shape")
        super().__setstate__(state)


def _check_dtype(dtype) -> np.dtype:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.kind not in "biufc":
        raise CheckpointError(f"refused numpy dtype {describe(dtype)} (numbers only)")
    return dtype


def _numel(shape, what: str) -> int:
    if type(shape) not in (tuple, list) or len(shape) > MAX_NDIM or not all(
            type(s) is int and s >= 0 for s in shape):
        raise CheckpointError(f"{what} shape is not a list of at most {MAX_NDIM} "
                              "non-negative integers")
    return math.prod(shape)


def _int(x, what: str) -> int:
    if type(x) is not int or x < 0:
        raise CheckpointError(f"{what} is {describe(x)}, expected a non-negative integer")
    return x


def check_tensor(storage_size: int, offset, size, stride) -> tuple[int, tuple, tuple]:
    """Validates a strided view of a storage of ``storage_size`` elements.

    Returns:
      (numel, size, stride) as plain ints.

    Raises:
      CheckpointError: negative or non-integer offset/sizes/strides, ranks that differ, or
        any element outside the storage.
    """
    offset = _int(offset, "tensor offset")
    numel = _numel(size, "tensor")
    if type(stride) not in (tuple, list) or len(stride) != len(size):
        raise CheckpointError("tensor strides do not match its sizes")
    stride = tuple(_int(st, "tensor stride") for st in stride)
    if numel == 0:
        if offset > storage_size:
            raise CheckpointError("empty tensor starts past the end of its storage")
        return 0, tuple(size), stride
    last = offset + sum((s - 1) * st for s, st in zip(size, stride))
    if last >= storage_size:
        raise CheckpointError(f"tensor reaches element {last} of a storage of {storage_size} "
                              "(truncated or crafted file)")
    return numel, tuple(size), stride


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
        storage_types = {n: _StorageType(n) for n in _STORAGE_DTYPES}
        self.storage_types = set(map(id, storage_types.values()))
        entries = {
            ("collections", "OrderedDict"): (MAPPING, self.ordered_dict),
            ("builtins", "set"): (CALL, self.set),
            ("builtins", "frozenset"): (CALL, self.frozenset),
            ("builtins", "slice"): (CALL, slice),
            ("__builtin__", "set"): (CALL, self.set),
            ("__builtin__", "frozenset"): (CALL, self.frozenset),
            ("_codecs", "encode"): (CALL, _codecs_encode),
            ("copyreg", "_reconstructor"): (MAPPING, self.reconstructor),
            ("copy_reg", "_reconstructor"): (MAPPING, self.reconstructor),
            ("torch._utils", "_rebuild_tensor"): (CALL, self.rebuild_tensor),
            ("torch._utils", "_rebuild_tensor_v2"): (CALL, self.rebuild_tensor),
            ("torch._utils", "_rebuild_parameter"): (CALL, _rebuild_parameter),
            ("torch._utils", "_rebuild_parameter_with_state"): (CALL, _rebuild_parameter),
            ("torch.storage", "_load_from_bytes"): (CALL, self.storage_from_bytes),
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): (CALL, PersistentObj),
            ("dnnlib.util", "EasyDict"): (MAPPING, self.easydict),
            ("dnnlib", "EasyDict"): (MAPPING, self.easydict),
            ("argparse", "Namespace"): (CONSTRUCT, self.namespace),
            ("numpy", "dtype"): (CONSTRUCT, _numpy_dtype),
            ("numpy", "ndarray"): (VALUE, np.ndarray),
            ("numpy.core.multiarray", "_reconstruct"): (CONSTRUCT, self.numpy_array),
            ("numpy._core.multiarray", "_reconstruct"): (CONSTRUCT, self.numpy_array),
            ("numpy.core.multiarray", "scalar"): (CALL, _numpy_scalar),
            ("numpy._core.multiarray", "scalar"): (CALL, _numpy_scalar),
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
        return collections.OrderedDict(_check_keys(args[0] if args else (), "OrderedDict()"))

    def set(self, items=()):
        return set(self._elements(items))

    def frozenset(self, items=()):
        return frozenset(self._elements(items))

    @staticmethod
    def _elements(items) -> list:
        if type(items) not in (list, tuple) or not all(_safe_key(x) for x in items):
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
        # shape, dtype and bytes come with the BUILD state that _PickledArray checks.
        if _numel(shape, "ndarray") != 0 or not isinstance(dtype, (bytes, str)) or len(dtype) > 8:
            raise CheckpointError("refused numpy _reconstruct with unexpected arguments")
        return _np_reconstruct(_PickledArray, shape, dtype)

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

    def storage_type(self, value) -> _StorageType:
        if not isinstance(value, _StorageType) or id(value) not in self.storage_types:
            raise CheckpointError("storage of an unknown type")
        return value


def _rebuild_parameter(data, *unused) -> np.ndarray:
    return data


try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct


def _numpy_dtype(spec, align=False, copy=False):
    # copy=True always: numpy hands out shared built-in dtype objects otherwise, and the
    # pickle's BUILD that follows must only ever touch a dtype made for this file.
    if not isinstance(spec, str) or len(spec) > 8:
        raise CheckpointError(f"refused numpy dtype {describe(spec)}")
    return np.dtype(spec, align=bool(align), copy=True)


def _numpy_scalar(dtype, data=None):
    _check_dtype(dtype)
    if data is None:
        return np.zeros((), dtype)[()]
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise CheckpointError("refused numpy scalar whose data does not match its dtype")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _codecs_encode(text, encoding="latin1"):
    # Protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1').
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise CheckpointError("refused _codecs.encode with unexpected arguments")
    return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals, from one load's own stand-ins."""

    def __init__(self, file: BinaryIO, load: _Load, load_storage=None):
        super().__init__(file)
        self._load = load
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._load.globals[(module, name)]
        except KeyError:  # the scanner refuses these first; kept as a second line
            raise CheckpointError(
                f"refused to load global '{module[:100]}.{name[:100]}': not on the allow-list "
                "of tensor/container types (jaxfair never runs code from a checkpoint)"
            ) from None

    def persistent_load(self, pid):
        if self._load_storage is None:
            raise CheckpointError("unexpected persistent id in a plain pickle")
        if type(pid) is not tuple or len(pid) < 5 or pid[0] != "storage":
            raise CheckpointError(f"unsupported persistent id (a {type(pid).__name__})")
        storage_type = self._load.storage_type(pid[1])
        key, numel = pid[2], _int(pid[4], "storage size")
        if not isinstance(key, str) or not 0 < len(key) <= 64:
            raise CheckpointError(f"storage key is {describe(key)}, expected a short string")
        return self._load_storage(key, storage_type.dtype, numel)


def _unpickle(f: BinaryIO, load: _Load, end: int, load_storage=None) -> Any:
    """Scans, then unpickles, one stream from ``f``'s position; ``end`` is the data's size."""
    start = f.tell()
    try:
        max_bytes = min(load.budget.left, pickle_scan.objects_allowed(end - start))
        stop, nbytes, ops = pickle_scan.scan(f, load.roles, max_bytes, end, load.ops_left)
    except pickle_scan.UnsafePickle as e:
        raise CheckpointError(str(e)) from None
    load.budget.take(nbytes, "the pickled objects")
    load.ops_left -= ops
    f.seek(start)
    try:
        obj = _RestrictedUnpickler(f, load, load_storage).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, struct.error, UnicodeDecodeError, OverflowError) as e:
        raise CheckpointError(f"corrupt or truncated pickle data ({describe_error(e)})"
                              ) from None
    if f.tell() != stop:
        raise CheckpointError("corrupt pickle (the stream ended where the scan did not)")
    return obj


def _load_legacy(f: BinaryIO, load: _Load, end: int) -> Any:
    """Legacy torch.save stream: magic, protocol, sys_info, object, keys, raw storages."""
    if _unpickle(f, load, end) != _LEGACY_MAGIC:
        raise CheckpointError("not a torch.save stream (bad magic number)")
    _unpickle(f, load, end)  # protocol version
    sys_info = _unpickle(f, load, end)
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
        _unpickle(f, load, end, load_storage)
    finally:
        load.materialize = True
    keys = _unpickle(f, load, end)
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
    obj = _unpickle(f, load, end, load_storage)
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
    return _unpickle(io.BytesIO(data), load, len(data), load_storage)


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
    first = _unpickle(f, load, len(data))
    if type(first) is int and first == _LEGACY_MAGIC:
        return _load_legacy(io.BytesIO(data), _Load(len(data)), len(data))
    if f.tell() != len(data):
        raise CheckpointError("trailing data after the pickle")
    return first
