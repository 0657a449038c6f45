"""webdataset export: tar shards ``shard-NNNNNN.tar`` of about ``shard_bytes`` each.

One sample = two tar members sharing the record id as key: ``<id>.jpg`` (or ``.png``) and
``<id>.json`` (``common.sample_meta``). Written with webdataset's own ``ShardWriter``; read
with ``webdataset.WebDataset("OUT/shard-{000000..000NNN}.tar").decode("rgb")``.
"""

from __future__ import annotations

import os

from jaxfair.dataset.export.common import Sample

PATTERN = "shard-%06d.tar"


class Writer:
    def __init__(self, root: str, ds, survey, shard_bytes: int):
        import webdataset as wds

        self._sink = wds.ShardWriter(os.path.join(root, PATTERN), maxcount=10**12,
                                     maxsize=shard_bytes, verbose=0)

        self._names: set[str] = set()

    def write(self, s: Sample) -> str:
        self._sink.write({"__key__": s.key, s.ext: s.image, "json": s.meta})
        name = os.path.basename(self._sink.fname)  # known after write: rotation comes first
        self._names.add(name)
        return name

    def close(self) -> dict:
        self._sink.close()
        return {"shards": len(self._names)}
