r"""jaxfair's generator against NVIDIA's on the same device: ``python -m jaxfair.peer``.

  python -m jaxfair.peer --official_src=/tmp/sg2ada --models=ffhq256,ffhq1024 --batches=1,8

Builds random weights in the real architectures (FFHQ-256 'paper256', FFHQ-1024 config-f),
exports them to the state of NVIDIA's stylegan2-ada-pytorch ``training.networks.Generator``
(imported from ``--official_src`` only when asked; torch is optional and never vendored),
and runs z -> image on both sides interleaved in one process (inference, const noise,
truncation psi 0.7): img/s on each side and their ratio, the max abs difference of the
images, XLA's executed FLOP per image of ``mapping`` and ``synthesis`` against the
architecture's count, and the fraction of this device's float32 matmul
peak reached (``roofline.matmul_peak``, measured once per round, the best kept).

The architectural count and its convention: ``models.stylegan2.architecture_flops``.
"""

from __future__ import annotations

import importlib
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from flax import nnx

from jaxfair import cli, keys, roofline
from jaxfair.convert.assign import flatten, torch_layout_perm
from jaxfair.models import stylegan2 as sg

PROG = "jaxfair.peer"
PRESETS = {"ffhq256": sg.StyleGAN2Config.ffhq_256, "ffhq1024": sg.StyleGAN2Config.ffhq_1024}
PSI = 0.7


def executed_flops(G: sg.Generator, batch: int) -> dict[str, float]:
    """XLA's cost analysis of the compiled ``mapping`` and ``synthesis``, FLOP per image."""
    z = jax.ShapeDtypeStruct((batch, G.config.z_dim), jnp.float32)
    ws = jax.ShapeDtypeStruct((batch, G.config.num_ws, G.config.w_dim), jnp.float32)

    mapping = roofline.compiled_flops(lambda s, z: sg.mapping(G.graphdef, s, z, PSI), G.state, z)
    synthesis = roofline.compiled_flops(lambda s, ws: sg.synthesis(G.graphdef, s, ws), G.state,
                                        ws)
    return {"mapping": mapping / batch, "synthesis": synthesis / batch}


def random_generator(cfg: sg.StyleGAN2Config, key: jax.Array) -> sg.Generator:
    """Official init, plus what the init leaves at zero made random (w_avg, biases, noise
    strengths) so that every term of the forward pass is exercised by a comparison."""
    graphdef, state = sg.init(cfg, key)
    flat = flatten(nnx.to_pure_dict(state))
    leaf_keys = jax.random.split(jax.random.fold_in(key, 1), len(flat))
    for kk, (name, x) in zip(leaf_keys, sorted(flat.items())):
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("w_avg", "noise_strength") or (leaf == "bias" and "affine" not in name):
            flat[name] = 0.1 * keys.normal(kk, x.shape, x.dtype)
    nnx.replace_by_pure_dict(state, _unflatten(flat))
    return sg.Generator(cfg, graphdef, state)


def _unflatten(flat: dict) -> dict:
    out: dict = {}
    for name, v in flat.items():
        *path, leaf = name.split(".")
        d = out
        for p in path:
            d = d.setdefault(p, {})
        d[leaf] = v
    return out


def to_official_state(G: sg.Generator) -> dict[str, np.ndarray]:
    """jaxfair state -> NVIDIA ``Generator.state_dict()`` arrays (torch layouts, float32).

    The inverse of the importer's transposes (``convert.assign.torch_layout_perm``); the
    constant ``resample_filter`` buffers are not part of it (the official modules make them).
    """
    out = {}
    for name, x in flatten(nnx.to_pure_dict(sg.stored_weights(G.state))).items():
        x = np.asarray(x, np.float32)
        perm = torch_layout_perm(name, x.ndim)
        out[name] = x if perm is None else np.ascontiguousarray(
            x.transpose(np.argsort(perm)))
    return out


def official_kwargs(cfg: sg.StyleGAN2Config) -> dict:
    """``training.networks.Generator`` arguments of the same architecture (float32 layers:
    jaxfair computes in float32, and the official code forces float32 on CPU anyway)."""
    c = cfg.channels
    return dict(z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
                img_channels=cfg.img_channels,
                mapping_kwargs=dict(num_layers=cfg.mapping_layers,
                                    layer_features=cfg.mapping_features,
                                    lr_multiplier=cfg.mapping_lr_mul),
                synthesis_kwargs=dict(channel_base=c[-1] * cfg.img_resolution, channel_max=max(c),
                                      num_fp16_res=0, conv_clamp=cfg.conv_clamp,
                                      resample_filter=list(cfg.resample_filter)))


def official_generator(cfg: sg.StyleGAN2Config, state: dict[str, np.ndarray],
                       official_src: str):
    """NVIDIA's Generator (from ``official_src``, a stylegan2-ada-pytorch checkout) holding
    ``state``; fails unless every key but the constant filters matches (shapes included:
    ``load_state_dict`` refuses a size mismatch)."""
    import torch
    if official_src not in sys.path:
        sys.path.insert(0, official_src)
    networks = importlib.import_module("training.networks")
    G = networks.Generator(**official_kwargs(cfg)).eval().requires_grad_(False)
    missing, extra = G.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()},
                                       strict=False)
    missing = [k for k in missing if not k.endswith("resample_filter")]
    if missing or extra:
        raise ValueError(f"state mismatch: missing {missing[:5]}, unexpected {extra[:5]}")
    return G


def _timed(step) -> float:
    t = time.perf_counter()
    step()
    return time.perf_counter() - t


def compare(name: str, batches: list[int], official_src: str | None, rounds: int = 3,
            seed: int = 0) -> list[dict]:
    """One model, every batch size: jaxfair and (if ``official_src``) NVIDIA interleaved.

    Each round times, per batch size, one call of each side and one matmul; per side the
    best and median round are kept. Returns one row per batch size.
    """
    cfg = PRESETS[name]()
    G = random_generator(cfg, jax.random.key(seed))
    arch = sg.architecture_flops(cfg)
    gen = jax.jit(lambda s, z: sg.synthesis(G.graphdef, s, sg.mapping(G.graphdef, s, z, PSI)))
    Gt = None
    if official_src:
        import torch
        Gt = official_generator(cfg, to_official_state(G), official_src)
    rows = []
    for b in batches:
        z = np.asarray(jax.random.normal(jax.random.key(seed + b), (b, cfg.z_dim)))
        steps = {"jaxfair": lambda z=z: gen(G.state, z).block_until_ready()}
        img = np.asarray(gen(G.state, z))
        row = {"model": name, "batch": b, "arch_gflop": arch["synthesis"] / 1e9,
               "arch_mapping_gflop": arch["mapping"] / 1e9}
        ex = executed_flops(G, b)
        row |= {"exec_gflop": ex["synthesis"] / 1e9, "exec_mapping_gflop": ex["mapping"] / 1e9,
                "flop_ratio": ex["synthesis"] / arch["synthesis"]}
        if Gt is not None:
            zt = torch.from_numpy(z)

            def official(zt=zt):
                with torch.inference_mode():
                    return Gt(zt, None, truncation_psi=PSI, noise_mode="const",
                              force_fp32=True)

            ref = official().numpy().transpose(0, 2, 3, 1)
            row["max_abs_diff"] = float(np.abs(ref - img).max())
            row["max_abs_official"] = float(np.abs(ref).max())
            steps["official"] = official
        times: dict[str, list[float]] = {k: [] for k in steps}
        peak = 0.0
        for _ in range(rounds):
            for k, step in steps.items():
                times[k].append(_timed(step))
            peak = max(peak, roofline.matmul_peak() * 1e9)
        for k in ("jaxfair", "official"):
            if k in times:
                row[f"{k}_img_s"] = b / min(times[k])
                row[f"{k}_img_s_median"] = b / float(np.median(times[k]))
        row["matmul_gflop_s"] = peak / 1e9
        total = (ex["synthesis"] + ex["mapping"]) * row["jaxfair_img_s"]
        row["jaxfair_peak_fraction"] = total / peak
        if Gt is not None:
            row["ratio"] = row["jaxfair_img_s"] / row["official_img_s"]
            row["official_peak_fraction"] = (arch["synthesis"] + arch["mapping"]) * row[
                "official_img_s"] / peak
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def best_batches(rows: list[dict]) -> list[dict]:
    """Per model: each side's best img/s over batch sizes, and their ratio."""
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == name]
        best = {"model": name}
        for k in ("jaxfair", "official"):
            if f"{k}_img_s" in rs[0]:
                r = max(rs, key=lambda r, k=k: r[f"{k}_img_s"])
                best[f"{k}_img_s"], best[f"{k}_batch"] = r[f"{k}_img_s"], r["batch"]
        if "official_img_s" in best:
            best["ratio"] = best["jaxfair_img_s"] / best["official_img_s"]
        out.append(best)
    return out


def table(rows: list[dict]) -> str:
    """Markdown table of ``compare`` rows."""
    head = ("| model | batch | official img/s | jaxfair img/s | ratio | synthesis GFLOP/img "
            "executed / architectural | % matmul peak (jaxfair, official) | max abs diff |\n"
            "|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        def g(k, fmt="{:.3f}", r=r):
            return fmt.format(r[k]) if k in r else "-"
        lines.append(
            f"| {r['model']} | {r['batch']} | {g('official_img_s')} | {g('jaxfair_img_s')} | "
            f"{g('ratio', '{:.2f}x')} | {r['exec_gflop']:.1f} / {r['arch_gflop']:.1f} "
            f"({r['flop_ratio']:.3f}) | {100 * r['jaxfair_peak_fraction']:.0f} %, "
            f"{g('official_peak_fraction', '{:.0%}')} | {g('max_abs_diff', '{:.1e}')} |")
    return head + "\n".join(lines)


def define_flags() -> dict:
    """This entry point's flags, defined when it runs (importing the module defines none, so
    it imports beside other entry points)."""
    return {
        "official_src": flags.DEFINE_string(
            "official_src", None, "A stylegan2-ada-pytorch checkout (its training/, "
            "torch_utils/, dnnlib/); without it jaxfair runs alone."),
        "models": flags.DEFINE_list("models", ["ffhq256", "ffhq1024"],
                                    "Models: ffhq256, ffhq1024."),
        "batches": flags.DEFINE_list("batches", ["1", "8"], "Batch sizes."),
        "rounds": flags.DEFINE_integer("rounds", 3,
                                       "Interleaved timing rounds per batch size."),
        "out": flags.DEFINE_string("out", None, "Write the rows as JSON here."),
    }


def main(f: dict):
    models = f["models"].value
    bad = [m for m in models if m not in PRESETS]
    if bad:
        cli.fail(PROG, f"unknown --models {bad}; choose from {list(PRESETS)}")
    try:
        batches = [int(b) for b in f["batches"].value]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        cli.fail(PROG, f"--batches must be positive integers, got {f['batches'].value}")
    print(f"devices: {jax.devices()}", flush=True)
    rows = []
    for m in models:
        rows += compare(m, batches, f["official_src"].value, f["rounds"].value)
    print(table(rows))
    best = best_batches(rows)
    print(json.dumps(best))
    if f["out"].value:
        with open(f["out"].value, "w") as fh:
            json.dump({"rows": rows, "best": best, "devices": str(jax.devices()),
                       "matmul_sizes": list(roofline.SIZES), "psi": PSI,
                       "noise_mode": "const"}, fh, indent=1)


if __name__ == "__main__":
    _flags = define_flags()
    cli.run(lambda: main(_flags), PROG)
