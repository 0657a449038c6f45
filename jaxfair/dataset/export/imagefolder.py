"""ImageFolder export: ``OUT/<identity>/<variation:02d>.<ext>`` plus ``OUT/metadata.jsonl``.

torchvision's ``ImageFolder(OUT)`` takes the sorted folder names as classes, so its class
index is the identity index of every other format; HuggingFace's ``imagefolder`` builder
reads ``metadata.jsonl`` (``file_name`` relative to OUT, then every field of
``common.sample_meta``: group, attributes, split, ...), so both loaders see identity and
group. Files are written in full, never linked to the dataset (an export is standalone).
An export part records metadata.jsonl's appended range and each identity folder it wrote
(an identity never spans two parts).
"""

from __future__ import annotations

import json
import os

from jaxfair.dataset.export import parts
from jaxfair.dataset.export.common import Sample

METADATA = "metadata.jsonl"


class Writer:
    def __init__(self, root: str, ds, survey, state: dict | None):
        self.root = root
        self._identities = (state or {}).get("identities", 0)
        self._meta = None
        self._dirs: list[str] = []
        self._start = 0

    def begin(self, part: int) -> None:
        # Appended part by part; a resumed export truncates it to its last finished part.
        self._meta = open(os.path.join(self.root, METADATA), "ab")  # noqa: SIM115 (end())
        self._start = self._meta.seek(0, 2)
        self._dirs = []

    def write(self, s: Sample) -> str:
        ident = s.meta["identity"]
        if not self._dirs or self._dirs[-1] != ident:  # identities are contiguous
            os.makedirs(os.path.join(self.root, ident))
            self._dirs.append(ident)
        rel = f"{ident}/{s.meta['variation']:02d}.{s.ext}"
        with open(os.path.join(self.root, rel), "wb") as f:
            f.write(s.image)
            f.flush()
            os.fsync(f.fileno())
        self._meta.write((json.dumps({"file_name": rel, **s.meta}, sort_keys=True)
                          + "\n").encode())
        return rel

    def end(self) -> list[dict]:
        self._meta.flush()
        os.fsync(self._meta.fileno())
        self._meta.close()
        self._identities += len(self._dirs)
        return ([parts.file_piece(self.root, METADATA, self._start)]
                + [parts.dir_piece(self.root, d) for d in self._dirs])

    def state(self) -> dict:
        return {"identities": self._identities}

    def finish(self, num_parts: int) -> dict:
        return {"identities": self._identities}
