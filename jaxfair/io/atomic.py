"""Atomic outputs: write into a hidden temporary sibling, then rename.

A reader (or a resumed job) never sees a half-written directory or file: either the target
does not exist (or is empty, or is the old file), or it is complete. ``directory`` for output
directories, ``file`` for single files (JSON, .npz).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

from jaxfair.errors import JaxfairError


class OutputExistsError(JaxfairError, FileExistsError):
    """The output path exists and is not an empty directory."""


def check_empty(path: str, what: str = "output directory") -> None:
    """Raises OutputExistsError unless ``path`` is absent or an empty directory."""
    if os.path.isdir(path) and os.listdir(path):
        raise OutputExistsError(f"{what} {path} exists and is not empty")
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputExistsError(f"{what} {path} exists and is not a directory")


@contextlib.contextmanager
def file(path: str, mode: str = "w") -> Iterator:
    """Yields a file open on a temporary sibling that replaces ``path`` (fsynced) when the
    block succeeds; on any exception it is removed and ``path`` is left as it was."""
    tmp = f"{os.path.join(os.path.dirname(path), '.' + os.path.basename(path))}.tmp-{os.getpid()}"
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def directory(path: str, what: str = "output directory") -> Iterator[str]:
    """Yields a temporary directory that becomes ``path`` when the block succeeds.

    On any exception the temporary directory is removed and ``path`` is left untouched.
    """
    path = os.path.abspath(path)
    check_empty(path, what)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    os.chmod(tmp, 0o755)  # mkdtemp makes it private (0700); the output is for everyone
    try:
        yield tmp
        check_empty(path, what)  # nobody created it meanwhile
        if os.path.isdir(path):
            os.rmdir(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
