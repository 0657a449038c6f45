"""StyleGAN2 generator import: NVIDIA pickles and rosinality ``.pt`` files -> jaxfair state.

Both readers produce ``(StyleGAN2Config, flat)`` where ``flat`` maps NVIDIA ``G_ema`` state
dict keys (``synthesis.b8.conv0.affine.weight``) to arrays in NVIDIA layouts; ``to_params``
then transposes into the module's nested state, failing on any missing, extra or
mis-shaped key. Every architecture setting is read from the file; settings jaxfair does not
implement (conditioning, non-'skip' architectures, other activations) are refused by name.
"""

from __future__ import annotations

import math

import numpy as np
from flax import nnx

from jaxfair.convert.assign import assign
from jaxfair.convert.guard import CheckpointError, describe
from jaxfair.convert.safe_types import PersistentObj
from jaxfair.models import stylegan2 as sg

_MAX_MODULE_DEPTH = 16  # Generator > SynthesisNetwork > block > layer > affine is 5


def _flat_state(obj: PersistentObj, prefix: str = "", depth: int = 0
                ) -> dict[str, np.ndarray]:
    if depth > _MAX_MODULE_DEPTH:
        raise CheckpointError(f"modules nested more than {_MAX_MODULE_DEPTH} deep (a cycle?)")
    out = {}
    for group in ("_parameters", "_buffers"):
        for name, value in obj.state[group].items():
            if not isinstance(name, str):
                raise CheckpointError(f"{prefix}{group} has a {describe(name)} key")
            if value is not None:
                if not isinstance(value, (np.ndarray, np.generic)):
                    raise CheckpointError(f"{prefix}{name} is {describe(value)}, not a tensor")
                out[prefix + name] = np.asarray(value)
    for name, child in obj.state["_modules"].items():
        if not isinstance(name, str) or not isinstance(child, PersistentObj):
            raise CheckpointError(f"submodule {prefix}{describe(name)} is not an official "
                                  "network module")
        out.update(_flat_state(child, f"{prefix}{name}.", depth + 1))
    return out


def _child(obj: PersistentObj, name: str) -> PersistentObj:
    child = obj.state["_modules"].get(name)
    if not isinstance(child, PersistentObj):
        raise CheckpointError(f"{obj.class_name} has no submodule '{name}'")
    return child


def _tensor(obj: PersistentObj, name: str, group: str = "_parameters") -> np.ndarray:
    value = obj.state[group].get(name)
    if not isinstance(value, np.ndarray):
        raise CheckpointError(f"{obj.class_name} has no tensor {group[1:]}.{name}")
    return value


def _number(obj: PersistentObj, key: str, default=None):
    """A numeric attribute (int, float or numpy scalar; bools count as numbers)."""
    value = obj.state.get(key, default)
    if value is default:
        return value
    if not isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
        raise CheckpointError(f"{obj.class_name}.{key} is {describe(value)}, expected a number")
    return value.item() if isinstance(value, np.generic) else value


def _text(obj: PersistentObj, key: str, default: str) -> str:
    value = obj.state.get(key, default)
    if not isinstance(value, str):
        raise CheckpointError(f"{obj.class_name}.{key} is {describe(value)}, expected a string")
    return value


def _show(value) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(describe(v) for v in value[:8]) + (", ...)" if len(value) > 8
                                                                  else ")")
    return describe(value)


def _uniform(values: list, what: str):
    """The one value all layers share. Values are primitives or tuples of floats (checked by
    the callers), so comparing them is cheap whatever the file holds."""
    distinct = []
    for v in values:
        if not any(type(v) is type(d) and v == d for d in distinct):
            distinct.append(v)
            if len(distinct) > 4:
                break
    if len(distinct) != 1:
        raise CheckpointError(f"{what} differs between layers ({', '.join(map(_show, distinct))}"
                              "); jaxfair supports one value per network")
    return values[0]


def _filter_taps(f2d: np.ndarray, where: str) -> tuple[float, ...]:
    """1-D taps of a separable, normalised 2-D FIR filter (as NVIDIA stores it)."""
    f2d = np.asarray(f2d, np.float64)
    taps = f2d.sum(axis=0)
    if f2d.ndim != 2 or not np.allclose(np.outer(taps, taps) / taps.sum() ** 2,
                                        f2d / f2d.sum(), atol=1e-7):
        raise CheckpointError(f"{where}: resample filter is not separable")
    taps = taps / taps.min()
    return tuple(float(round(t, 6)) for t in taps)


def from_nvidia(top: object) -> tuple[sg.StyleGAN2Config, dict[str, np.ndarray]]:
    """Reads ``G_ema`` from an NVIDIA stylegan2-ada-pytorch / stylegan3 pickle."""
    if not isinstance(top, dict) or "G_ema" not in top:
        raise CheckpointError("NVIDIA pickle has no 'G_ema' network")
    g = top["G_ema"]
    if not isinstance(g, PersistentObj):
        raise CheckpointError("'G_ema' is not a persistent network object")
    if g.class_name != "Generator":
        raise CheckpointError(f"'G_ema' is a {g.class_name}, not a StyleGAN2 Generator")
    c_dim = _number(g, "c_dim", 0)
    if c_dim:
        raise CheckpointError(f"conditional generators (c_dim={describe(c_dim)}) are not "
                              "supported")
    mapping, synthesis = _child(g, "mapping"), _child(g, "synthesis")
    if synthesis.class_name != "SynthesisNetwork" or "block_resolutions" not in synthesis.state:
        raise CheckpointError(f"synthesis network {synthesis.class_name} is not StyleGAN2's "
                              "(StyleGAN3 generators are not supported)")

    names = list(mapping.state["_modules"])
    if not all(isinstance(k, str) and (k == "embed" or k.startswith("fc")) for k in names):
        raise CheckpointError("mapping network has unexpected submodules")
    fcs = [_child(mapping, k) for k in names if k.startswith("fc")]
    if not fcs:
        raise CheckpointError("mapping network has no fc layers")
    acts = [_text(fc, "activation", "linear") for fc in fcs]
    if _uniform(acts, "mapping activation") != "lrelu":
        raise CheckpointError(f"mapping activation {describe(acts[0])} is not supported "
                              "(lrelu only)")
    lr_mul = float(_uniform([float(_number(fc, "bias_gain", 1.0)) for fc in fcs],
                            "mapping lr_mul"))
    fc_w = [_tensor(fc, "weight") for fc in fcs]
    for fc, w in zip(fcs, fc_w):
        if w.ndim != 2 or w.shape[1] == 0:
            raise CheckpointError(f"mapping weight has shape {w.shape}, expected [out, in]")
        expect = lr_mul / math.sqrt(w.shape[1])
        if not math.isclose(float(_number(fc, "weight_gain", 1.0)), expect, rel_tol=1e-6):
            raise CheckpointError("mapping weight_gain is not lr_mul / sqrt(fan_in)")

    blocks = synthesis.state["block_resolutions"]
    if type(blocks) not in (list, tuple) or not 0 < len(blocks) <= 16 or not all(
            type(r) is int and 0 < r <= 1 << 16 for r in blocks):
        raise CheckpointError("synthesis block_resolutions is not a short list of resolutions")
    blocks = list(blocks)
    layers, rgbs, channels, fp16 = [], [], [], []
    for res in blocks:
        block = _child(synthesis, f"b{res}")
        architecture = _text(block, "architecture", "skip")
        if architecture != "skip":
            raise CheckpointError(f"synthesis architecture {describe(architecture)} is not "
                                  "supported ('skip' only)")
        if _number(block, "use_fp16", False):
            fp16.append(res)
        names = ["conv1"] if res == 4 else ["conv0", "conv1"]
        for n in names:
            layer = _child(block, n)
            layers.append((res, n, layer))
        rgbs.append(_child(block, "torgb"))
        conv1 = _tensor(_child(block, "conv1"), "weight")
        if conv1.ndim != 4:
            raise CheckpointError(f"b{res}.conv1 weight has shape {conv1.shape}, expected 4-D")
        channels.append(int(conv1.shape[0]))

    for res, n, layer in layers:
        w = _tensor(layer, "weight")
        if w.shape[2:] != (3, 3):
            raise CheckpointError(f"b{res}.{n}: kernel {w.shape[2:]} is not 3x3")
        activation = _text(layer, "activation", "lrelu")
        if activation != "lrelu":
            raise CheckpointError(f"b{res}.{n}: activation {describe(activation)} not supported")
        up = _number(layer, "up", 1)
        if up != (2 if n == "conv0" else 1):
            raise CheckpointError(f"b{res}.{n}: unexpected up-sampling factor {describe(up)}")
    clamps = [_number(layer, "conv_clamp") for _, _, layer in layers]
    clamps += [_number(rgb, "conv_clamp") for rgb in rgbs]
    clamp = _uniform(clamps, "conv_clamp")
    use_noise = bool(_uniform([bool(_number(layer, "use_noise", True))
                               for _, _, layer in layers], "use_noise"))
    filters = {_filter_taps(_tensor(layer, "resample_filter", "_buffers"), f"b{res}.{n}")
               for res, n, layer in layers if "resample_filter" in layer.state["_buffers"]}
    taps = _uniform(sorted(filters), "resample_filter") if filters else (1.0, 3.0, 3.0, 1.0)

    dims = {k: _number(g, k) for k in ("z_dim", "w_dim", "img_resolution", "img_channels")}
    if not all(type(v) is int and 0 < v <= 1 << 16 for v in dims.values()):
        raise CheckpointError("Generator z_dim/w_dim/img_resolution/img_channels are not "
                              "positive integers")
    cfg = sg.StyleGAN2Config(
        z_dim=dims["z_dim"], w_dim=dims["w_dim"],
        img_resolution=dims["img_resolution"], img_channels=dims["img_channels"],
        mapping_layers=len(fcs),
        mapping_features=int(fc_w[0].shape[0]) if len(fcs) > 1 else dims["w_dim"],
        mapping_lr_mul=lr_mul, channels=tuple(channels),
        conv_clamp=None if clamp is None else float(clamp), use_noise=use_noise,
        resample_filter=tuple(taps), fp16_resolutions=tuple(fp16))
    if tuple(blocks) != cfg.block_resolutions:
        raise CheckpointError(f"block resolutions {blocks} do not match img_resolution "
                              f"{cfg.img_resolution}")
    flat = {k: v for k, v in _flat_state(g).items() if not k.endswith("resample_filter")}
    return cfg, flat


# rosinality stylegan2-pytorch -------------------------------------------------------------

def _ros_layer(sd, src: str, dst: str, flat: dict, used: set, noise: str | None):
    """Maps one rosinality StyledConv to an NVIDIA SynthesisLayer."""
    w = _take(sd, f"{src}.conv.weight", used)[0]  # [O, I, k, k]
    # rosinality scales the raw weight by 1/sqrt(fan_in) before modulating; NVIDIA does
    # not (demodulation cancels it up to the 1e-8 epsilon), so fold the scale in.
    fan_in = w.shape[1] * w.shape[2] * w.shape[3]
    flat[f"{dst}.weight"] = (w.astype(np.float64) / math.sqrt(fan_in)).astype(np.float32)
    flat[f"{dst}.affine.weight"] = _take(sd, f"{src}.conv.modulation.weight", used)
    flat[f"{dst}.affine.bias"] = _take(sd, f"{src}.conv.modulation.bias", used)
    flat[f"{dst}.bias"] = _take(sd, f"{src}.activate.bias", used)
    if f"{src}.noise.weight" in sd:
        flat[f"{dst}.noise_strength"] = _take(sd, f"{src}.noise.weight", used).reshape(())
    if noise is not None and noise in sd:
        n = _take(sd, noise, used)  # [1, 1, r, r]
        flat[f"{dst}.noise_const"] = n.reshape(n.shape[-2:])


def _take(sd, key, used):
    if key not in sd:
        raise CheckpointError(f"missing key '{key}'")
    used.add(key)
    return np.asarray(sd[key])


def from_rosinality(top: object) -> tuple[sg.StyleGAN2Config, dict[str, np.ndarray]]:
    """Reads ``g_ema`` + ``latent_avg`` from a rosinality stylegan2-pytorch checkpoint."""
    if not isinstance(top, dict) or "g_ema" not in top:
        raise CheckpointError("rosinality checkpoint has no 'g_ema' state dict")
    if top.get("latent_avg") is None:
        raise CheckpointError("rosinality checkpoint has no 'latent_avg' (needed for w_avg)")
    sd = {k: v for k, v in top["g_ema"].items()}
    used: set[str] = set()
    flat: dict[str, np.ndarray] = {"mapping.w_avg": np.asarray(top["latent_avg"]).reshape(-1)}

    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in sd:
        n_mlp += 1
        flat[f"mapping.fc{n_mlp - 1}.weight"] = _take(sd, f"style.{n_mlp}.weight", used)
        flat[f"mapping.fc{n_mlp - 1}.bias"] = _take(sd, f"style.{n_mlp}.bias", used)
    if n_mlp == 0:
        raise CheckpointError("missing key 'style.1.weight' (no mapping layers)")
    const = _take(sd, "input.input", used)
    flat["synthesis.b4.const"] = const[0]
    _ros_layer(sd, "conv1", "synthesis.b4.conv1", flat, used, "noises.noise_0")
    n_up = 0
    while f"convs.{2 * n_up}.conv.weight" in sd:
        n_up += 1
    blocks = [4] + [2 ** (j + 3) for j in range(n_up)]
    for j in range(n_up):
        res = 2 ** (j + 3)
        _ros_layer(sd, f"convs.{2 * j}", f"synthesis.b{res}.conv0", flat, used,
                   f"noises.noise_{2 * j + 1}")
        _ros_layer(sd, f"convs.{2 * j + 1}", f"synthesis.b{res}.conv1", flat, used,
                   f"noises.noise_{2 * j + 2}")
    for res, src in [(4, "to_rgb1")] + [(2 ** (j + 3), f"to_rgbs.{j}") for j in range(n_up)]:
        dst = f"synthesis.b{res}.torgb"
        flat[f"{dst}.weight"] = _take(sd, f"{src}.conv.weight", used)[0]
        flat[f"{dst}.affine.weight"] = _take(sd, f"{src}.conv.modulation.weight", used)
        flat[f"{dst}.affine.bias"] = _take(sd, f"{src}.conv.modulation.bias", used)
        flat[f"{dst}.bias"] = _take(sd, f"{src}.bias", used).reshape(-1)

    # FIR kernels are buffers: read them to learn the filter, then account for them.
    kernels = [k for k in sd if k.endswith(("blur.kernel", "upsample.kernel"))]
    taps = {_filter_taps(np.asarray(sd[k]), k) for k in kernels}
    used.update(kernels)
    extra = sorted(set(sd) - used)
    if extra:
        raise CheckpointError(f"unexpected keys in g_ema: {', '.join(extra[:5])}"
                              + (" ..." if len(extra) > 5 else ""))
    fc0 = flat["mapping.fc0.weight"]
    cfg = sg.StyleGAN2Config(
        z_dim=int(fc0.shape[1]), w_dim=int(flat[f"mapping.fc{n_mlp - 1}.weight"].shape[0]),
        img_resolution=blocks[-1], img_channels=int(flat["synthesis.b4.torgb.bias"].shape[0]),
        mapping_layers=n_mlp, mapping_features=int(fc0.shape[0]),
        mapping_lr_mul=0.01,  # rosinality's lr_mlp default; it is not stored in the file
        channels=tuple(int(flat[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in blocks),
        conv_clamp=None, use_noise="synthesis.b4.conv1.noise_strength" in flat,
        resample_filter=_uniform(sorted(taps), "blur kernel") if taps else (1.0, 3.0, 3.0, 1.0))
    return cfg, flat


# NVIDIA flat layout -> module state ---------------------------------------------------------

def to_params(cfg: sg.StyleGAN2Config, flat: dict[str, np.ndarray]) -> dict:
    """Assigns NVIDIA-keyed arrays to the module's state (nested dict, JAX layouts).

    Raises:
      CheckpointError: on missing keys, unexpected keys or shape mismatches.
    """
    _, abstract = sg.abstract(cfg)
    return assign(nnx.to_pure_dict(abstract), flat)
