"""DeepFace Keras 2 ``.h5`` weight files -> jaxfair DeepFace (VGG-Face + heads) state.

Keras 2 HDF5 layout (``model.save_weights``; ``model.save`` nests it under
``model_weights``): the root attribute ``layer_names`` lists every layer in model order; each
layer is a group whose attribute ``weight_names`` lists its arrays (``conv2d_1/kernel:0``,
``conv2d_1/bias:0``), stored at those paths inside the group. Conv kernels are HWIO, which is
jaxfair's layout, so nothing is transposed.

Layer names depend on the Keras session that built the model (``conv2d_1`` or
``conv2d_27``), so layers are matched by position and shape: the layers that have weights
must be exactly 13 3x3 convs (blocks of 2, 2, 3, 3, 3), fc6 (k x k), fc7 (1x1) and one 1x1
head, chained channel to channel. Anything else is an unknown layout and is refused.

Each DeepFace file (race, gender, age) is a full network; ``read_deepface`` reads up to three,
names each head by its size (6 race, 2 gender, 101 age) and keeps one backbone per distinct
set of backbone weights.
"""

from __future__ import annotations

import math
import os

import jax
import numpy as np
from flax import nnx

from jaxfair.convert.guard import Budget, CheckpointError, describe_error, untrusted
from jaxfair.judge.attributes import DEEPFACE_HEAD_SIZES
from jaxfair.models import vggface

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_BLOCK_LENGTHS = tuple(len(b) for b in vggface.VGG_BLOCKS)
_NUM_WEIGHTED = sum(_BLOCK_LENGTHS) + 3  # 3x3 convs + fc6 + fc7 + head


def is_hdf5(path: str) -> bool:
    """True if the file starts with the HDF5 signature (at 0 or after a user block)."""
    try:
        with open(path, "rb") as f:
            for offset in (0, 512, 1024, 2048):
                f.seek(offset)
                if f.read(8) == HDF5_MAGIC:
                    return True
    except OSError:
        return False
    return False


# Chunked datasets may be compressed, so their declared size may exceed the file's; a weight
# file compresses by well under 2x, so 16x is generous and still refuses fill-value bombs.
MAX_CHUNKED_RATIO = 16
_MAX_LINK_HOPS = 8
# HDF5 filters understood without plugins (deflate, shuffle, fletcher32, szip, nbit,
# scale-offset) plus h5py's built-in lzf; anything else would make HDF5 search for plugins.
_KNOWN_FILTERS = frozenset({1, 2, 3, 4, 5, 6, 32000})


def _strings(values) -> list[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in np.asarray(values)
            .reshape(-1)]


def _resolve(h5py, f, group, path: str, hops: int = 0):
    """Follows ``path`` from ``group`` one link at a time.

    HDF5 would follow external links into other files and soft links round a loop forever;
    here external links are refused and soft links followed at most ``_MAX_LINK_HOPS`` times.
    Returns None when a component does not exist.
    """
    node = group
    for comp in (c for c in path.split("/") if c and c != "."):
        if not isinstance(node, h5py.Group):
            return None
        link = node.get(comp, getlink=True)
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            raise CheckpointError(f"refused external link '{comp[:60]}' (it points into "
                                  "another file)")
        if isinstance(link, h5py.SoftLink):
            if hops >= _MAX_LINK_HOPS:
                raise CheckpointError(f"refused soft link '{comp[:60]}': more than "
                                      f"{_MAX_LINK_HOPS} hops (a link loop?)")
            base = f if link.path.startswith("/") else node
            node = _resolve(h5py, f, base, link.path, hops + 1)
            hops += 1
            if node is None:
                return None
        elif isinstance(link, h5py.HardLink):
            node = node[comp]
        else:
            raise CheckpointError(f"refused link '{comp[:60]}' of an unknown class")
    return node


def _attr(h5py, obj, name: str, file_size: int):
    """Reads attribute ``name`` after checking its declared size fits in the file."""
    if name not in obj.attrs:
        return None
    aid = h5py.h5a.open(obj.id, name.encode())
    shape = aid.shape
    if shape is None:  # null dataspace
        raise CheckpointError(f"attribute '{name}' has no data")
    if math.prod(shape) * aid.dtype.itemsize > file_size:
        raise CheckpointError(f"attribute '{name}' declares more data than the file holds")
    if aid.dtype.kind not in "SUf" and h5py.check_string_dtype(aid.dtype) is None:
        raise CheckpointError(f"attribute '{name}' is not a list of names")
    return obj.attrs[name]


def check_dataset(h5py, ds, where: str, file_size: int) -> int:
    """Checks a weight dataset before any of it is read; returns its size in bytes.

    Raises:
      CheckpointError: external storage (raw data in another file), a virtual dataset (data
        mapped from other files), an unknown filter, a non-float type, or a declared size the
        file could not hold (more than the file for plain storage, more than
        ``MAX_CHUNKED_RATIO`` times it for chunked, possibly compressed, storage, or a plain
        dataset that stores fewer bytes than it declares).
    """
    if not isinstance(ds, h5py.Dataset):
        raise CheckpointError(f"weight '{where}' is not a dataset")
    plist = ds.id.get_create_plist()
    if plist.get_external_count():
        raise CheckpointError(f"refused weight '{where}': its data is stored in external files")
    layout = plist.get_layout()
    if layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.COMPACT, h5py.h5d.CHUNKED):
        raise CheckpointError(f"refused weight '{where}': virtual or unknown storage layout")
    for i in range(plist.get_nfilters()):
        code = plist.get_filter(i)[0]
        if code not in _KNOWN_FILTERS:
            raise CheckpointError(f"refused weight '{where}': unknown HDF5 filter {code}")
    if ds.shape is None or ds.dtype.kind != "f":
        raise CheckpointError(f"weight '{where}' is not a floating-point array")
    declared = math.prod(ds.shape) * ds.dtype.itemsize
    chunked = layout == h5py.h5d.CHUNKED
    if declared > (MAX_CHUNKED_RATIO if chunked else 1) * file_size:
        raise CheckpointError(f"refused weight '{where}': declares {declared} bytes in a file "
                              f"of {file_size}")
    if not chunked and ds.id.get_storage_size() < declared:
        raise CheckpointError(f"weight '{where}' stores fewer bytes than its shape declares")
    return declared


def read_layers(path: str) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Layers with weights, in model order: ``[(layer_name, {'kernel': .., 'bias': ..}), ...]``.

    Weight names are reduced to their last component without the ``:0`` suffix. Every link,
    attribute and dataset is checked before it is read (``check_dataset``); nothing outside
    the file is ever opened.

    Raises:
      CheckpointError: not a Keras 2 HDF5 weights file, unreadable, or refused as hostile.
    """
    try:
        import h5py
    except ImportError:
        raise CheckpointError("reading .h5 files needs h5py (pip install h5py)") from None
    try:
        file_size = os.path.getsize(path)
        with untrusted("HDF5 file"), h5py.File(path, "r") as f:
            return _read_layers(h5py, f, file_size)
    except OSError as e:
        raise CheckpointError(f"cannot read HDF5 file ({describe_error(e)})") from None


def _read_layers(h5py, f, file_size: int) -> list[tuple[str, dict[str, np.ndarray]]]:
    root = f
    if f.get("model_weights", getlink=True) is not None:  # model.save() nests weights here
        root = _resolve(h5py, f, f, "model_weights")
    if root is None or _attr(h5py, root, "layer_names", file_size) is None:
        raise CheckpointError("not a Keras 2 HDF5 weights file (no 'layer_names' "
                              "attribute; Keras 3 .weights.h5 is not supported)")
    budget = Budget(file_size)
    layers = []
    for name in _strings(_attr(h5py, root, "layer_names", file_size)):
        group = _resolve(h5py, f, root, name)
        if group is None:
            raise CheckpointError(f"layer '{name[:60]}' is listed but has no group")
        weights = {}
        names = _attr(h5py, group, "weight_names", file_size)
        for wname in _strings([] if names is None else names):
            leaf = wname.rsplit("/", 1)[-1].split(":", 1)[0]
            if leaf in weights:
                raise CheckpointError(f"layer '{name[:60]}' has two weights named {leaf[:60]}")
            ds = _resolve(h5py, f, group, wname)
            if ds is None:
                raise CheckpointError(f"weight '{wname[:60]}' is listed but missing")
            budget.take(check_dataset(h5py, ds, wname[:60], file_size), f"weight {wname[:60]}")
            weights[leaf] = np.asarray(ds, np.float32)
        if weights:
            layers.append((name, weights))
    return layers


def _conv(name: str, w: dict[str, np.ndarray], role: str, kernel: int | None,
          in_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Checks one Conv2D layer (kernel HWIO, bias) against the role it must play."""
    if set(w) != {"kernel", "bias"} or w["kernel"].ndim != 4:
        shapes = {k: v.shape for k, v in w.items()}
        raise CheckpointError(f"unknown layer layout: layer '{name}' ({role}) has weights "
                              f"{shapes}, expected a Conv2D kernel [k, k, in, out] and bias")
    k, b = w["kernel"], w["bias"]
    kh, kw, cin, cout = k.shape
    if kh != kw or (kernel is not None and kh != kernel):
        raise CheckpointError(f"unknown layer layout: layer '{name}' ({role}) has a {kh}x{kw} "
                              f"kernel, expected {kernel or 'square'}")
    if cin != in_channels:
        raise CheckpointError(f"unknown layer layout: layer '{name}' ({role}) takes {cin} "
                              f"channels, the previous layer gives {in_channels}")
    if b.shape != (cout,):
        raise CheckpointError(f"layer '{name}' bias has shape {b.shape}, expected ({cout},)")
    return k, b


def parse_layers(layers: list[tuple[str, dict[str, np.ndarray]]], in_channels: int = 3
                 ) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """Weighted Keras layers -> (geometry, backbone params, head params).

    Returns:
      geometry: ``{'blocks', 'fc_width', 'input_size', 'in_channels'}`` for VGGFaceConfig;
      backbone: ``{'conv1_1': {'kernel', 'bias'}, ..., 'fc6': .., 'fc7': ..}``;
      head: ``{'kernel': [1, 1, fc_width, K], 'bias': [K]}``.

    Raises:
      CheckpointError: the layers are not a VGG-Face network with one 1x1 head.
    """
    if len(layers) != _NUM_WEIGHTED:
        names = ", ".join(n for n, _ in layers[:4]) + (" ..." if len(layers) > 4 else "")
        raise CheckpointError(f"unknown layer layout: {len(layers)} layers with weights "
                              f"({names}); a DeepFace VGG-Face model has {_NUM_WEIGHTED} "
                              "(13 3x3 convs, fc6, fc7, head)")
    backbone: dict[str, dict[str, np.ndarray]] = {}
    blocks = []
    it = iter(layers)
    ch = in_channels
    for b, n in enumerate(_BLOCK_LENGTHS):
        widths = []
        for i in range(n):
            name, w = next(it)
            k, bias = _conv(name, w, f"conv{b + 1}_{i + 1}", 3, ch)
            backbone[f"conv{b + 1}_{i + 1}"] = {"kernel": k, "bias": bias}
            ch = k.shape[-1]
            widths.append(int(ch))
        blocks.append(tuple(widths))
    name, w = next(it)
    k, bias = _conv(name, w, "fc6", None, ch)
    backbone["fc6"] = {"kernel": k, "bias": bias}
    fc6_kernel, fc_width = int(k.shape[0]), int(k.shape[-1])
    name, w = next(it)
    k, bias = _conv(name, w, "fc7", 1, fc_width)
    if k.shape[-1] != fc_width:
        raise CheckpointError(f"unknown layer layout: fc7 ('{name}') has {k.shape[-1]} "
                              f"outputs, fc6 has {fc_width}")
    backbone["fc7"] = {"kernel": k, "bias": bias}
    name, w = next(it)
    k, bias = _conv(name, w, "head", 1, fc_width)
    geometry = {"blocks": tuple(blocks), "fc_width": fc_width,
                "input_size": fc6_kernel * 2 ** len(_BLOCK_LENGTHS), "in_channels": in_channels}
    return geometry, backbone, {"kernel": k, "bias": bias}


def _same(a: dict, b: dict) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        x.shape == y.shape and np.array_equal(x, y) for x, y in zip(la, lb))


def read_deepface(paths: list[str]) -> tuple[vggface.VGGFaceConfig, dict]:
    """Reads one to three DeepFace .h5 files (race / gender / age) into one model.

    Heads are ordered race, gender, age whatever the order of ``paths``. Heads whose
    backbone weights are bit-identical share one backbone.

    Returns:
      (config, params) with params a nested dict shaped like the module state.

    Raises:
      CheckpointError: unknown layout, an unknown or repeated head, or backbones of
        different geometry.
    """
    if not paths:
        raise CheckpointError("no DeepFace .h5 file given")
    by_size = {size: name for name, size in DEEPFACE_HEAD_SIZES.items()}
    found: dict[str, tuple[str, dict, dict, dict]] = {}
    for path in paths:
        try:
            geometry, backbone, head = parse_layers(read_layers(path))
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        size = int(head["bias"].shape[0])
        if size not in by_size:
            known = ", ".join(f"{n} ({s})" for n, s in DEEPFACE_HEAD_SIZES.items())
            raise CheckpointError(f"{path}: head has {size} outputs; DeepFace heads are {known}")
        name = by_size[size]
        if name in found:
            raise CheckpointError(f"two {name} models given ({found[name][0]}, {path})")
        found[name] = (path, geometry, backbone, head)
    heads = tuple(n for n in DEEPFACE_HEAD_SIZES if n in found)
    geometry = found[heads[0]][1]
    for h in heads[1:]:
        if found[h][1] != geometry:
            raise CheckpointError(f"backbones differ in shape: {found[heads[0]][0]} has "
                                  f"{geometry}, {found[h][0]} has {found[h][1]}")
    backbones: list[dict] = []
    head_backbone = []
    for h in heads:
        bb = found[h][2]
        idx = next((i for i, other in enumerate(backbones) if _same(bb, other)), None)
        if idx is None:
            backbones.append(bb)
            idx = len(backbones) - 1
        head_backbone.append(idx)
    cfg = vggface.VGGFaceConfig(
        blocks=geometry["blocks"], fc_width=geometry["fc_width"],
        input_size=geometry["input_size"], in_channels=geometry["in_channels"], heads=heads,
        head_sizes=tuple(DEEPFACE_HEAD_SIZES[h] for h in heads),
        head_backbone=tuple(head_backbone))
    params = {"backbones": dict(enumerate(backbones))}
    params.update({h: found[h][3] for h in heads})
    _check_tree(cfg, params)
    return cfg, params


def _check_tree(cfg: vggface.VGGFaceConfig, params: dict) -> None:
    """Fails unless ``params`` has exactly the module state's keys and shapes."""
    _, abstract = vggface.abstract(cfg)
    want = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(abstract))[0]
    have = jax.tree_util.tree_flatten_with_path(params)[0]
    want_shapes = {jax.tree_util.keystr(p): tuple(x.shape) for p, x in want}
    have_shapes = {jax.tree_util.keystr(p): tuple(x.shape) for p, x in have}
    if want_shapes != have_shapes:
        diff = sorted(set(want_shapes.items()) ^ set(have_shapes.items()))
        raise CheckpointError(f"weights do not fit the architecture: {diff[:3]}")
