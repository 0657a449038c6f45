"""torchvision ResNet state dicts (FairFace ``.pt``) -> jaxfair ResNet state.

``from_state_dict`` infers the architecture (stem width, blocks per stage, stage widths, head
size) from tensor shapes; ``to_params`` transposes into the module's nested state
(conv OIHW -> HWIO, fc ``[out, in]`` -> ``[in, out]``), failing on any missing, extra or
mis-shaped key. BatchNorm ``num_batches_tracked`` counters (training bookkeeping) are dropped
by name; a BatchNorm without ``running_mean``/``running_var`` is refused, since inference
needs the statistics.
"""

from __future__ import annotations

import re

import numpy as np
from flax import nnx

from jaxfair.convert.assign import assign, shorten
from jaxfair.convert.guard import CheckpointError, describe
from jaxfair.models import resnet

_BN_STATS = ("running_mean", "running_var")


def is_resnet_state_dict(obj: object) -> bool:
    """True for a dict that looks like a torchvision ResNet state dict."""
    if not isinstance(obj, dict):
        return False
    keys = {_strip_module(k) for k in obj if isinstance(k, str)}
    return {"conv1.weight", "fc.weight"} <= keys and any(k.startswith("layer1.") for k in keys)


def _strip_module(key: str) -> str:
    # Models saved from nn.DataParallel prefix every key with 'module.'.
    return key[len("module."):] if key.startswith("module.") else key


def from_state_dict(sd: dict) -> tuple[resnet.ResNetConfig, dict[str, np.ndarray]]:
    """Reads a torchvision basic-block ResNet state dict.

    Returns:
      (config, flat) with ``flat`` mapping torchvision keys to arrays in torch layouts,
      ``num_batches_tracked`` removed.

    Raises:
      CheckpointError: not a basic-block ResNet, or BatchNorm statistics missing.
    """
    if not is_resnet_state_dict(sd):
        raise CheckpointError("not a torchvision ResNet state dict (no conv1/layer1/fc keys)")
    flat: dict[str, np.ndarray] = {}
    for k, v in sd.items():
        # 0-d tensors (num_batches_tracked) arrive as numpy scalars.
        if not isinstance(k, str) or not isinstance(v, (np.ndarray, np.generic)):
            raise CheckpointError(f"state dict entry {describe(k)} is not a tensor")
        k = _strip_module(k)
        if k.endswith(".num_batches_tracked"):
            continue
        flat[k] = np.asarray(v)
    if any(re.match(r"layer\d+\.\d+\.conv3\.", k) for k in flat):
        raise CheckpointError("bottleneck ResNet (conv3 in blocks: ResNet-50/101/152) is not "
                              "supported; basic-block ResNets (18/34) only")

    bn_prefixes = sorted({k.rsplit(".", 1)[0] for k in flat
                          if k.endswith((".bias", ".running_mean", ".running_var"))
                          and re.search(r"(^|\.)(bn\d|downsample\.1)\.", k + ".")})
    missing = [f"{p}.{s}" for p in bn_prefixes for s in _BN_STATS if f"{p}.{s}" not in flat]
    if missing:
        raise CheckpointError(f"missing BatchNorm statistics: {shorten(missing)} (inference "
                              "needs running_mean and running_var)")

    def shape(key: str, ndim: int) -> tuple[int, ...]:
        if key not in flat:
            raise CheckpointError(f"missing key '{key}'")
        if flat[key].ndim != ndim:
            raise CheckpointError(f"'{key}' has shape {flat[key].shape}, expected {ndim}-D")
        return flat[key].shape

    stem = shape("conv1.weight", 4)
    if stem[2:] != (7, 7):
        raise CheckpointError(f"stem conv1 kernel is {stem[2:]}, expected 7x7")
    stage_sizes, widths = [], []
    while f"layer{len(stage_sizes) + 1}.0.conv1.weight" in flat:
        s = len(stage_sizes) + 1
        n = 0
        while f"layer{s}.{n}.conv1.weight" in flat:
            n += 1
        stage_sizes.append(n)
        widths.append(int(shape(f"layer{s}.0.conv2.weight", 4)[0]))
    fc = shape("fc.weight", 2)
    cfg = resnet.ResNetConfig(stage_sizes=tuple(stage_sizes), widths=tuple(widths),
                              stem_width=int(stem[0]), num_outputs=int(fc[0]),
                              in_channels=int(stem[1]))
    return cfg, flat


def to_params(cfg: resnet.ResNetConfig, flat: dict[str, np.ndarray]) -> dict:
    """Assigns torchvision-keyed arrays to the module's state (nested dict, JAX layouts).

    Raises:
      CheckpointError: on missing keys, unexpected keys or shape mismatches.
    """
    _, abstract = resnet.abstract(cfg)
    return assign(nnx.to_pure_dict(abstract), flat)
