"""ImageFolder export: ``OUT/<identity>/<variation:02d>.<ext>`` plus ``OUT/metadata.jsonl``.

torchvision's ``ImageFolder(OUT)`` takes the sorted folder names as classes, so its class
index is the identity index of every other format; HuggingFace's ``imagefolder`` builder
reads ``metadata.jsonl`` (``file_name`` relative to OUT, then every field of
``common.sample_meta``: group, attributes, split, ...), so both loaders see identity and
group. Files are written in full, never linked to the dataset (an export is standalone).
"""

from __future__ import annotations

import json
import os

from jaxfair.dataset.export.common import Sample

METADATA = "metadata.jsonl"


class Writer:
    def __init__(self, root: str, ds, survey, shard_bytes: int):
        self.root = root
        self._meta = open(os.path.join(root, METADATA), "w")  # noqa: SIM115 (close())
        self._dirs: set[str] = set()

    def write(self, s: Sample) -> str:
        ident = s.meta["identity"]
        if ident not in self._dirs:
            os.makedirs(os.path.join(self.root, ident))
            self._dirs.add(ident)
        rel = f"{ident}/{s.meta['variation']:02d}.{s.ext}"
        with open(os.path.join(self.root, rel), "wb") as f:
            f.write(s.image)
        self._meta.write(json.dumps({"file_name": rel, **s.meta}, sort_keys=True) + "\n")
        return rel

    def close(self) -> dict:
        self._meta.close()
        return {"identities": len(self._dirs)}
