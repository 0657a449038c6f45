"""Exports of a finished dataset to formats face-recognition and JAX trainers read.

``export(dataset_dir, fmt, out, ...)`` streams the dataset (``common``) into one format:
webdataset tar shards, array_record files (grain), insightface RecordIO, or an ImageFolder
tree; every format also gets ``index.parquet`` (one row per image) and ``pairs.parquet``
(verification pairs of the validation identities), and ``export.json`` (what was written).

Atomic whole export: everything is written into ``OUT.tmp-<pid>`` beside OUT and renamed
to OUT at the end (an error or a kill leaves no OUT; a rerun starts again). A non-empty OUT
is refused. Example:

  export("out/demo", "webdataset", "out/demo-wds", crop="arcface112", image_format="jpg")
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import time
from collections.abc import Callable

from jaxfair.dataset.export import common
from jaxfair.dataset.export.common import ExportError
from jaxfair.dataset.reader import Dataset
from jaxfair.judge.crops import CROPS

FORMATS = ("webdataset", "arrayrecord", "recordio", "imagefolder")
__all__ = ["FORMATS", "ExportError", "export"]


def export(dataset: str, fmt: str, out: str, crop: str = "none", image_format: str = "",
           val_fraction: float = 0.1, shard_bytes: int = 10**9, batch: int = 64,
           threads: int = 2, log: Callable[[str], None] = print) -> dict:
    """Exports the dataset at ``dataset`` to ``out`` (see module docstring).

    Args:
      fmt: one of FORMATS. crop: 'none' or 'arcface112'. image_format: 'jpg', 'png' or ''
        (the dataset's own; with crop 'none' the bytes are then copied unchanged).
      val_fraction: share of identities in the validation split. shard_bytes: target size
        of a webdataset / array_record shard.

    Returns:
      The summary also written to ``out/export.json``.

    Raises:
      ExportError, DatasetError (one line): bad arguments, a non-empty ``out``, a dataset
      that cannot be read.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if crop not in CROPS:
        raise ExportError(f"unknown crop {crop!r}; choose from {', '.join(CROPS)}")
    if image_format not in ("", *common.IMAGE_FORMATS):
        raise ExportError(f"unknown image format {image_format!r}; choose jpg or png")
    if not 0 <= val_fraction < 1:
        raise ExportError(f"val_fraction must be in [0, 1), got {val_fraction}")
    out = os.path.abspath(out)
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ExportError(f"{out} exists and is not empty; choose a new --out")
    ds = Dataset.open(dataset)
    if crop != "none" and ds.plan.get("config", {}).get("crop", "none") != "none":
        raise ExportError(f"{dataset}: its images are already cropped "
                          f"({ds.plan['config']['crop']}); export with --crop=none")
    fmt_img = image_format or common._EXT.get(ds.plan["image_format"], "png")
    start = time.perf_counter()
    s = common.survey(ds, val_fraction)
    tmp = f"{out}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        writer = importlib.import_module(f"jaxfair.dataset.export.{fmt}").Writer(
            tmp, ds, s, shard_bytes)
        index = common.IndexWriter(os.path.join(tmp, common.INDEX), ds)
        n = 0
        for sample in common.samples(ds, s, crop, fmt_img, batch, threads):
            index.add(sample, writer.write(sample))
            n += 1
            if n % 10000 == 0:
                log(f"{n}/{s.images} images")
        info = writer.close()
        index.close()
        pairs = common.pairs(s)
        common.write_pairs(os.path.join(tmp, common.PAIRS), pairs)
        summary = {"dataset": os.path.abspath(dataset), "format": fmt, "crop": crop,
                   "image_format": fmt_img, "images": n, "identities": len(s.index),
                   "val_fraction": val_fraction,
                   "val_identities": sum(v == "val" for v in s.split.values()),
                   "pairs": len(pairs), "groups": list(s.groups), **info}
        with open(os.path.join(tmp, "export.json"), "w") as f:
            json.dump(summary, f, indent=1, sort_keys=True)
        if os.path.isdir(out):
            os.rmdir(out)  # empty (checked above): rename cannot replace it on every OS
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary["seconds"] = round(time.perf_counter() - start, 2)
    summary["bytes"] = common.dir_size(out)
    return summary
