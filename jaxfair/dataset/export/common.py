"""What every export shares: identity numbering, the split, pairs, the index, streaming.

An export reads a finished dataset with the one reader (``pipeline.dataset.Dataset``) in
two passes over its records.jsonl files (small next to the images):

1. ``survey``: every kept identity, numbered in sorted order of its id (the order
   torchvision's ImageFolder gives the class folders of the imagefolder export, so the
   identity index is the same label in every format), its group, image count and split.
2. ``samples``: shard by shard, each shard's records grouped by identity (so an identity's
   images are contiguous, as insightface's RecordIO identity ranges need), images read,
   optionally cropped on the device in fixed batches and re-encoded, yielded one by one.

Memory stays bounded by one shard's records plus one batch of images, except the survey's
per-identity table (one row per identity) and the validation identities' image keys for the
pairs: both O(identities), not O(images) or O(pixels).

Split: an identity is in ``val`` when the first 8 bytes of sha256(identity id), as a
fraction of 2^64, are below ``val_fraction``: deterministic, identity-disjoint, stable when
the dataset grows. Pairs (``pairs.parquet``): for each validation identity in index order,
one same-identity pair (its first image, another of its images) when it has two or more,
one different-identity pair within its group and one across groups (partners drawn by a
fixed-seed generator).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Iterator

import numpy as np

from jaxfair.dataset.reader import Dataset, DatasetError
from jaxfair.errors import JaxfairError
from jaxfair.io import images as imlib

INDEX, PAIRS = "index.parquet", "pairs.parquet"
IMAGE_FORMATS = ("jpg", "png")
_EXT = {"jpg": "jpg", "jpeg": "jpg", "png": "png"}


class ExportError(JaxfairError, ValueError):
    """Bad export input (the message is one line)."""


def split_of(identity: str, val_fraction: float) -> str:
    """'val' or 'train' for an identity id (see module docstring)."""
    h = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "big")
    return "val" if h / 2**64 < val_fraction else "train"


@dataclasses.dataclass(frozen=True)
class Survey:
    """The dataset's identities: ``index`` {identity: index}, ``group`` {identity: group},
    ``count`` {identity: images}, ``split`` {identity: split}, ``groups`` (plan order),
    ``val_keys`` {identity: [record ids]} for validation identities, ``images`` total,
    ``order`` the identities in the order ``samples`` emits them."""

    index: dict[str, int]
    group: dict[str, str]
    count: dict[str, int]
    split: dict[str, str]
    groups: tuple[str, ...]
    val_keys: dict[str, list[str]]
    images: int
    order: tuple[str, ...]


def survey(ds: Dataset, val_fraction: float) -> Survey:
    """First pass over the records (no images read)."""
    group, count, unit, val_keys = {}, {}, {}, {}
    for r in ds.records():
        i = r["identity"]
        group[i] = r["group"]
        count[i] = count.get(i, 0) + 1
        unit[i] = r["unit"]
        if split_of(i, val_fraction) == "val":
            val_keys.setdefault(i, []).append(r["id"])
    if not count:
        raise ExportError(f"{ds.path}: the dataset has no finished records to export")
    ids = sorted(count)
    index = {i: k for k, i in enumerate(ids)}
    return Survey(index, group, count, {i: split_of(i, val_fraction) for i in ids},
                  tuple(ds.groups), val_keys, sum(count.values()),
                  tuple(sorted(ids, key=lambda i: (unit[i], index[i]))))


@dataclasses.dataclass(frozen=True)
class Sample:
    """One exported image: ``key`` (record id), ``image`` encoded bytes, ``ext``, and
    ``meta`` (identity, identity_index, group, group_index, variation, split, unit,
    latent_row, attributes, target_probs, move when the record has one)."""

    key: str
    image: bytes
    ext: str
    meta: dict


def sample_meta(r: dict, s: Survey) -> dict:
    meta = {"key": r["id"], "identity": r["identity"], "identity_index": s.index[r["identity"]],
            "group": r["group"], "group_index": s.groups.index(r["group"]),
            "variation": r["variation"], "split": s.split[r["identity"]], "unit": r["unit"],
            "latent_row": r["latent_row"], "attributes": r["attributes"],
            "target_probs": r["target_probs"]}
    if "move" in r:
        meta["move"] = r["move"]
    return meta


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


class _Converter:
    """Encoded images -> encoded images: decode, crop on the device, encode (thread pool:
    PIL releases the GIL); one compiled crop for a fixed batch (the last one padded)."""

    def __init__(self, crop: str, fmt: str, batch: int, threads: int):
        self.crop, self.fmt, self.batch = crop, fmt, batch
        self._pool = concurrent.futures.ThreadPoolExecutor(max(1, threads))
        self._fn = None

    def __call__(self, blobs: list[bytes]) -> list[bytes]:
        imgs = list(self._pool.map(_decode, blobs))
        if self.crop == "arcface112":
            import jax

            from jaxfair.judge import crops

            if self._fn is None:
                self._fn = jax.jit(crops.arcface112)
            out = []
            for s in range(0, len(imgs), self.batch):
                chunk = np.stack(imgs[s:s + self.batch])
                pad = self.batch - len(chunk)
                if pad:
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
                out.extend(np.asarray(self._fn(chunk))[:self.batch - pad])
            imgs = out
        return list(self._pool.map(lambda im: imlib.encode(im, self.fmt), imgs))

    def close(self):
        self._pool.shutdown(wait=True)


def samples(ds: Dataset, s: Survey, crop: str, fmt: str, batch: int = 64,
            threads: int = 2, start: int = 0) -> Iterator[Sample]:
    """Second pass: every kept record as a Sample, shard by shard, identities contiguous.

    Image bytes are the dataset's own file when neither ``crop`` nor ``fmt`` changes them.
    The first ``start`` samples are skipped without reading their images (a resumed
    export); batches of ``batch`` images start at the first sample of each shard, skipped
    or not, so a conversion sees the same batches either way.
    """
    src_fmt = _EXT.get(ds.plan["image_format"])
    if src_fmt is None:
        raise ExportError(f"{ds.path}: image_format is {ds.plan['image_format']!r}: the "
                          "dataset holds no images to export")
    convert = None if (crop == "none" and fmt == src_fmt) else _Converter(crop, fmt, batch,
                                                                          threads)
    pending: list[dict] = []
    skip = start

    def flush():
        nonlocal skip
        n = len(pending)
        out = _emit(ds, s, pending, convert, fmt, batch, min(skip, n)) if n > skip else ()
        skip = max(0, skip - n)
        return out

    try:
        for r in ds.records():  # excluded records are already skipped
            if pending and r["unit"] != pending[-1]["unit"]:
                yield from flush()
                pending = []
            pending.append(r)
        yield from flush()
    finally:
        if convert is not None:
            convert.close()


def _emit(ds, s, records, convert, fmt, batch, skip) -> Iterator[Sample]:
    # Group by identity (stable: variations keep their order).
    records = sorted(records, key=lambda r: s.index[r["identity"]])
    for start in range(skip - skip % batch, len(records), batch):
        chunk = records[start:start + batch]
        blobs = []
        for r in chunk:
            path = ds.image_path(r)
            try:
                with open(path, "rb") as f:
                    blobs.append(f.read())
            except OSError as e:
                raise DatasetError(f"{path}: cannot read image ({e.strerror})") from None
        if convert is not None:
            blobs = convert(blobs)
        for k, (r, b) in enumerate(zip(chunk, blobs)):
            if start + k >= skip:
                yield Sample(r["id"], b, fmt, sample_meta(r, s))


def index_schema(ds: Dataset):
    """The pyarrow schema of index.parquet (fixed by the plan's schema and attributes)."""
    import pyarrow as pa

    fields = [("key", pa.string()), ("location", pa.string()), ("identity", pa.string()),
              ("identity_index", pa.int64()), ("group", pa.string()),
              ("group_index", pa.int32()), ("variation", pa.int32()), ("split", pa.string()),
              ("unit", pa.int32()), ("latent_row", pa.int64()), ("image_bytes", pa.int64())]
    for a in ds.plan["schema"]:
        fields += [(f"class_{a}", pa.string()), (f"prob_{a}", pa.float32())]
    fields += [(f"target_{a}", pa.float32()) for a in ds.plan["attributes"]]
    fields += [("move", pa.string())]  # JSON of the variation's move, null for none
    return pa.schema(fields)


class IndexWriter:
    """Streams index rows into index.parquet (one row group per ``rows`` samples)."""

    def __init__(self, path: str, ds: Dataset, rows: int = 65536):
        import pyarrow.parquet as pq

        self.schema = index_schema(ds)
        self._writer = pq.ParquetWriter(path, self.schema)
        self._rows: list[dict] = []
        self._limit = rows
        self._attrs, self._targets = list(ds.plan["schema"]), list(ds.plan["attributes"])

    def add(self, sample: Sample, location: str) -> None:
        m = sample.meta
        row = {k: m[k] for k in ("key", "identity", "identity_index", "group", "group_index",
                                 "variation", "split", "unit", "latent_row")}
        row.update(location=location, image_bytes=len(sample.image),
                   move=json.dumps(m["move"], sort_keys=True) if "move" in m else None)
        for a in self._attrs:
            row[f"class_{a}"] = m["attributes"][a]["class"]
            row[f"prob_{a}"] = m["attributes"][a]["prob"]
        for a in self._targets:
            row[f"target_{a}"] = m["target_probs"][a]
        self._rows.append(row)
        if len(self._rows) >= self._limit:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema))
            self._rows = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


def merge_index(paths: list[str], out: str, ds: Dataset) -> None:
    """Concatenates index part files, in order, into ``out`` (their row groups kept)."""
    import pyarrow.parquet as pq

    with pq.ParquetWriter(out, index_schema(ds)) as writer:
        for path in paths:
            f = pq.ParquetFile(path)
            for g in range(f.num_row_groups):
                writer.write_table(f.read_row_group(g))


def pairs(s: Survey, seed: int = 0) -> list[dict]:
    """Verification pairs among validation identities (see module docstring)."""
    rng = np.random.default_rng(seed)
    ids = sorted(s.val_keys, key=s.index.get)
    by_group: dict[str, list[str]] = {}
    for i in ids:
        by_group.setdefault(s.group[i], []).append(i)
    out = []

    def pair(a, ka, b, kb, kind):
        out.append({"key_a": ka, "key_b": kb, "identity_a": a, "identity_b": b,
                    "same": a == b, "group_a": s.group[a], "group_b": s.group[b],
                    "kind": kind})

    for i in ids:
        keys = s.val_keys[i]
        if len(keys) > 1:
            pair(i, keys[0], i, keys[1 + rng.integers(len(keys) - 1)], "same")
        same_group = by_group[s.group[i]]
        if len(same_group) > 1:  # rejection again: no O(n) list per identity
            j = i
            while j == i:
                j = same_group[rng.integers(len(same_group))]
            pair(i, keys[0], j, s.val_keys[j][rng.integers(len(s.val_keys[j]))],
                 "different_within_group")
        if len(by_group) > 1:
            # A uniformly random validation identity of another group (rejection: groups
            # are balanced, so this takes ~1 / (1 - 1/groups) draws; no O(n^2) scan).
            j = i
            while s.group[j] == s.group[i]:
                j = ids[rng.integers(len(ids))]
            pair(i, keys[0], j, s.val_keys[j][rng.integers(len(s.val_keys[j]))],
                 "different_across_groups")
    return out


def write_pairs(path: str, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("key_a", pa.string()), ("key_b", pa.string()),
                        ("identity_a", pa.string()), ("identity_b", pa.string()),
                        ("same", pa.bool_()), ("group_a", pa.string()),
                        ("group_b", pa.string()), ("kind", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
