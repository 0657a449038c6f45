"""Source checkpoint formats: detection and reading into (kind, config, params)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from jaxfair.convert import keras_h5, torch_pickle
from jaxfair.convert import stylegan2 as sg_import
from jaxfair.convert import torchvision_resnet as tv_import
from jaxfair.convert.guard import CheckpointError, untrusted
from jaxfair.io import checkpoints
from jaxfair.judge import attributes

CONVERTER_VERSION = "1"
FORMATS = ("auto", "nvidia-pkl", "rosinality-pt", "torchvision-pt", "keras-h5")
# Which classifier schema a converted classifier follows; 'auto' infers it from the head.
SCHEMA_CHOICES = ("auto", "fairface7", "fairface4", "deepface")


@dataclasses.dataclass
class Converted:
    """A source file read into jaxfair's terms (nothing written yet)."""

    kind: str      # 'stylegan2', 'resnet', 'vggface'
    config: object  # the architecture dataclass
    params: dict   # nested dict of numpy arrays in jaxfair layouts
    source: dict   # file name, sha256, format, converter version
    schema: str | None = None  # classifiers: the output schema ('fairface7', 'deepface')

    def meta(self) -> dict:
        meta = {"kind": self.kind, "config": self.config.to_dict(), "source": self.source}
        if self.schema is not None:
            meta["schema"] = self.schema
        return meta


def detect(obj: object) -> str:
    """Names the format of an unpickled object, or raises CheckpointError."""
    if isinstance(obj, dict) and "G_ema" in obj:
        return "nvidia-pkl"
    if isinstance(obj, dict) and "g_ema" in obj:
        return "rosinality-pt"
    if tv_import.is_resnet_state_dict(obj):
        return "torchvision-pt"
    if isinstance(obj, dict) and {"G", "D"} & set(obj):
        raise CheckpointError("NVIDIA pickle has no 'G_ema' network")
    raise CheckpointError("unknown checkpoint format (expected an NVIDIA StyleGAN2 .pkl "
                          "with 'G_ema', a rosinality .pt with 'g_ema', a torchvision ResNet "
                          "state dict .pt or DeepFace Keras .h5 files)")


def _source(paths: list[str], fmt: str) -> dict:
    files = [os.path.basename(p) for p in paths]
    hashes = [checkpoints.sha256_file(p) for p in paths]
    one = len(paths) == 1
    return {"file": files[0] if one else files, "sha256": hashes[0] if one else hashes,
            "format": fmt, "converter_version": CONVERTER_VERSION}


def read(path: str | Sequence[str], fmt: str = "auto", schema: str = "auto") -> Converted:
    """Reads and converts a source checkpoint file in memory.

    Args:
      path: one file, or for DeepFace up to three .h5 files (race, gender, age) as a list or
        a comma-separated string.
      fmt: one of FORMATS.
      schema: classifiers only: one of SCHEMA_CHOICES ('auto': fairface7 for an 18-way
        ResNet head, deepface for .h5 files).

    Raises:
      CheckpointError: with a one-line message naming the problem. It is the only error
        this function raises for a bad file: whatever else parsing a crafted file raises
        (MemoryError, RecursionError, KeyError, ...) is turned into it.
    """
    with untrusted():
        return _read(path, fmt, schema)


def _read(path: str | Sequence[str], fmt: str, schema: str) -> Converted:
    if fmt not in FORMATS:
        raise CheckpointError(f"unknown --format {fmt!r}; choose from {', '.join(FORMATS)}")
    if schema not in SCHEMA_CHOICES:
        raise CheckpointError(f"unknown --schema {schema!r}; choose from "
                              f"{', '.join(SCHEMA_CHOICES)}")
    if isinstance(path, str):
        # A comma-separated list, unless the whole string names an existing file.
        paths = [path] if os.path.isfile(path) else [p.strip() for p in path.split(",")]
    else:
        paths = list(path)
    if not paths or any(not p for p in paths):
        raise CheckpointError("empty file name in the source list")
    for p in paths:
        if not os.path.isfile(p):
            raise CheckpointError(f"no such file: {p}" if len(paths) > 1 else "no such file")
    h5 = [keras_h5.is_hdf5(p) for p in paths]
    if any(h5) or fmt == "keras-h5":
        if not all(h5):
            bad = [p for p, is_h5 in zip(paths, h5) if not is_h5]
            raise CheckpointError(f"not an HDF5 file: {', '.join(bad)}")
        if fmt not in ("auto", "keras-h5"):
            raise CheckpointError(f"file is keras-h5, not {fmt}")
        if schema not in ("auto", "deepface"):
            raise CheckpointError(f"DeepFace .h5 models follow the deepface schema, not "
                                  f"{schema}")
        cfg, params = keras_h5.read_deepface(paths)
        return Converted("vggface", cfg, params, _source(paths, "keras-h5"), "deepface")
    if len(paths) > 1:
        raise CheckpointError("several source files are only accepted for DeepFace .h5 models")
    path = paths[0]
    obj = torch_pickle.load_file(path)
    found = detect(obj)
    if fmt != "auto" and fmt != found:
        raise CheckpointError(f"file is {found}, not {fmt}")
    if found == "torchvision-pt":
        if schema == "deepface":
            raise CheckpointError("the deepface schema is for DeepFace .h5 models; a ResNet "
                                  ".pt takes auto, fairface7 or fairface4")
        cfg, flat = tv_import.from_state_dict(obj)
        try:
            schema_obj = attributes.resnet_schema(schema, cfg.num_outputs)
        except ValueError as e:
            raise CheckpointError(str(e)) from None
        params = tv_import.to_params(cfg, flat)
        return Converted("resnet", cfg, params, _source(paths, found), schema_obj.name)
    if schema != "auto":
        raise CheckpointError(f"--schema applies to classifiers; {found} is a generator")
    if found == "nvidia-pkl":
        cfg, flat = sg_import.from_nvidia(obj)
    else:
        cfg, flat = sg_import.from_rosinality(obj)
    params = sg_import.to_params(cfg, flat)
    return Converted("stylegan2", cfg, params, _source(paths, found))
