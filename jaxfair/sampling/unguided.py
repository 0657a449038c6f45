"""Unguided sampling: N images from the generator's prior, written to a folder atomically.

Output (``workdir``): ``images/NNNNNN.png`` (or .jpg), ``latents.npy`` (z, float32 [N, z_dim]),
``contact_sheet.png`` (first 64 images) and ``summary.json``. Every image is a pure function
of (generator weights, seed, index): batch b uses ``fold_in(key(seed), b)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import jaxfair
from jaxfair import atomic
from jaxfair import images as imlib
from jaxfair.models import stylegan2 as sg


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the first bad setting."""
    if config.num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {config.num_images}")
    if config.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
    if config.noise_mode not in sg.NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {sg.NOISE_MODES}, got "
                         f"{config.noise_mode!r}")
    if config.image_format not in imlib.FORMATS:
        raise ValueError(f"image_format must be one of {imlib.FORMATS}, got "
                         f"{config.image_format!r}")
    if not 0 <= config.truncation_psi <= 2:
        raise ValueError(f"truncation_psi must be in [0, 2], got {config.truncation_psi}")


def make_render_fn(G: sg.Generator, batch_size: int, psi: float, noise_mode: str
                   ) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """Jitted ``key -> (z [B, z_dim], uint8 images [B, H, W, 3])``; weights are arguments."""

    @jax.jit
    def render(state, key):
        kz, kn = jax.random.split(key)
        z = jax.random.normal(kz, (batch_size, G.config.z_dim))
        ws = sg.mapping(G.graphdef, state, z, psi)
        img = sg.synthesis(G.graphdef, state, ws, noise_mode,
                           kn if noise_mode == "random" else None)
        return z, imlib.to_uint8(img)

    return lambda key: render(G.state, key)


def run(config: ml_collections.ConfigDict, workdir: str,
        log: Callable[[str], None] = print) -> dict:
    """Renders ``config.num_images`` images into ``workdir`` (which must not exist or be empty).

    Returns:
      The summary written to ``summary.json``.
    """
    validate(config)
    atomic.check_empty(workdir, "workdir")
    G = jaxfair.load_generator(config.generator)
    render = make_render_fn(G, config.batch_size, config.truncation_psi, config.noise_mode)
    with atomic.directory(workdir, "workdir") as tmp:
        os.makedirs(os.path.join(tmp, "images"))
        key = jax.random.key(config.seed)
        zs, first = [], []
        n_batches = -(-config.num_images // config.batch_size)
        done = 0
        for b in range(n_batches):
            z, img = render(jax.random.fold_in(key, b))
            take = min(config.batch_size, config.num_images - done)
            z, img = np.asarray(z)[:take], np.asarray(img)[:take]
            for i, im in enumerate(img):
                name = f"{done + i:06d}.{config.image_format}"
                with open(os.path.join(tmp, "images", name), "wb") as f:
                    f.write(imlib.encode(im, config.image_format))
            zs.append(z)
            if len(first) < 64:
                first.extend(img[:64 - len(first)])
            done += take
            log(f"rendered {done}/{config.num_images} images")
        np.save(os.path.join(tmp, "latents.npy"), np.concatenate(zs).astype(np.float32))
        sheet = imlib.contact_sheet(np.stack(first), cols=8)
        with open(os.path.join(tmp, "contact_sheet.png"), "wb") as f:
            f.write(imlib.encode(sheet))
        summary = {"num_images": done, "generator": config.generator,
                   "generator_source": G.meta.get("source", {}),
                   "resolution": G.config.img_resolution, "seed": config.seed,
                   "truncation_psi": config.truncation_psi, "noise_mode": config.noise_mode,
                   "jaxfair_version": jaxfair.__version__,
                   "config": json.loads(config.to_json())}
        with open(os.path.join(tmp, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    return summary


def device_summary() -> str:
    return ", ".join(f"{d.platform}:{d.id}" for d in jax.devices()) + \
        f" (default float {jnp.zeros(()).dtype})"
