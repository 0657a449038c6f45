"""What a resumed run may trust: shard checksums, damaged shards, temporary leftovers.

``DONE`` records the size and sha256 of every file of its shard (``describe``, written by
``writer.write_shard``). A rerun checks each finished shard of its own units against it
(``damage``: sizes first, then checksums; these are small files) and removes a damaged
shard (``remove_damaged``), naming the file, so the run recomputes it to the same bytes.
The reader checks sizes when it opens a dataset (``size_damage``). A DONE written before
checksums existed (no ``files``) is trusted as before.

Temporary names (``.tmp-`` in shards/, ``*.tmp-<pid>`` beside plan.json and the
manifest) belong to a run that died; the lock holder removes them all before any process
of its run writes (``remove_temporaries``).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable

from jaxfair.dataset.format import DONE, SHARDS, TMP, shard_dir
from jaxfair.io import checkpoints

_CHUNK = 1 << 20


def describe(data: bytes) -> dict:
    """The DONE entry of a file with contents ``data``: {"size": bytes, "sha256": hex}."""
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _sha256(path: str) -> str:
    return checkpoints.sha256_file(path, _CHUNK)


def read_done(shard: str) -> dict:
    """DONE of the shard directory ``shard``; ValueError naming the file if unreadable."""
    path = os.path.join(shard, DONE)
    try:
        with open(path, "rb") as f:
            done = json.loads(f.read())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(done, dict):
        raise ValueError(f"{path}: not a JSON object")
    return done


def _files(shard: str, done: dict) -> dict:
    files = done.get("files", {})
    if not isinstance(files, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("size"), int) for v in files.values()):
        raise ValueError(f"{os.path.join(shard, DONE)}: malformed files entry")
    return files


def size_damage(shard: str, done: dict) -> str | None:
    """The first file of ``shard`` that is missing or not the size DONE records, as a
    message naming it; None when all match (cheap: one stat per file)."""
    try:
        files = _files(shard, done)
    except ValueError as e:
        return str(e)
    for name, entry in sorted(files.items()):
        path = os.path.join(shard, name)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return f"{path}: missing"
        if size != entry["size"]:
            return (f"{path}: {size} bytes, DONE records {entry['size']} "
                    f"({'truncated' if size < entry['size'] else 'grown'})")
    return None


def damage(shard: str) -> str | None:
    """Why the finished shard ``shard`` cannot be trusted (a message naming the file), or
    None: DONE unreadable, a file missing, of another size or another sha256."""
    try:
        done = read_done(shard)
    except ValueError as e:
        return str(e)
    bad = size_damage(shard, done)
    if bad:
        return bad
    for name, entry in sorted(done.get("files", {}).items()):
        path = os.path.join(shard, name)
        if _sha256(path) != entry.get("sha256"):
            return f"{path}: sha256 differs from DONE (contents damaged)"
    return None


def remove_damaged(workdir: str, unit_ids: Iterable[int], log: Callable[[str], None],
                   threads: int = 4) -> list[int]:
    """Checks the finished shards of ``unit_ids`` and removes the damaged ones, one log
    line each; returns their unit ids (the caller recomputes them)."""
    shards = [(u, shard_dir(workdir, u)) for u in unit_ids]
    shards = [(u, d) for u, d in shards if os.path.exists(os.path.join(d, DONE))]
    # hashlib releases the GIL on large buffers: threads overlap reading and hashing.
    with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        reasons = list(pool.map(lambda ud: damage(ud[1]), shards))
    removed = []
    for (u, d), reason in zip(shards, reasons):
        if reason:
            log(f"damaged shard {d}: {reason}; recomputing unit {u}")
            shutil.rmtree(d)
            removed.append(u)
    return removed


def remove_temporaries(workdir: str) -> list[str]:
    """Removes every temporary leftover (names with ``.tmp-``) in ``workdir`` and its
    shards/; returns their paths. Only the lock holder may call this, before its run
    writes: it cannot tell a dead run's temporaries from a live one's."""
    removed = []
    for root in (workdir, os.path.join(workdir, SHARDS)):
        if not os.path.isdir(root):
            continue
        for name in sorted(os.listdir(root)):
            if TMP not in name:
                continue
            path = os.path.join(root, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed.append(path)
    return removed
