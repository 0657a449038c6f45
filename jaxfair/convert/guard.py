"""The boundary around untrusted input: one error type, safe messages, budgets and limits.

Every importer reads files that may be hostile (docs/security.md). Whatever goes wrong while
parsing one, the user sees one bounded line (``CheckpointError``), built without calling
``repr``/``str`` on anything the file controls (``describe``), and every allocation the file
asks for is charged to a ``Budget`` derived from the file's size.

Example:
  budget = Budget(file_size)
  with untrusted("HDF5 file"):                   # any failure inside -> CheckpointError
      budget.take(numel * 4, "a weight array")   # CheckpointError past the budget
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from jaxfair.errors import JaxfairError

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
