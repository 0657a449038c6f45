"""The restricted unpickler: scans a pickle stream, then unpickles it from allow-listed globals.

Nothing from a checkpoint is ever executed. Each stream is first scanned (``pickle_scan``:
memo indices, lengths, frames, nesting, dict keys, BUILD targets, object counts) and its
objects charged to the load's budget; only then is it unpickled, resolving globals from the
one load's own table of fresh stand-ins (``torch_pickle._Load``), so any other global
(``os.system``, ``builtins.eval``, a model class, ...) raises ``CheckpointError``.

Example:
  obj = unpickle(io.BytesIO(data), load, len(data))   # load: a torch_pickle._Load
"""

from __future__ import annotations

import pickle
import struct
from typing import TYPE_CHECKING, Any, BinaryIO

from jaxfair.convert import pickle_scan
from jaxfair.convert.guard import CheckpointError, describe, describe_error
from jaxfair.convert.safe_types import nonneg_int

if TYPE_CHECKING:  # one file's load state; torch_pickle makes one per file
    from jaxfair.convert.torch_pickle import _Load


class RestrictedUnpickler(pickle.Unpickler):
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
        key, numel = pid[2], nonneg_int(pid[4], "storage size")
        if not isinstance(key, str) or not 0 < len(key) <= 64:
            raise CheckpointError(f"storage key is {describe(key)}, expected a short string")
        return self._load_storage(key, storage_type.dtype, numel)


def unpickle(f: BinaryIO, load: _Load, end: int, load_storage=None) -> Any:
    """Scans, then unpickles, one stream from ``f``'s position; ``end`` is the data's size.

    ``load`` supplies the allow-list (``roles``, ``globals``), the budget and the operation
    count shared by every stream of the file; ``load_storage(key, dtype, numel)`` resolves
    torch's persistent storage ids (without it, a persistent id is refused).
    """
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
        obj = RestrictedUnpickler(f, load, load_storage).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, struct.error, UnicodeDecodeError, OverflowError) as e:
        raise CheckpointError(f"corrupt or truncated pickle data ({describe_error(e)})"
                              ) from None
    if f.tell() != stop:
        raise CheckpointError("corrupt pickle (the stream ended where the scan did not)")
    return obj
