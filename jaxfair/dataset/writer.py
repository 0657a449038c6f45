"""Shard output: one directory per work unit, complete or absent, written off the main thread.

``DIR/shards/NNNNN/`` holds ``records.jsonl``, ``latents.npy`` (``z.npy`` too in space z),
the images and ``DONE``. Everything is written into ``DIR/shards/.tmp-NNNNN``, ``DONE``
last, then the directory is renamed into place: a shard directory either exists with its
DONE or not at all, so a kill at any moment loses at most the units in flight, and a
resume redoes exactly those. Encoding (PNG ~200 ms per 1024 image) runs in a thread pool
(PIL and zlib release the GIL) while the accelerator computes the next step.

Record fields (one JSON object per line, latent_row order): id, identity, group,
variation (0 = the identity's own image), file (null without images), latent_row,
attributes {attr: {class, prob}} for every classifier attribute, target_probs {attr: mass
of the group's classes} for the constrained attributes, unit, seed, search.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import json
import os
import shutil
import threading
from typing import Any

import numpy as np

from jaxfair.dataset import verify
from jaxfair.dataset.format import DONE, LATENTS, RECORDS, SHARDS, Z, shard_dir
from jaxfair.io import images as imlib


@dataclasses.dataclass
class UnitOutput:
    """Everything a unit writes (host arrays), rows in record order.

    Attributes:
      unit: the work unit (``pipeline.plan.Unit``); its ``id`` names the shard.
      records: one dict per image (fields: the module docstring).
      latents: [n, w_dim] or [n, num_ws, w_dim] float32.
      images: [n, H, W, 3] uint8.
      z: [n, z_dim] the identity's z per row (space z only) or None.
      stats: counts (candidates, generations, variations_rejected, score_disagreements).
    """

    unit: Any
    records: list[dict]
    latents: np.ndarray
    images: np.ndarray
    z: np.ndarray | None
    stats: dict[str, int]


def done_units(workdir: str) -> set[int]:
    """Unit ids whose shard is complete (its DONE exists)."""
    root = os.path.join(workdir, SHARDS)
    if not os.path.isdir(root):
        return set()
    return {int(n) for n in os.listdir(root)
            if n.isdigit() and os.path.exists(os.path.join(root, n, DONE))}


def clean_partial(workdir: str, unit_ids) -> int:
    """Removes leftovers of the given units from a killed run (temp dirs, shards without
    DONE); returns how many were removed."""
    root = os.path.join(workdir, SHARDS)
    removed = 0
    for u in unit_ids:
        for path in (os.path.join(root, f".tmp-{u:05d}"), shard_dir(workdir, u)):
            if os.path.isdir(path) and not os.path.exists(os.path.join(path, DONE)):
                shutil.rmtree(path)
                removed += 1
    return removed


def _fsync_write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def write_shard(workdir: str, out: UnitOutput, image_format: str, latent_dtype: str) -> int:
    """Writes one unit's shard atomically; returns the number of images. DONE records each
    file's size and sha256 (verify.py checks them on resume)."""
    final = shard_dir(workdir, out.unit.id)
    tmp = os.path.join(workdir, SHARDS, f".tmp-{out.unit.id:05d}")
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    files = {}

    def put(name: str, data: bytes) -> None:
        _fsync_write(os.path.join(tmp, name), data)
        files[name] = verify.describe(data)

    lines = []
    for rec, img in zip(out.records, out.images):
        rec = dict(rec)
        if image_format != "none":
            rec["file"] = f"{rec['id']}.{image_format}"
            put(rec["file"], imlib.encode(img, image_format))
        lines.append(json.dumps(rec, sort_keys=True))
    put(RECORDS, ("\n".join(lines) + "\n").encode())
    put(LATENTS, _npy(out.latents.astype(latent_dtype)))
    if out.z is not None:
        put(Z, _npy(out.z.astype(np.float32)))
    done = {"unit": out.unit.id, "records": len(out.records), "files": files, **out.stats}
    _fsync_write(os.path.join(tmp, DONE), json.dumps(done, sort_keys=True).encode())
    os.replace(tmp, final)
    return len(out.records)


class Writer:
    """Writes shards in a thread pool; ``submit`` blocks while ``max_pending`` are queued.

    The first write error is re-raised (as OSError with the path) by the next ``submit``
    or by ``close``: finished shards stay intact, unfinished ones are cleaned on resume.
    """

    def __init__(self, workdir: str, image_format: str, latent_dtype: str, threads: int,
                 max_pending: int):
        self.workdir, self.image_format, self.latent_dtype = workdir, image_format, latent_dtype
        self._pool = concurrent.futures.ThreadPoolExecutor(max(1, threads))
        self._slots = threading.Semaphore(max_pending)
        self._futures: list[concurrent.futures.Future] = []
        self.images_written = 0
        self.units_written = 0
        self._lock = threading.Lock()
        os.makedirs(os.path.join(workdir, SHARDS), exist_ok=True)

    def _write(self, out: UnitOutput) -> None:
        try:
            n = write_shard(self.workdir, out, self.image_format, self.latent_dtype)
            with self._lock:
                self.images_written += n
                self.units_written += 1
        finally:
            self._slots.release()

    def _check(self) -> None:
        for f in [f for f in self._futures if f.done()]:
            self._futures.remove(f)
            f.result()  # re-raises the worker's error

    def submit(self, out: UnitOutput) -> None:
        self._check()
        self._slots.acquire()
        self._futures.append(self._pool.submit(self._write, out))

    def close(self) -> None:
        """Waits for every queued shard; raises the first error."""
        try:
            for f in concurrent.futures.as_completed(list(self._futures)):
                f.result()
        finally:
            self._pool.shutdown(wait=True)
