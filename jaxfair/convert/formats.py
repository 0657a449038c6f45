"""Source checkpoint formats: detection and reading into (kind, config, params)."""

from __future__ import annotations

import dataclasses
import os

from jaxfair import checkpoints
from jaxfair.convert import stylegan2 as sg_import
from jaxfair.convert import torch_pickle
from jaxfair.convert.torch_pickle import CheckpointError

CONVERTER_VERSION = "1"
FORMATS = ("auto", "nvidia-pkl", "rosinality-pt")


@dataclasses.dataclass
class Converted:
    """A source file read into jaxfair's terms (nothing written yet)."""

    kind: str      # 'stylegan2'
    config: object  # the architecture dataclass
    params: dict   # nested dict of numpy arrays in jaxfair layouts
    source: dict   # file name, sha256, format, converter version

    def meta(self) -> dict:
        return {"kind": self.kind, "config": self.config.to_dict(), "source": self.source}


def detect(obj: object) -> str:
    """Names the format of an unpickled object, or raises CheckpointError."""
    if isinstance(obj, dict) and "G_ema" in obj:
        return "nvidia-pkl"
    if isinstance(obj, dict) and "g_ema" in obj:
        return "rosinality-pt"
    if isinstance(obj, dict) and {"G", "D"} & set(obj):
        raise CheckpointError("NVIDIA pickle has no 'G_ema' network")
    raise CheckpointError("unknown checkpoint format (expected an NVIDIA StyleGAN2 .pkl "
                          "with 'G_ema' or a rosinality .pt with 'g_ema')")


def read(path: str, fmt: str = "auto") -> Converted:
    """Reads and converts a source checkpoint file in memory.

    Raises:
      CheckpointError: with a one-line message naming the problem.
    """
    if fmt not in FORMATS:
        raise CheckpointError(f"unknown --format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not os.path.isfile(path):
        raise CheckpointError("no such file")
    obj = torch_pickle.load_file(path)
    found = detect(obj)
    if fmt != "auto" and fmt != found:
        raise CheckpointError(f"file is {found}, not {fmt}")
    if found == "nvidia-pkl":
        cfg, flat = sg_import.from_nvidia(obj)
    else:
        cfg, flat = sg_import.from_rosinality(obj)
    params = sg_import.to_params(cfg, flat)
    source = {"file": os.path.basename(path), "sha256": checkpoints.sha256_file(path),
              "format": found, "converter_version": CONVERTER_VERSION}
    return Converted("stylegan2", cfg, params, source)
