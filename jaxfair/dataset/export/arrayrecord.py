"""array_record export (grain / JAX input pipelines): ``data-NNNNN.array_record`` files.

Each file holds about ``shard_bytes`` of records, written with ``group_size:1`` (random
access to any record, what grain's samplers do). One record = one image::

  b"JXF1" | uint32 little-endian n | n bytes of UTF-8 JSON (common.sample_meta) | image

Read with ``grain.ArrayRecordDataSource(sorted(glob("OUT/*.array_record")))`` (or
``array_record``'s ``ArrayRecordReader``) and ``decode`` below.
"""

from __future__ import annotations

import json
import os
import struct

from jaxfair.dataset.export.common import Sample

MAGIC = b"JXF1"
PATTERN = "data-%05d.array_record"


def encode(meta: dict, image: bytes) -> bytes:
    head = json.dumps(meta, sort_keys=True).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + image


def decode(record: bytes) -> tuple[dict, bytes]:
    """One record -> (metadata dict, encoded image bytes)."""
    if record[:4] != MAGIC:
        raise ValueError("not a jaxfair array_record record (bad magic)")
    (n,) = struct.unpack("<I", record[4:8])
    return json.loads(record[8:8 + n]), record[8 + n:]


class Writer:
    def __init__(self, root: str, ds, survey, shard_bytes: int):
        self.root, self.shard_bytes = root, shard_bytes
        self._writer, self._file, self._bytes, self._index = None, -1, 0, 0

    def write(self, s: Sample) -> str:
        from array_record.python.array_record_module import ArrayRecordWriter

        if self._writer is None or self._bytes >= self.shard_bytes:
            if self._writer is not None:
                self._writer.close()
            self._file += 1
            self._bytes = self._index = 0
            self._writer = ArrayRecordWriter(os.path.join(self.root, PATTERN % self._file),
                                             "group_size:1")
        rec = encode(s.meta, s.image)
        self._writer.write(rec)
        self._bytes += len(rec)
        self._index += 1
        return f"{PATTERN % self._file}:{self._index - 1}"

    def close(self) -> dict:
        if self._writer is not None:
            self._writer.close()
        return {"files": self._file + 1}
