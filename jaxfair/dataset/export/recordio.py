"""insightface RecordIO export (MXNet IndexedRecordIO, what ``arcface_torch`` trains on).

Written by hand (mxnet has no wheel for current Pythons) from the documented layout:

* ``train.rec``: a sequence of records. Record framing (dmlc-core RecordIO): uint32 magic
  0xced7230a, uint32 ``lrecord = cflag << 29 | length``, the payload, zero padding to a
  multiple of 4. A payload that contains the magic at a 4-aligned offset is split there into
  parts (cflag 1 = first, 2 = middle, 3 = last; the magic itself is dropped and restored by
  the reader), exactly as dmlc's writer does, so a reader never mistakes it for a new record.
* Payload = IRHeader ``struct "<IfQQ"`` (flag, label, id, id2), then ``flag`` float32 labels
  when flag > 0, then the encoded image (JPEG/PNG).
* Record 0 (id 0): flag 2, labels ``(N + 1, N + 1 + K)``: images are records 1..N, then one
  record per identity k at N + 1 + k with flag 2 and labels ``(first, end)`` of its images
  (an identity's images are contiguous). ``arcface_torch``'s MXFaceDataset reads record 0
  and indexes records 1..N; image records have flag 0 and label = identity index.
* ``train.idx``: one ``key\\toffset`` line per record (offset of its magic in train.rec).
* ``property``: ``num_classes,height,width``.

The ``val`` split goes to ``val.rec`` / ``val.idx`` in the same layout (labels are the global
identity index in both; ``num_classes`` counts all identities, so val labels stay valid).
"""

from __future__ import annotations

import io
import os
import struct

import numpy as np
from PIL import Image

from jaxfair.dataset.export.common import Sample

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)


def frame(payload: bytes) -> bytes:
    """One record as dmlc-core's RecordIOWriter writes it (parts split at aligned magic)."""
    out, start = [], 0
    n = len(payload)
    for i in range(0, n - n % 4, 4):
        if payload[i:i + 4] == _MAGIC_BYTES:
            out += [_MAGIC_BYTES, struct.pack("<I", (1 if start == 0 else 2) << 29 | i - start),
                    payload[start:i]]
            start = i + 4
    out += [_MAGIC_BYTES, struct.pack("<I", (3 if start else 0) << 29 | n - start),
            payload[start:], b"\0" * (-n % 4)]
    return b"".join(out)


def header(flag: int, label: float, rec_id: int, labels=()) -> bytes:
    return struct.pack("<IfQQ", flag, label, rec_id, 0) + np.asarray(
        labels, "<f4").tobytes()


class _Split:
    """One .rec/.idx pair; the identity records are written at the end from the ranges."""

    def __init__(self, root: str, name: str, num_images: int, num_identities: int):
        # Open for the whole export (streamed into); close() closes them.
        self.rec = open(os.path.join(root, f"{name}.rec"), "wb")  # noqa: SIM115
        self.idx = open(os.path.join(root, f"{name}.idx"), "w")  # noqa: SIM115
        self.n, self.k = num_images, num_identities
        self.next_id = 1
        self.ranges: list[tuple[int, int]] = []  # per identity (in order of appearance)
        self._last_identity = None
        self._put(0, header(2, 0.0, 0, (num_images + 1, num_images + 1 + num_identities)))

    def _put(self, key: int, payload: bytes) -> None:
        self.idx.write(f"{key}\t{self.rec.tell()}\n")
        self.rec.write(frame(payload))

    def add(self, s: Sample) -> int:
        key = self.next_id
        ident = s.meta["identity"]
        if ident != self._last_identity:
            self.ranges.append((key, key))
            self._last_identity = ident
        self.ranges[-1] = (self.ranges[-1][0], key + 1)
        self._put(key, header(0, float(s.meta["identity_index"]), key) + s.image)
        self.next_id += 1
        return key

    def close(self) -> None:
        if self.next_id - 1 != self.n or len(self.ranges) != self.k:
            raise RuntimeError(f"recordio: wrote {self.next_id - 1} images of {len(self.ranges)} "
                               f"identities, the survey counted {self.n} of {self.k}")
        for k, (a, b) in enumerate(self.ranges):
            key = self.n + 1 + k
            self._put(key, header(2, 0.0, key, (a, b)))
        self.rec.close()
        self.idx.close()


class Writer:
    def __init__(self, root: str, ds, survey, shard_bytes: int):
        self.root, self.survey = root, survey
        self._splits: dict[str, _Split] = {}
        self._hw = None

    def write(self, s: Sample) -> str:
        name = s.meta["split"]
        if name not in self._splits:
            ids = [i for i, sp in self.survey.split.items() if sp == name]
            self._splits[name] = _Split(self.root, name, sum(self.survey.count[i] for i in ids),
                                        len(ids))
        if self._hw is None:
            with Image.open(io.BytesIO(s.image)) as im:
                self._hw = (im.height, im.width)
        return f"{name}.rec:{self._splits[name].add(s)}"

    def close(self) -> dict:
        for sp in self._splits.values():
            sp.close()
        h, w = self._hw or (0, 0)
        with open(os.path.join(self.root, "property"), "w") as f:
            f.write(f"{len(self.survey.index)},{h},{w}\n")
        return {"splits": sorted(self._splits)}
