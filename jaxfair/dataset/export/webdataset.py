"""webdataset export: tar shards ``shard-NNNNNN.tar``, one per export part (~``shard_bytes``).

One sample = two tar members sharing the record id as key: ``<id>.jpg`` (or ``.png``) and
``<id>.json`` (``common.sample_meta``, keys sorted). Written with webdataset's own
``TarWriter`` with a fixed member mtime (0), so a shard's bytes depend only on its samples;
read with ``webdataset.WebDataset("OUT/shard-{000000..000NNN}.tar").decode("rgb")``.
"""

from __future__ import annotations

import json
import os

from jaxfair.dataset.export import parts
from jaxfair.dataset.export.common import Sample

PATTERN = "shard-%06d.tar"


class Writer:
    def __init__(self, root: str, ds, survey, state: dict | None):
        self.root = root
        self._file = self._tar = self._name = None

    def begin(self, part: int) -> None:
        import webdataset as wds

        self._name = PATTERN % part
        self._file = open(os.path.join(self.root, self._name), "wb")  # noqa: SIM115 (end())
        self._tar = wds.TarWriter(self._file, mtime=0)

    def write(self, s: Sample) -> str:
        self._tar.write({"__key__": s.key, s.ext: s.image,
                         "json": json.dumps(s.meta, sort_keys=True).encode()})
        return self._name

    def end(self) -> list[dict]:
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return [parts.file_piece(self.root, self._name)]

    def state(self) -> dict:
        return {}

    def finish(self, num_parts: int) -> dict:
        return {"shards": num_parts}
