"""Plain pickles of numpy data (dicts, lists, tuples, arrays, scalars), read without running code.

Built on the checkpoint reader's restricted unpickler (``unpickler``, with the per-load
stand-ins of ``torch_pickle._Load``): the same allow-list, plus numpy's protocol-5 array
constructor (``_frombuffer``, what ``pickle.dump`` with ``protocol=5`` writes for an array),
and nothing torch-specific can reach storage (plain pickles have no persistent ids; one is
refused). Used for third-party files such as Colbois et al.'s ``latent_directions.pkl``.

Example:
  data = load_plain_pickle("latent_directions.pkl")   # dicts of numpy arrays
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from jaxfair.convert import pickle_scan, torch_pickle
from jaxfair.convert.guard import CheckpointError, untrusted
from jaxfair.convert.unpickler import unpickle


def _frombuffer(buf, dtype, shape, order="C") -> np.ndarray:
    """numpy's protocol-5 array reconstruction, restricted to plain (non-object) dtypes."""
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise CheckpointError("refused a numpy array of Python objects")
    flat = np.frombuffer(bytes(buf), dtype=dtype)
    shape = tuple(int(s) for s in shape)
    if order == "F":
        return flat.reshape(shape[::-1]).T.copy()
    return flat.reshape(shape).copy()


_EXTRA = {
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
}


def load_plain_pickle(path: str) -> Any:
    """Reads a plain pickle (protocol 2-5) holding only containers and numpy data, through
    the checkpoint reader's hardened path (opcode scan first, fresh stand-ins, budgets).

    Raises:
      CheckpointError: unreadable, truncated, trailing bytes, or a global not on the
        allow-list (the message is one line and names no file: callers add the path).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"cannot read file ({e.strerror})") from None
    if data[:1] != b"\x80":
        raise CheckpointError("not a pickle (protocol 2 or later)")
    with untrusted("pickle"):
        load = torch_pickle._Load(len(data))
        for key, fn in _EXTRA.items():
            load.roles[key] = pickle_scan.CALL
            load.globals[key] = fn
        f = io.BytesIO(data)
        obj = unpickle(f, load, len(data))  # no storages: ids refused
        if f.tell() != len(data):
            raise CheckpointError("trailing data after the pickle")
        return obj
