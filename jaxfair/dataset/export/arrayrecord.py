"""array_record export (grain / JAX input pipelines): ``data-NNNNN.array_record`` files.

Each file is one export part (about ``shard_bytes`` of records), written with
``group_size:1`` (random access to any record, what grain's samplers do). One record = one image::

  b"JXF1" | uint32 little-endian n | n bytes of UTF-8 JSON (common.sample_meta) | image

Read with ``grain.ArrayRecordDataSource(sorted(glob("OUT/*.array_record")))`` (or
``array_record``'s ``ArrayRecordReader``) and ``decode`` below.
"""

from __future__ import annotations

import json
import os
import struct

from jaxfair.dataset.export import parts
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
    def __init__(self, root: str, ds, survey, state: dict | None):
        self.root = root
        self._writer = self._name = None
        self._index = 0

    def begin(self, part: int) -> None:
        from array_record.python.array_record_module import ArrayRecordWriter

        self._name, self._index = PATTERN % part, 0
        self._writer = ArrayRecordWriter(os.path.join(self.root, self._name), "group_size:1")

    def write(self, s: Sample) -> str:
        self._writer.write(encode(s.meta, s.image))
        self._index += 1
        return f"{self._name}:{self._index - 1}"

    def end(self) -> list[dict]:
        self._writer.close()
        parts.fsync(os.path.join(self.root, self._name))
        return [parts.file_piece(self.root, self._name)]

    def state(self) -> dict:
        return {}

    def finish(self, num_parts: int) -> dict:
        return {"files": num_parts}
