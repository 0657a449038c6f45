"""Exports of a finished dataset to formats face-recognition and JAX trainers read.

``export(dataset_dir, fmt, out, ...)`` streams the dataset (``common``) into one format:
webdataset tar shards, array_record files (grain), insightface RecordIO, or an ImageFolder
tree; every format also gets ``index.parquet`` (one row per image) and ``pairs.parquet``
(verification pairs of the validation identities), and ``export.json`` (what was written).

Resumable and atomic (``parts``): the export is written in parts into ``OUT.partial``
beside OUT, each part recorded with its checksums once finished; the same command after a
kill continues after the last intact part, and the directory is renamed to OUT when
everything is written, byte for byte what an uninterrupted export writes. A non-empty OUT
that is not this very export, or an ``OUT.partial`` of other arguments, is refused.
Example:

  export("out/demo", "webdataset", "out/demo-wds", crop="arcface112", image_format="jpg")
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import time
from collections.abc import Callable

from jaxfair.dataset.export import common, parts
from jaxfair.dataset.export.common import ExportError
from jaxfair.dataset.format import DONE, MANIFEST, PLAN
from jaxfair.dataset.reader import Dataset
from jaxfair.judge.crops import CROPS

FORMATS = ("webdataset", "arrayrecord", "recordio", "imagefolder")
EXPORT_FORMAT = "jaxfair-export/2"
__all__ = ["EXPORT_FORMAT", "FORMATS", "ExportError", "export", "fingerprint"]


def fingerprint(ds: Dataset) -> str:
    """sha256 over the dataset's plan.json, manifest.json and every finished shard's DONE
    (which holds the sha256 of each of its files): changes whenever the dataset does."""
    h = hashlib.sha256()
    paths = [os.path.join(ds.path, PLAN), os.path.join(ds.path, MANIFEST)]
    paths += [os.path.join(s.path, DONE) for s in ds.shards]
    for path in paths:
        h.update(os.path.relpath(path, ds.path).encode() + b"\0")
        if os.path.isfile(path):
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def export(dataset: str, fmt: str, out: str, crop: str = "none", image_format: str = "",
           val_fraction: float = 0.1, shard_bytes: int = 10**9, batch: int = 64,
           threads: int = 2, stale: str = "refuse",
           log: Callable[[str], None] = print) -> dict:
    """Exports (or resumes exporting) the dataset at ``dataset`` to ``out``.

    Args:
      fmt: one of FORMATS. crop: 'none' or 'arcface112'. image_format: 'jpg', 'png' or ''
        (the dataset's own; with crop 'none' the bytes are then copied unchanged).
      val_fraction: share of identities in the validation split.
      shard_bytes: size of an export part in image bytes (cut at the next identity): one
        webdataset / array_record file per part; for recordio and imagefolder, how much is
        written between two resume points.
      stale: 'refuse' (ExportError) or 'restart' (remove it and begin again) when ``out``
        or ``out.partial`` holds an export of other arguments or of another dataset state.

    Returns:
      The summary also written to ``out/export.json`` (+ seconds, bytes, resumed_parts).
      An ``out`` that already holds this very export is left as it is.

    Raises:
      ExportError, DatasetError (one line): bad arguments, a non-empty ``out`` that is not
      this export, another export's ``out.partial``, a dataset that cannot be read.
      WorkdirBusy: another export is writing ``out.partial``.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if crop not in CROPS:
        raise ExportError(f"unknown crop {crop!r}; choose from {', '.join(CROPS)}")
    if image_format not in ("", *common.IMAGE_FORMATS):
        raise ExportError(f"unknown image format {image_format!r}; choose jpg or png")
    if not 0 <= val_fraction < 1:
        raise ExportError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if shard_bytes < 1:
        raise ExportError(f"shard_bytes must be >= 1, got {shard_bytes}")
    if stale not in ("refuse", "restart"):
        raise ValueError(f"stale must be refuse or restart, got {stale!r}")
    out = os.path.abspath(out)
    ds = Dataset.open(dataset)
    if crop != "none" and ds.plan.get("config", {}).get("crop", "none") != "none":
        raise ExportError(f"{dataset}: its images are already cropped "
                          f"({ds.plan['config']['crop']}); export with --crop=none")
    fmt_img = image_format or common._EXT.get(ds.plan["image_format"], "png")
    header = {"export": EXPORT_FORMAT, "dataset": os.path.abspath(dataset),
              "dataset_sha256": fingerprint(ds), "format": fmt, "crop": crop,
              "image_format": fmt_img, "val_fraction": val_fraction,
              "shard_bytes": shard_bytes}
    start = time.perf_counter()
    if common._EXT.get(ds.plan["image_format"]) is None:
        raise ExportError(f"{ds.path}: image_format is {ds.plan['image_format']!r}: the "
                          "dataset holds no images to export")
    s = common.survey(ds, val_fraction)  # before anything is written or removed
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        done = parts.finished_summary(out, header) if os.path.isdir(out) else None
        if done is not None:
            log(f"{out} already holds this export; nothing to do")
            return {**done, "seconds": 0.0, "bytes": common.dir_size(out), "resumed_parts": 0}
        if stale != "restart" or not os.path.isfile(os.path.join(out, parts.SUMMARY)):
            raise ExportError(f"{out} exists and is not empty (and is not this export); "
                              "choose a new --out")
        shutil.rmtree(out)  # the main job's own export of an older state of its dataset
    partial = parts.Partial.open(out, header, stale, log)
    resumed = len(partial.parts)
    try:
        if not partial.complete:
            _write(ds, s, partial, header, crop, fmt_img, shard_bytes, batch, threads, log)
        partial.finish(out)
    except BaseException:
        partial.abandon()  # kept: the same command resumes it
        raise
    with open(os.path.join(out, parts.SUMMARY)) as f:
        summary = json.load(f)
    return {**summary, "seconds": round(time.perf_counter() - start, 2),
            "bytes": common.dir_size(out), "resumed_parts": resumed}


def _write(ds, s, partial, header, crop, fmt_img, shard_bytes, batch, threads, log) -> None:
    """Writes the parts after the finished ones, then the index, pairs and summary."""
    root = partial.path
    last = partial.parts[-1] if partial.parts else None
    writer = importlib.import_module(f"jaxfair.dataset.export.{header['format']}").Writer(
        root, ds, s, last.state if last else None)
    n = last.end if last else 0
    index, size, identity = None, 0, None

    def commit():
        index.close()
        path = parts.INDEX_PART % len(partial.parts)
        parts.fsync(os.path.join(root, path))
        partial.commit(n, writer.end() + [parts.file_piece(root, path)], writer.state())

    for sample in common.samples(ds, s, crop, fmt_img, batch, threads, start=n):
        if index is not None and size >= shard_bytes and sample.meta["identity"] != identity:
            commit()
            index = None
        if index is None:
            writer.begin(len(partial.parts))
            index = common.IndexWriter(
                os.path.join(root, parts.INDEX_PART % len(partial.parts)), ds)
            size = 0
        index.add(sample, writer.write(sample))
        n += 1
        size += len(sample.image)
        identity = sample.meta["identity"]
        if n % 10000 == 0:
            log(f"{n}/{s.images} images")
    if index is not None:
        commit()
    if n != s.images:
        raise RuntimeError(f"export: the sample stream ended after {n} of {s.images} images")
    info = writer.finish(len(partial.parts))
    common.merge_index([os.path.join(root, parts.INDEX_PART % k)
                        for k in range(len(partial.parts))],
                       os.path.join(root, common.INDEX), ds)
    pairs = common.pairs(s)
    common.write_pairs(os.path.join(root, common.PAIRS), pairs)
    summary = {**header, "images": n, "identities": len(s.index),
               "val_identities": sum(v == "val" for v in s.split.values()),
               "pairs": len(pairs), "groups": list(s.groups), "parts": len(partial.parts),
               **info}
    for name in os.listdir(root):  # what finishing wrote, before the summary says done
        if os.path.isfile(os.path.join(root, name)):
            parts.fsync(os.path.join(root, name))
    with open(os.path.join(root, parts.SUMMARY), "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
