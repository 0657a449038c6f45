"""Reading a generated dataset (``jaxfair-dataset/1``): the one reader of the format.

Layout (written by ``python -m jaxfair.generate``; see the README):

  DIR/plan.json                 the run's plan: method, schema, groups and quotas, ...
  DIR/shards/NNNNN/records.jsonl  one JSON object per image, in latent_row order
  DIR/shards/NNNNN/latents.npy  [n, w_dim] (w) or [n, num_ws, w_dim] (wplus)
  DIR/shards/NNNNN/<file>       the images (png/jpg), unless image_format is 'none'
  DIR/shards/NNNNN/DONE         written last: {"unit": u, "records": n, "files":
                                {name: {"size": bytes, "sha256": hex}}} (checked on open)
  DIR/manifest.json             written at the end (absent while the run is partial)

Only shards with a DONE marker count (others are being written, or will be redone);
names starting with '.' are temporary. Records listed in the manifest's ``excluded``
(cross-unit near-duplicate identities) are not part of the dataset and are skipped.

Example:
  ds = Dataset.open("out/demo")
  for r in ds.records():                   # dicts as in records.jsonl
      img = ds.load_image(r)               # uint8 [H, W, 3]
  w = ds.latents(list(ds.records()))       # float32 [N, w_dim] or [N, num_ws, w_dim]
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Sequence

import numpy as np

from jaxfair.dataset import verify
from jaxfair.dataset.format import (
    DONE,
    FORMAT,
    LATENTS,
    MANIFEST,
    PLAN,
    RECORDS,
    SHARDS,
)
from jaxfair.dataset.format import PLAN_KEYS as _PLAN_KEYS
from jaxfair.dataset.format import RECORD_KEYS as _RECORD_KEYS
from jaxfair.errors import JaxfairError
from jaxfair.judge import attributes


class DatasetError(JaxfairError, ValueError):
    """A directory that is not a readable jaxfair dataset (the message is one line)."""


@dataclasses.dataclass(frozen=True)
class Shard:
    """A finished work unit: ``path`` holds records.jsonl, latents.npy, images and DONE."""

    unit: int
    path: str
    num_records: int


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: {what} is not valid JSON ({e})") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read {what} ({e.strerror})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: {what} must hold a JSON object")
    return data


class Dataset:
    """An opened dataset directory (read-only; re-open to see shards finished since).

    Attributes:
      path: the dataset directory.
      plan: plan.json as a dict.
      manifest: manifest.json as a dict, or None for a partial dataset.
      shards: the finished shards, in unit order.
      schema: every classifier attribute with its classes, as a ``Schema``.
    """

    def __init__(self, path: str, plan: dict, manifest: dict | None, shards: list[Shard]):
        self.path = path
        self.plan = plan
        self.manifest = manifest
        self.shards = shards
        self._by_unit = {s.unit: s for s in shards}
        try:
            self.schema = attributes.schema_from_classes(
                "dataset", {a: tuple(c) for a, c in plan["schema"].items()})
        except (AttributeError, TypeError, ValueError) as e:
            raise DatasetError(f"{path}/{PLAN}: bad schema ({e})") from None

    @classmethod
    def open(cls, path: str) -> Dataset:
        """Opens ``path``; raises DatasetError (one line) if it is not a dataset."""
        if not os.path.isdir(path):
            raise DatasetError(f"{path}: no such directory")
        plan_path = os.path.join(path, PLAN)
        if not os.path.isfile(plan_path):
            raise DatasetError(f"{path} is not a jaxfair dataset (no {PLAN})")
        plan = _read_json(plan_path, PLAN)
        if plan.get("format") != FORMAT:
            raise DatasetError(f"{plan_path}: format {plan.get('format')!r} is not {FORMAT!r}")
        missing = [k for k in _PLAN_KEYS if k not in plan]
        if missing:
            raise DatasetError(f"{plan_path}: missing keys {', '.join(missing)}")
        manifest_path = os.path.join(path, MANIFEST)
        manifest = (_read_json(manifest_path, MANIFEST) if os.path.isfile(manifest_path)
                    else None)
        return cls(path, plan, manifest, _finished_shards(path))

    @property
    def complete(self) -> bool:
        """True once the run wrote a manifest saying so."""
        return bool(self.manifest and self.manifest.get("complete"))

    @property
    def groups(self) -> dict[str, int]:
        """Group text -> quota of identities, in plan order."""
        return dict(self.plan["groups"])

    @property
    def excluded(self) -> frozenset[str]:
        """Ids of records that are not part of the dataset (empty without a manifest)."""
        return frozenset((self.manifest or {}).get("excluded", ()))

    def target(self, group: str) -> attributes.Target:
        """The group's class masks (``parse_target`` of its text against ``schema``)."""
        return attributes.parse_target(group, self.schema)

    def records(self) -> Iterator[dict]:
        """Records of every finished shard, unit by unit, in latent_row order.

        Excluded records are skipped. Raises DatasetError on a shard whose records.jsonl
        disagrees with its DONE marker, or a record without a required key.
        """
        excluded = self.excluded
        for shard in self.shards:
            for r in _shard_records(shard):
                if r["id"] not in excluded:
                    yield r

    def image_path(self, record: dict) -> str | None:
        """Absolute path of the record's image file (None when image_format is 'none')."""
        if record["file"] is None:
            return None
        return os.path.join(self._shard(record).path, record["file"])

    def load_image(self, record: dict) -> np.ndarray:
        """Decodes the record's image file: uint8 [H, W, 3]."""
        from PIL import Image

        path = self.image_path(record)
        if path is None:
            raise DatasetError(f"{self.path}: image_format is none, record {record['id']} "
                               "has no image file")
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        except OSError as e:
            raise DatasetError(f"{path}: cannot decode image ({e})") from None

    def latents(self, records: Sequence[dict]) -> np.ndarray:
        """The latents of ``records``, in their order.

        Returns:
          float32 [N, w_dim] (latent_space 'w') or [N, num_ws, w_dim] ('wplus').
        """
        return self._rows(records, LATENTS, "latents")

    def z(self, records: Sequence[dict]) -> np.ndarray:
        """The prior latents z [N, z_dim] of ``records`` (datasets found in z space: the
        planner's, the search's in space z), in their order."""
        return self._rows(records, "z.npy", "z")

    def _rows(self, records: Sequence[dict], name: str, what: str) -> np.ndarray:
        rows_by_unit: dict[int, list[int]] = {}
        for i, r in enumerate(records):
            rows_by_unit.setdefault(r["unit"], []).append(i)
        out = None
        for idx in rows_by_unit.values():
            shard = self._shard(records[idx[0]])
            path = os.path.join(shard.path, name)
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise DatasetError(f"{path}: cannot read {what} ({e})") from None
            if arr.shape[0] != shard.num_records:
                raise DatasetError(f"{path}: {arr.shape[0]} {what} rows but DONE says "
                                   f"{shard.num_records} records")
            if out is None:
                out = np.empty((len(records), *arr.shape[1:]), np.float32)
            out[idx] = arr[[records[i]["latent_row"] for i in idx]]
        if out is None:
            raise DatasetError(f"{self.path}: no records to load {what} for")
        return out

    def _shard(self, record: dict) -> Shard:
        try:
            return self._by_unit[record["unit"]]
        except KeyError:
            raise DatasetError(f"{self.path}: record {record.get('id')} names unit "
                               f"{record.get('unit')}, which has no finished shard") from None


def _finished_shards(path: str) -> list[Shard]:
    """Shards with a DONE marker, in unit order (unfinished and temporary ones skipped)."""
    root = os.path.join(path, SHARDS)
    if not os.path.isdir(root):
        return []  # the run has not finished any unit yet
    shards = []
    for name in sorted(os.listdir(root)):
        shard_dir = os.path.join(root, name)
        if name.startswith(".") or not os.path.isfile(os.path.join(shard_dir, DONE)):
            continue
        if not name.isdigit():
            raise DatasetError(f"{shard_dir}: shard directory names must be unit numbers")
        done = _read_json(os.path.join(shard_dir, DONE), DONE)
        if done.get("unit") != int(name) or not isinstance(done.get("records"), int):
            raise DatasetError(f"{shard_dir}/{DONE}: expected {{\"unit\": {int(name)}, "
                               f"\"records\": n}}, got {done}")
        # Sizes only (one stat per file): checksums are the resuming run's job (verify.py).
        bad = verify.size_damage(shard_dir, done)
        if bad:
            raise DatasetError(f"{bad}; rerun python -m jaxfair.generate on {path} to "
                               f"recompute the shard")
        shards.append(Shard(int(name), shard_dir, done["records"]))
    return sorted(shards, key=lambda s: s.unit)


def _shard_records(shard: Shard) -> list[dict]:
    path = os.path.join(shard.path, RECORDS)
    records = []
    try:
        with open(path) as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DatasetError(f"{path}:{line_no}: not valid JSON ({e})") from None
                missing = [k for k in _RECORD_KEYS if k not in r]
                if missing:
                    raise DatasetError(f"{path}:{line_no}: record lacks {', '.join(missing)}")
                if r["unit"] != shard.unit or r["latent_row"] != len(records):
                    raise DatasetError(f"{path}:{line_no}: unit {r['unit']} row "
                                       f"{r['latent_row']}, expected unit {shard.unit} row "
                                       f"{len(records)}")
                records.append(r)
    except OSError as e:
        raise DatasetError(f"{path}: cannot read records ({e.strerror})") from None
    if len(records) != shard.num_records:
        raise DatasetError(f"{path}: {len(records)} records but DONE says "
                           f"{shard.num_records}")
    return records
