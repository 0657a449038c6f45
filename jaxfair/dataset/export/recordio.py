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
Export parts append to the .rec / .idx files (a resumed export truncates them to its last
finished part); the identity records and ``property`` are written when every part is done.
"""

from __future__ import annotations

import io
import os
import struct

import numpy as np
from PIL import Image

from jaxfair.dataset.export import parts
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
    """One .rec/.idx pair, appended to part by part; the identity records are written at
    the end from the survey (an identity's images are contiguous, in ``survey.order``)."""

    def __init__(self, root: str, name: str, survey, next_id: int):
        self.root, self.name, self.survey = root, name, survey
        self.ids = [i for i in survey.order if survey.split[i] == name]
        self.n, self.k = sum(survey.count[i] for i in self.ids), len(self.ids)
        self.next_id = next_id
        self.rec = self.idx = None
        self.start: dict[str, int] = {}

    def open(self) -> None:
        # Append mode: a resumed export continues the files its finished parts wrote.
        self.rec = open(os.path.join(self.root, f"{self.name}.rec"), "ab")  # noqa: SIM115
        self.idx = open(os.path.join(self.root, f"{self.name}.idx"), "ab")  # noqa: SIM115
        self.start = {f"{self.name}.rec": self.rec.seek(0, 2),
                      f"{self.name}.idx": self.idx.seek(0, 2)}
        if self.next_id == 0:  # record 0: the image and identity-record ranges
            self._put(0, header(2, 0.0, 0, (self.n + 1, self.n + 1 + self.k)))
            self.next_id = 1

    def _put(self, key: int, payload: bytes) -> None:
        self.idx.write(f"{key}\t{self.rec.tell()}\n".encode())
        self.rec.write(frame(payload))

    def add(self, s: Sample) -> int:
        key = self.next_id
        self._put(key, header(0, float(s.meta["identity_index"]), key) + s.image)
        self.next_id += 1
        return key

    def close(self) -> list[dict]:
        """Closes the files of one part; returns their pieces (the ranges it appended)."""
        for f in (self.rec, self.idx):
            f.flush()
            os.fsync(f.fileno())
            f.close()
        self.rec = self.idx = None
        return [parts.file_piece(self.root, name, offset) for name, offset in self.start.items()]

    def finish(self) -> None:
        if self.next_id - 1 != self.n:
            raise RuntimeError(f"recordio: wrote {self.next_id - 1} {self.name} images, the "
                               f"survey counted {self.n}")
        self.open()
        first = 1
        for k, i in enumerate(self.ids):
            key = self.n + 1 + k
            self._put(key, header(2, 0.0, key, (first, first + self.survey.count[i])))
            first += self.survey.count[i]
        self.close()


class Writer:
    def __init__(self, root: str, ds, survey, state: dict | None):
        self.root, self.survey = root, survey
        state = state or {}
        self._splits = {name: _Split(root, name, survey, n)
                        for name, n in state.get("next", {}).items()}
        self._hw = tuple(state["hw"]) if state.get("hw") else None
        self._open: set[str] = set()

    def begin(self, part: int) -> None:
        self._open = set()

    def write(self, s: Sample) -> str:
        name = s.meta["split"]
        if name not in self._splits:
            self._splits[name] = _Split(self.root, name, self.survey, 0)
        if name not in self._open:
            self._splits[name].open()
            self._open.add(name)
        if self._hw is None:
            with Image.open(io.BytesIO(s.image)) as im:
                self._hw = (im.height, im.width)
        return f"{name}.rec:{self._splits[name].add(s)}"

    def end(self) -> list[dict]:
        return [p for name in sorted(self._open) for p in self._splits[name].close()]

    def state(self) -> dict:
        return {"next": {name: sp.next_id for name, sp in sorted(self._splits.items())},
                "hw": list(self._hw) if self._hw else None}

    def finish(self, num_parts: int) -> dict:
        for name in sorted(self._splits):
            self._splits[name].finish()
        h, w = self._hw or (0, 0)
        with open(os.path.join(self.root, "property"), "w") as f:
            f.write(f"{len(self.survey.index)},{h},{w}\n")
        return {"splits": sorted(self._splits)}
