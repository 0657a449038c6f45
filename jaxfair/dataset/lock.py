"""The work-directory lock: one ``generate`` job writes a dataset directory at a time.

The running job holds ``fcntl.flock`` on ``DIR/.lock`` from before it writes ``plan.json``
until it returns. A second job on the directory is refused (``WorkdirBusy``, naming the
holder's pid and host, which the holder writes into the file). The kernel drops a flock
when its holder's file descriptor closes, so a process killed with ``kill -9`` leaves at
most the file behind, never a held lock: the next job locks it as usual.

A multi-process run (``jax.distributed``, several processes of one job on one directory)
is one job: only process 0 locks, and every process learns whether it could, so a refused
run stops in all its processes before any of them writes (``hold_for_run``).

The file is removed on release, while still locked: a job that opened the old file just
before loses the race by finding, once it has the flock, that the path no longer names the
file it locked (``acquire`` checks the inode), and retries on the new one.

Example:
  with hold_for_run("out/demo", jax.process_index(), jax.process_count()):
      ...  # write the dataset
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import socket
from collections.abc import Iterator

from jaxfair.dataset.format import LOCK
from jaxfair.errors import JaxfairError

__all__ = ["LOCK", "Lock", "WorkdirBusy", "acquire", "hold", "hold_for_run", "release"]
# A job that keeps losing the inode race is racing many others; give up rather than spin.
_MAX_TRIES = 100


class WorkdirBusy(JaxfairError, OSError):
    """Another job holds the work directory's lock (the message names it and the holder)."""


@dataclasses.dataclass
class Lock:
    """A held lock: ``fd`` is the open, flocked ``path``."""

    path: str
    fd: int


def holder_text(pid: int, host: str) -> str:
    """What a holder writes into the lock file (read back by a refused job)."""
    return f"pid {pid} on host {host}"


def acquire(workdir: str) -> Lock:
    """Locks ``workdir`` (created if missing) without waiting.

    Raises:
      WorkdirBusy: another process holds it.
      OSError: the directory cannot be created or the lock file written.
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK)
    for _ in range(_MAX_TRIES):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WorkdirBusy(f"{workdir} is in use by another jaxfair job ({holder}); wait "
                              f"for it to finish, or stop it, then rerun") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder_text(os.getpid(), socket.gethostname()).encode(), 0)
            return Lock(path, fd)
        os.close(fd)  # released and removed by its holder after we opened it: retry
    raise WorkdirBusy(f"{workdir}: could not lock {path} after {_MAX_TRIES} tries (many "
                      f"jobs starting on it at once?)")


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    # Empty: the holder has the flock but has not written its name yet.
    return " ".join(text.split()) or "holder not yet known"


def release(lock: Lock) -> None:
    """Removes the lock file, then drops the lock (see the module docstring for the order)."""
    try:
        os.unlink(lock.path)
    except FileNotFoundError:
        pass
    finally:
        os.close(lock.fd)


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[Lock]:
    """``acquire`` ... ``release`` around a block."""
    lock = acquire(workdir)
    try:
        yield lock
    finally:
        release(lock)


@contextlib.contextmanager
def hold_for_run(workdir: str, process: int, num_processes: int) -> Iterator[Lock | None]:
    """The lock of one job that may span several processes: process 0 holds it.

    Every process of a multi-process run calls this at the same point; process 0 tries the
    lock and tells the others the outcome, so a refused run stops everywhere (process 0
    with its own error, the others with one naming the directory) instead of leaving
    processes waiting at the next barrier.
    """
    lock, error = None, None
    if process == 0:
        try:
            lock = acquire(workdir)
        except OSError as e:
            error = e
    if num_processes > 1:
        import numpy as np
        from jax.experimental import multihost_utils

        ok = multihost_utils.broadcast_one_to_all(np.int32(error is None))
        if process != 0 and not int(ok):
            raise WorkdirBusy(f"{workdir}: process 0 of this run could not lock it (its "
                              f"error says why); nothing was written")
    if error is not None:
        raise error
    try:
        yield lock
    finally:
        if lock is not None:
            release(lock)
