"""Loading models by path: a converted jaxfair directory, or a source file converted in memory."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
from flax import nnx

from jaxfair import checkpoints
from jaxfair.models import stylegan2 as sg


def generator_from_params(cfg: sg.StyleGAN2Config, params: dict, meta: dict | None = None
                          ) -> sg.Generator:
    """Builds a Generator from a nested dict of arrays shaped like the module state."""
    graphdef, state = sg.abstract(cfg)
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
    return sg.Generator(cfg, graphdef, state, meta)


def load_generator(path: str) -> sg.Generator:
    """Loads a StyleGAN2 generator.

    Args:
      path: a directory written by ``python -m jaxfair.convert`` (or ``checkpoints.save``), or
        an NVIDIA ``.pkl`` / rosinality ``.pt`` file, converted in memory (nothing written).

    Returns:
      A ``Generator`` with ``.mapping``, ``.synthesis`` and ``__call__``.
    """
    if os.path.isdir(path):
        meta = checkpoints.read_meta(path)
        if meta["kind"] != "stylegan2":
            raise checkpoints.CheckpointDirError(
                f"{path} holds a {meta['kind']!r} checkpoint, not a StyleGAN2 generator")
        cfg = sg.StyleGAN2Config.from_dict(meta["config"])
        _, abstract = sg.abstract(cfg)
        _, params = checkpoints.load(path, abstract.to_pure_dict())
        return generator_from_params(cfg, params, meta)
    from jaxfair.convert import formats
    from jaxfair.convert.torch_pickle import CheckpointError

    try:
        conv = formats.read(path)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return generator_from_params(conv.config, conv.params, conv.meta())
