"""Is a group's faces distributed like the generator's own faces of that group?

Demo world (exact): the generator draws ``world`` factors ``u = factors_from_latent(z)``,
independent and uniform; a group constrains a few of them (tone, hair) and leaves the
others uniform within the group. For a dataset's z of one group, the mean over the free
factors of the Kolmogorov-Smirnov distance from U(0, 1), divided by the same mean for n
independent uniform draws (what binned rejection sampling gives in expectation: the noise
floor at that n), is the *KS ratio*: ~1 for a faithful sampler, larger for one that
clusters (near-copies around a few search optima).

For a dataset (``jaxfair.dataset.reader.Dataset``) of the demo generator that kept z,
``demo_groups`` gives both per group; for any generator, ``jaxfair.report.reference``
compares each group with an unguided sample instead (no ground truth needed).

Example:
  r = demo_ks_ratio(z_of_group, free=free_factors(("tone", "hair")))
  per_group = demo_groups(ds, {group: identity_records})   # if demo_world(ds)
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping

import numpy as np


def ks_uniform(x: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of the sample x [n] from U(0, 1)."""
    x = np.sort(np.asarray(x, np.float64))
    n = len(x)
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - x), np.max(x - (i - 1) / n)))


@functools.lru_cache(maxsize=64)
def ks_floor(n: int, reps: int = 2000, seed: int = 0) -> float:
    """Expected KS distance of n independent U(0, 1) draws from U(0, 1) (Monte Carlo)."""
    r = np.random.default_rng(seed)
    return float(np.mean([ks_uniform(r.uniform(size=n)) for _ in range(reps)]))


def free_factors(constrained: tuple[str, ...]) -> list[int]:
    """Columns of the demo world's factors that none of ``constrained`` attributes set."""
    from jaxfair.demo import world

    return [i for i, name in enumerate(world.FACTORS) if name not in constrained]


def demo_factors(z: np.ndarray) -> np.ndarray:
    """Exact world factors [n, F] of the demo generator's faces for z [n, z_dim]."""
    import jax.numpy as jnp

    from jaxfair.demo import latent

    return np.asarray(latent.factors_from_latent(jnp.asarray(z, jnp.float32)))


def demo_ks_ratio(z: np.ndarray, free: list[int]) -> float:
    """KS ratio (module docstring) of one group's z [n, z_dim] (n >= 2)."""
    u = demo_factors(z)
    ks = np.mean([ks_uniform(u[:, i]) for i in free])
    return float(ks / ks_floor(len(z)))


def demo_truth(z: np.ndarray, masks: dict[str, np.ndarray]) -> np.ndarray:
    """[n] bool: the demo world's ground-truth labels of z are in the group (masks {attr: [K]}
    of the group's target; unconstrained attributes are all-true)."""
    import jax.numpy as jnp

    from jaxfair.demo import latent

    labels = latent.labels_from_latent(jnp.asarray(z, jnp.float32))
    ok = np.ones(len(z), bool)
    for name, mask in masks.items():
        if name in labels:
            ok &= np.asarray(mask)[np.asarray(labels[name])]
    return ok


def demo_world(ds) -> bool:
    """The dataset's generator is the shipped demo generator (trained by
    ``jaxfair.demo.train``: its faces' world factors are known exactly from z) and the
    dataset kept z."""
    gen = (ds.plan.get("checkpoints") or {}).get("generator", {}).get("path")
    meta = os.path.join(gen or "", "meta.json")
    if not gen or not os.path.exists(meta):
        return False
    with open(meta) as f:
        source = json.load(f).get("source", {})
    return "jaxfair.demo.train" in str(source.get("command", "")) and any(
        os.path.exists(os.path.join(sh.path, "z.npy")) for sh in ds.shards)


def demo_group(ds, group: str, records: list[dict]) -> dict:
    """{'identities', 'ks_ratio', 'truth'} of one group's identity records (n >= 2) of a
    demo-world dataset ``ds``: the KS ratio of its free factors (1 = as binned rejection
    sampling) and its ground-truth rate."""
    z = ds.z(records)
    masks = {a: np.asarray(m) for a, m in ds.target(group).masks.items()}
    constrained = tuple(a for a, m in masks.items() if not m.all())
    return {"identities": len(records),
            "ks_ratio": demo_ks_ratio(z, free_factors(constrained)),
            "truth": float(demo_truth(z, masks).mean())}


def demo_groups(ds, own: Mapping[str, list[dict]]) -> dict:
    """``demo_group`` of every group with at least 2 identities: {group: figures}."""
    return {g: demo_group(ds, g, recs) for g, recs in own.items() if len(recs) >= 2}
