"""Side-effect-free stand-ins for the globals a checkpoint may name, and their checks.

The restricted unpickler (``unpickler``) resolves an allow-listed global such as
``dnnlib.util.EasyDict``, ``torch.FloatStorage`` or ``numpy.dtype`` to one of these local
reconstructions, never to the real class: each checks its arguments (shapes, strides, dtypes,
keys) as untrusted data and raises ``CheckpointError`` on anything a genuine file would not
hold. Tensors come back as numpy arrays; NVIDIA persistent modules as ``PersistentObj``.

Example:
  numel, size, stride = check_tensor(storage.size, offset, size, stride)
  # CheckpointError if any element of the view lies outside the storage
"""

from __future__ import annotations

import math

import numpy as np

from jaxfair.convert import pickle_scan
from jaxfair.convert.guard import MAX_NDIM, CheckpointError, describe

STORAGE_DTYPES = {
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


def check_keys(pairs, what: str) -> list:
    """Pairs whose keys are safe to hash (see pickle_scan: primitives, small tuples)."""
    out = []
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not safe_key(pair[0]):
            raise CheckpointError(f"refused {what}: items must be (key, value) pairs with str, "
                                  "bytes, number or small-tuple keys")
        out.append((pair[0], pair[1]))
    return out


def safe_key(x, depth: int = pickle_scan.KEY_DEPTH) -> bool:
    # Bounded recursion: at most KEY_DEPTH levels of tuples of at most 16 items.
    if x is None or isinstance(x, (str, bytes, int, float)):
        return True
    return (type(x) is tuple and depth > 0 and len(x) <= 16
            and all(safe_key(i, depth - 1) for i in x))


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict (each load subclasses it anew)."""

    def __init__(self, *args, **kwargs):
        if len(args) > 1:
            raise CheckpointError("refused EasyDict() with several arguments")
        items = args[0] if args else ()
        super().__init__(check_keys(items.items() if isinstance(items, dict) else items,
                                     "EasyDict()"), **kwargs)


class Namespace:
    """Stand-in for ``argparse.Namespace`` (training args in rosinality files)."""

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update((k, v) for k, v in state.items() if isinstance(k, str))


class StorageType:
    """A torch storage class, reduced to its dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class PickledArray(np.ndarray):
    """ndarray made by numpy's unpickling; refuses states that lie about their size."""

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise CheckpointError("refused ndarray state of an unknown layout")
        shape, dtype, raw = state[-4], state[-3], state[-1]
        check_dtype(dtype)
        numel = numel_of(shape, "ndarray")
        if not isinstance(raw, bytes) or len(raw) != numel * dtype.itemsize:
            raise CheckpointError("refused ndarray state whose data does not match its shape")
        super().__setstate__(state)


def check_dtype(dtype) -> np.dtype:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.kind not in "biufc":
        raise CheckpointError(f"refused numpy dtype {describe(dtype)} (numbers only)")
    return dtype


def numel_of(shape, what: str) -> int:
    if type(shape) not in (tuple, list) or len(shape) > MAX_NDIM or not all(
            type(s) is int and s >= 0 for s in shape):
        raise CheckpointError(f"{what} shape is not a list of at most {MAX_NDIM} "
                              "non-negative integers")
    return math.prod(shape)


def nonneg_int(x, what: str) -> int:
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
    offset = nonneg_int(offset, "tensor offset")
    numel = numel_of(size, "tensor")
    if type(stride) not in (tuple, list) or len(stride) != len(size):
        raise CheckpointError("tensor strides do not match its sizes")
    stride = tuple(nonneg_int(st, "tensor stride") for st in stride)
    if numel == 0:
        if offset > storage_size:
            raise CheckpointError("empty tensor starts past the end of its storage")
        return 0, tuple(size), stride
    last = offset + sum((s - 1) * st for s, st in zip(size, stride))
    if last >= storage_size:
        raise CheckpointError(f"tensor reaches element {last} of a storage of {storage_size} "
                              "(truncated or crafted file)")
    return numel, tuple(size), stride


def rebuild_parameter(data, *unused) -> np.ndarray:
    return data


def numpy_dtype(spec, align=False, copy=False):
    # copy=True always: numpy hands out shared built-in dtype objects otherwise, and the
    # pickle's BUILD that follows must only ever touch a dtype made for this file.
    if not isinstance(spec, str) or len(spec) > 8:
        raise CheckpointError(f"refused numpy dtype {describe(spec)}")
    return np.dtype(spec, align=bool(align), copy=True)


def numpy_scalar(dtype, data=None):
    check_dtype(dtype)
    if data is None:
        return np.zeros((), dtype)[()]
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise CheckpointError("refused numpy scalar whose data does not match its dtype")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def codecs_encode(text, encoding="latin1"):
    # Protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1').
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise CheckpointError("refused _codecs.encode with unexpected arguments")
    return text.encode("latin1")
