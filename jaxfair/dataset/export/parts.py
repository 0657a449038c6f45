"""Resumable exports: an export is written in parts, each recorded once it is finished.

While it runs, an export lives in ``OUT.partial`` beside OUT (a fixed name, so the same
command finds it again after a kill)::

  OUT.partial/.progress.jsonl   line 1: the header (what is exported: dataset path and
                                fingerprint, format, crop, image format, val fraction, part
                                size); then one line per finished part (``Part``)
  OUT.partial/.lock             flocked by the running export (dataset/lock.py)
  OUT.partial/.index-NNNNN.parquet   the index rows of part NNNNN (merged at the end)
  OUT.partial/...               the format's own files

A part is a run of consecutive samples of the export's deterministic sample stream, cut
at the first identity boundary after the part's image bytes reach ``shard_bytes``; so
part boundaries, like every byte written, are a pure function of the dataset and the
arguments, wherever a run was stopped. A part's line names its ``pieces``: byte ranges of
files (``{"path", "offset", "size", "sha256"}``; the whole file for files a part owns,
the appended range for files every part appends to) and whole directories a part wrote
(``{"path", "dir": true, "sha256"}``, the hash over its sorted (name, size, bytes)), plus
the writer's small ``state`` after the part (enough to continue from it).

Resume (``Partial.open``): the header must equal this export's, or the partial export is
refused (``stale='refuse'``, the command line) or removed and begun again
(``stale='restart'``, the main job's own export). Finished parts are verified in order
(sizes, then sha256); the first damaged or torn one and every later one are dropped;
everything in the directory that no kept part names is removed, and files every part
appends to are truncated to the kept parts' end. The export then continues with the next
part. ``Partial.complete`` removes the progress record and renames the directory to OUT.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable

from jaxfair.dataset import lock as lock_lib
from jaxfair.dataset.export.common import ExportError
from jaxfair.dataset.manifest import first_difference

PARTIAL = ".partial"
PROGRESS = ".progress.jsonl"
INDEX_PART = ".index-%05d.parquet"
SUMMARY = "export.json"
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Part:
    """A finished part: ``part`` number, ``end`` (samples of the stream done through it),
    ``pieces`` (what it wrote, with checksums), ``state`` (the writer's, after it)."""

    part: int
    end: int
    pieces: list[dict]
    state: dict


def file_piece(root: str, name: str, offset: int = 0) -> dict:
    """The piece of ``root/name`` from ``offset`` to its end (size and sha256)."""
    h = hashlib.sha256()
    with open(os.path.join(root, name), "rb") as f:
        f.seek(offset)
        size = 0
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return {"path": name, "offset": offset, "size": size, "sha256": h.hexdigest()}


def dir_piece(root: str, name: str) -> dict:
    """The piece of a directory ``root/name`` written whole by one part."""
    return {"path": name, "dir": True, "sha256": _dir_hash(os.path.join(root, name))}


def _dir_hash(path: str) -> str:
    h = hashlib.sha256()
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if not entry.is_file(follow_symlinks=False):
            return f"not a plain file: {entry.name}"
        h.update(f"{entry.name}\0{entry.stat().st_size}\0".encode())
        with open(entry.path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def _damage(root: str, piece: dict) -> str | None:
    """Why a recorded piece no longer matches the directory, or None."""
    path = os.path.join(root, piece["path"])
    if piece.get("dir"):
        if not os.path.isdir(path):
            return f"{piece['path']} is missing"
        return None if _dir_hash(path) == piece["sha256"] else f"{piece['path']} changed"
    if not os.path.isfile(path):
        return f"{piece['path']} is missing"
    if os.path.getsize(path) < piece["offset"] + piece["size"]:
        return f"{piece['path']} is shorter than recorded"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(piece["offset"])
        left = piece["size"]
        while left and (chunk := f.read(min(_CHUNK, left))):
            h.update(chunk)
            left -= len(chunk)
    return None if h.hexdigest() == piece["sha256"] else f"{piece['path']}: sha256 mismatch"


def fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_lines(path: str, lines: list[dict]) -> None:
    """Writes the progress record atomically (temporary name, fsync, rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(x, sort_keys=True) + "\n" for x in lines)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_lines(path: str) -> list[dict]:
    """The progress record's lines up to the first torn or unreadable one."""
    out = []
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break  # torn by a kill while appending
            try:
                out.append(json.loads(line))
            except ValueError:
                break
    return out


class Partial:
    """An export's ``OUT.partial`` directory, locked by this process (see module docstring).

    Attributes:
      path: the directory. parts: the finished, verified parts, in order. complete: True
        when a run finished everything but the final rename (only ``complete()`` is left).
    """

    def __init__(self, path: str, parts: list[Part], complete: bool, lock: lock_lib.Lock):
        self.path, self.parts, self.complete, self._lock = path, parts, complete, lock

    @classmethod
    def open(cls, out: str, header: dict, stale: str, log: Callable[[str], None]) -> Partial:
        """Creates or resumes ``out + '.partial'`` for the export described by ``header``.

        Raises:
          ExportError: (stale 'refuse') the directory holds another export's parts or
            something that is not a partial export.
          WorkdirBusy: another export holds it.
        """
        path = out + PARTIAL
        os.makedirs(path, exist_ok=True)
        lock = lock_lib.acquire(path)
        try:
            return cls._open_locked(path, header, stale, log, lock)
        except BaseException:
            lock_lib.release(lock)
            raise

    @classmethod
    def _open_locked(cls, path, header, stale, log, lock) -> Partial:
        progress = os.path.join(path, PROGRESS)
        names = [n for n in os.listdir(path) if n not in (lock_lib.LOCK, PROGRESS + ".tmp")]
        if not os.path.isfile(progress):
            if not names:  # new (or stopped before its header was written)
                _write_lines(progress, [header])
                return cls(path, [], False, lock)
            if finished_summary(path, header):  # stopped just before the final rename
                return cls(path, [], True, lock)
            return cls._stale(path, header, stale, lock,
                              f"{path} exists and is not a partial export of this command "
                              f"(no {PROGRESS}); remove it or choose another --out")
        lines = _read_lines(progress)
        diff = (first_difference(lines[0], header) if lines else "an empty progress record")
        if diff:
            return cls._stale(path, header, stale, lock,
                              f"{path} holds a partial export of other arguments or another "
                              f"dataset state ({diff}); rerun the command that began it, or "
                              f"remove {path}")
        parts = []
        for k, line in enumerate(lines[1:]):
            try:
                part = Part(**line)
                bad = next((d for p in part.pieces if (d := _damage(path, p))), None)
            except (TypeError, KeyError, AttributeError):
                part, bad = None, "unreadable record"
            if part is None or part.part != k or bad:
                log(f"{path}: part {k} damaged ({bad or 'out of order'}); redoing it and "
                    "the parts after it")
                break
            parts.append(part)
        if len(parts) < len(lines) - 1:
            _write_lines(progress, [header] + [dataclasses.asdict(p) for p in parts])
        _keep_only(path, parts)
        if parts:
            log(f"{path}: resuming after {len(parts)} finished parts "
                f"({parts[-1].end} samples)")
        return cls(path, parts, False, lock)

    @classmethod
    def _stale(cls, path, header, stale, lock, message) -> Partial:
        if stale != "restart":
            raise ExportError(message)
        for name in os.listdir(path):
            if name != lock_lib.LOCK:
                _remove(os.path.join(path, name))
        _write_lines(os.path.join(path, PROGRESS), [header])
        return cls(path, [], False, lock)

    def commit(self, end: int, pieces: list[dict], state: dict) -> None:
        """Records a finished part (its files already written and fsynced)."""
        part = Part(len(self.parts), end, pieces, state)
        with open(os.path.join(self.path, PROGRESS), "a") as f:
            f.write(json.dumps(dataclasses.asdict(part), sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.parts.append(part)

    def finish(self, out: str) -> None:
        """After everything else is written: drops the progress record and the index parts,
        unlocks, renames the directory to ``out`` (an existing empty ``out`` is replaced)."""
        _remove(os.path.join(self.path, PROGRESS))  # from here on the directory is complete
        for name in os.listdir(self.path):
            if name.startswith(".index-"):
                os.remove(os.path.join(self.path, name))
        self.abandon()
        if os.path.isdir(out):
            os.rmdir(out)  # empty (checked by the caller): rename cannot replace it everywhere
        os.replace(self.path, out)

    def abandon(self) -> None:
        """Unlocks (once), leaving the directory for a later run to resume."""
        if self._lock is not None:
            lock_lib.release(self._lock)
            self._lock = None


def finished_summary(path: str, header: dict) -> dict | None:
    """``path``'s export.json when it holds a finished export of ``header``, else None."""
    try:
        with open(os.path.join(path, SUMMARY)) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or any(summary.get(k) != v for k, v in header.items()):
        return None
    return summary


def _keep_only(path: str, parts: list[Part]) -> None:
    """Removes what no kept part wrote; truncates appended files to the kept parts' end."""
    files: dict[str, int] = {}
    dirs = set()
    for p in parts:
        for piece in p.pieces:
            if piece.get("dir"):
                dirs.add(piece["path"])
            else:
                files[piece["path"]] = max(files.get(piece["path"], 0),
                                           piece["offset"] + piece["size"])
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if name in (PROGRESS, lock_lib.LOCK):
            continue
        if name in dirs and os.path.isdir(full) and not os.path.islink(full):
            continue
        if name in files and os.path.isfile(full) and not os.path.islink(full):
            if os.path.getsize(full) > files[name]:
                os.truncate(full, files[name])
            continue
        _remove(full)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)
