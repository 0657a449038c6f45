"""Test helper: writes torch.save-format zip files from numpy arrays, without torch.

Emits the same pickle opcodes torch does for a state dict (protocol 2: tensors as
``torch._utils._rebuild_tensor_v2(persistent storage, offset, size, stride, False,
OrderedDict())``) and the same archive layout (``archive/data.pkl``, ``archive/data/<key>``,
``archive/byteorder``, ``archive/version``), so jaxfair's reader can be tested on files
built in the test. When torch is installed, tests cross-check these files with torch.load.
"""

from __future__ import annotations

import collections
import struct
import zipfile

import numpy as np

_STORAGE = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
            np.dtype(np.int64): "LongStorage", np.dtype(np.float16): "HalfStorage"}


class _Emitter:
    def __init__(self):
        self.out = bytearray(b"\x80\x02")
        self.storages: list[np.ndarray] = []

    def global_(self, module: str, name: str):
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    def obj(self, x):
        o = self.out
        if isinstance(x, np.ndarray):
            self.tensor(x)
        elif isinstance(x, collections.OrderedDict):
            self.global_("collections", "OrderedDict")
            o += b")R"
            self._items(x)
        elif isinstance(x, dict):
            o += b"}"
            self._items(x)
        elif isinstance(x, bool):
            o += b"\x88" if x else b"\x89"
        elif isinstance(x, int):
            o += b"J" + struct.pack("<i", x)
        elif isinstance(x, float):
            o += b"G" + struct.pack(">d", x)
        elif isinstance(x, str):
            b = x.encode()
            o += b"X" + struct.pack("<I", len(b)) + b
        elif isinstance(x, tuple):
            o += b"("
            for item in x:
                self.obj(item)
            o += b"t"
        elif x is None:
            o += b"N"
        else:
            raise TypeError(type(x))

    def _items(self, d):
        if d:
            self.out += b"("
            for k, v in d.items():
                self.obj(k)
                self.obj(v)
            self.out += b"u"

    def tensor(self, x: np.ndarray):
        x = np.ascontiguousarray(x)
        key = str(len(self.storages))
        self.storages.append(x)
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.out += b"("
        self.out += b"("  # persistent id tuple
        self.obj("storage")
        self.global_("torch", _STORAGE[x.dtype])
        self.obj(key)
        self.obj("cpu")
        self.obj(int(x.size))
        self.out += b"tQ"
        self.obj(0)
        self.obj(tuple(int(s) for s in x.shape))
        strides = tuple(int(s // x.itemsize) for s in x.strides) if x.ndim else ()
        self.obj(strides)
        self.obj(False)
        self.global_("collections", "OrderedDict")
        self.out += b")R"
        self.out += b"tR"


def save_zip(obj, path: str) -> None:
    """Writes ``obj`` (dicts, OrderedDicts, tuples, scalars, numpy arrays) like torch.save."""
    e = _Emitter()
    e.obj(obj)
    e.out += b"."
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", bytes(e.out))
        zf.writestr("archive/byteorder", "little")
        for i, x in enumerate(e.storages):
            zf.writestr(f"archive/data/{i}", x.tobytes())
        zf.writestr("archive/version", "3\n")
