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

import jax
import numpy as np
from flax import nnx

from jaxfair.convert.torch_pickle import CheckpointError
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


def _strings(values) -> list[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in np.asarray(values)
            .reshape(-1)]


def read_layers(path: str) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Layers with weights, in model order: ``[(layer_name, {'kernel': .., 'bias': ..}), ...]``.

    Weight names are reduced to their last component without the ``:0`` suffix.

    Raises:
      CheckpointError: not a Keras 2 HDF5 weights file, or unreadable.
    """
    try:
        import h5py
    except ImportError:
        raise CheckpointError("reading .h5 files needs h5py (pip install h5py)") from None
    try:
        with h5py.File(path, "r") as f:
            root = f.get("model_weights", f)  # model.save() nests the weights here
            if "layer_names" not in root.attrs:
                raise CheckpointError("not a Keras 2 HDF5 weights file (no 'layer_names' "
                                      "attribute; Keras 3 .weights.h5 is not supported)")
            layers = []
            for name in _strings(root.attrs["layer_names"]):
                if name not in root:
                    raise CheckpointError(f"layer '{name}' is listed but has no group")
                group = root[name]
                weights = {}
                for wname in _strings(group.attrs.get("weight_names", [])):
                    leaf = wname.rsplit("/", 1)[-1].split(":", 1)[0]
                    if leaf in weights:
                        raise CheckpointError(f"layer '{name}' has two weights named {leaf}")
                    weights[leaf] = np.asarray(group[wname], np.float32)
                if weights:
                    layers.append((name, weights))
            return layers
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"cannot read HDF5 file ({type(e).__name__}: {e})") from None


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
