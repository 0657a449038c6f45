"""jaxfair's checkpoint directories: ``DIR/meta.json`` + ``DIR/params`` (orbax).

The only module that imports orbax. ``meta.json`` says what the weights are (``kind``:
'stylegan2', 'resnet', ...), the architecture ``config`` needed to rebuild the module
abstractly, and where the weights came from (``source``: file name, sha256, format,
converter version). Weights are a nested dict of arrays keyed like the module's state.

Writes are atomic: everything goes into a hidden temporary directory next to the target,
which is renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import jax
import numpy as np

from jaxfair.errors import JaxfairError
from jaxfair.io import atomic

META_FILE = "meta.json"
PARAMS_DIR = "params"
FORMAT_VERSION = 1


class CheckpointDirError(JaxfairError, ValueError):
    """A jaxfair checkpoint directory is missing, incomplete or inconsistent."""


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint(path: str) -> str:
    """sha256 of a checkpoint: of the file, or of every file of a directory (relative paths
    and contents, in sorted order), so any change to the weights or metadata changes it."""
    if os.path.isfile(path):
        return sha256_file(path)
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            full = os.path.join(root, name)
            h.update(os.path.relpath(full, path).encode() + b"\0")
            h.update(sha256_file(full).encode())
    return h.hexdigest()


def check_output_dir(path: str) -> None:
    """Raises CheckpointDirError if ``path`` exists and is a non-empty directory or a file."""
    try:
        atomic.check_empty(path)
    except atomic.OutputExistsError as e:
        raise CheckpointDirError(str(e)) from None


def save(path: str, params: dict, meta: dict[str, Any]) -> None:
    """Writes ``params`` (nested dict of arrays) and ``meta`` to ``path`` atomically.

    Args:
      path: target directory; must not exist or be empty.
      params: nested dict of arrays (``nnx.to_pure_dict(state)``).
      meta: JSON-serialisable; must contain ``kind`` and ``config``.
    """
    check_output_dir(path)
    import orbax.checkpoint as ocp

    with atomic.directory(path) as tmp:
        host = jax.tree.map(np.asarray, params)
        ckptr = ocp.StandardCheckpointer()
        ckptr.save(os.path.join(tmp, PARAMS_DIR), host)
        ckptr.wait_until_finished()
        with open(os.path.join(tmp, META_FILE), "w") as f:
            json.dump({"format_version": FORMAT_VERSION, **meta}, f, indent=2, sort_keys=True)
            f.write("\n")


def read_meta(path: str) -> dict[str, Any]:
    """Reads ``DIR/meta.json``."""
    meta_path = os.path.join(path, META_FILE)
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise CheckpointDirError(f"{path} is not a jaxfair checkpoint (no {META_FILE})") from None
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointDirError(f"{meta_path} is unreadable ({e})") from None
    if not isinstance(meta, dict) or "kind" not in meta or "config" not in meta:
        raise CheckpointDirError(f"{meta_path} lacks 'kind' or 'config'")
    return meta


def load(path: str, target: dict) -> tuple[dict[str, Any], dict]:
    """Reads a checkpoint directory.

    Args:
      path: directory written by ``save``.
      target: nested dict of ``jax.ShapeDtypeStruct`` (the abstract module state); the
        stored arrays must match it exactly.

    Returns:
      (meta, params) with params a nested dict of numpy arrays shaped like ``target``.
    """
    meta = read_meta(path)
    params_path = os.path.abspath(os.path.join(path, PARAMS_DIR))
    if not os.path.isdir(params_path):
        raise CheckpointDirError(f"{path} has no {PARAMS_DIR}/ directory")
    import orbax.checkpoint as ocp

    try:
        params = ocp.StandardCheckpointer().restore(params_path, target)
    except Exception as e:  # orbax raises many types for mismatched or damaged trees
        raise CheckpointDirError(
            f"{path}: stored weights do not match the architecture in {META_FILE} "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    return meta, params
