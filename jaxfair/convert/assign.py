"""Assigning a flat, torch-keyed dict of arrays to a module's nested state.

Importers turn a source file into ``flat``: source keys (``layer1.0.conv1.weight``,
``synthesis.b8.conv0.affine.weight``) -> arrays in torch layouts. Modules are named after
those keys, so assignment only transposes, and fails on anything that does not match.
"""

from __future__ import annotations

import numpy as np

from jaxfair.convert.guard import CheckpointError


def shorten(keys: list[str], n: int = 5) -> str:
    """The first n keys, comma-separated, with '...' when there are more."""
    return ", ".join(keys[:n]) + (" ..." if len(keys) > n else "")


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """Nested dict -> {'a.b.c': leaf}."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def torch_layout_perm(key: str, ndim: int) -> tuple[int, ...] | None:
    """Axis permutation from the torch layout of ``key`` to jaxfair's (None: unchanged)."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "weight" and ndim == 4:
        return (2, 3, 1, 0)  # conv OIHW -> HWIO
    if leaf == "weight" and ndim == 2:
        return (1, 0)  # linear [out, in] -> [in, out]
    if leaf == "const" and ndim == 3:
        return (1, 2, 0)  # StyleGAN2 const [C, 4, 4] -> [4, 4, C]
    return None


def assign(target: dict, flat: dict[str, np.ndarray]) -> dict:
    """Builds the nested params for ``target`` (a pure dict of ShapeDtypeStructs) from ``flat``.

    Raises:
      CheckpointError: missing keys, unexpected keys, or a shape that does not match.
    """
    expected = flatten(target)
    missing = sorted(set(expected) - set(flat))
    extra = sorted(set(flat) - set(expected))
    if missing:
        raise CheckpointError(f"missing keys: {shorten(missing)}")
    if extra:
        raise CheckpointError(f"unexpected keys: {shorten(extra)}")
    params: dict = {}
    for key, spec in expected.items():
        x = np.asarray(flat[key])
        perm = torch_layout_perm(key, len(spec.shape))
        need = tuple(spec.shape) if perm is None else tuple(
            spec.shape[perm.index(i)] for i in range(len(perm)))
        if x.shape != need:
            raise CheckpointError(f"shape mismatch for '{key}': file has {x.shape}, the "
                                  f"architecture needs {need}")
        if perm is not None:
            x = x.transpose(perm)
        node = params
        *parents, leaf = key.split(".")
        for p in parents:
            # nnx.List entries (layer1.0, downsample.1) are integer keys in the state.
            node = node.setdefault(int(p) if p.isdigit() else p, {})
        node[leaf] = np.ascontiguousarray(x, dtype=np.float32)
    return params
