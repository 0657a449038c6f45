"""Plain pickles of numpy data (dicts, lists, tuples, arrays, scalars), read without running code.

Built on the checkpoint reader's restricted unpickler (``torch_pickle``): the same
allow-list, plus numpy's protocol-5 array constructor (``_frombuffer``, what ``pickle.dump``
with ``protocol=5`` writes for an array), and nothing torch-specific can reach storage
(plain pickles have no persistent ids; one is refused). Used for third-party files such as
Colbois et al.'s ``latent_directions.pkl``.

Example:
  data = load_plain_pickle("latent_directions.pkl")   # dicts of numpy arrays
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from jaxfair.convert import torch_pickle
from jaxfair.convert.torch_pickle import CheckpointError


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


class _PlainUnpickler(torch_pickle._RestrictedUnpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _EXTRA:
            return _EXTRA[(module, name)]
        return super().find_class(module, name)


def load_plain_pickle(path: str) -> Any:
    """Reads a plain pickle (protocol 2-5) holding only containers and numpy data.

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
    f = io.BytesIO(data)
    try:
        obj = _PlainUnpickler(f).load()
    except CheckpointError:
        raise
    except Exception as e:  # every malformed-stream error of pickle itself
        raise CheckpointError(f"corrupt or truncated pickle ({type(e).__name__}: {e})"
                              ) from None
    if f.tell() != len(data):
        raise CheckpointError("trailing data after the pickle")
    return obj
