"""The shared prior stream: binned rejection sampling, every group at once.

One compiled step draws ``B`` prior latents z ~ N(0, I), renders and classifies them, and
tests every group on every sample (targets stacked as arrays, so one trace serves any set
of groups). A sample joins the first group whose test it passes; with a threshold above 0.5,
or the argmax rule, groups of single classes are disjoint and "first" never matters. The
stream is the baseline every guided method is measured against: its accepted faces of a
group are exact draws from the generator restricted to that group.

Batch ``b`` of a run uses key ``fold_in(stream_root, b)``: the stream is one fixed sequence
whatever the round size, process count or resume point.

Example:
  judge = Judge(G, C, Objective(threshold=0.999), psi=1.0, noise_mode="const")
  step = make_stream_step(judge, batch=256)
  z, ok, masses, probs = step(G.state, C.state, jax.random.fold_in(root, b), targets)
  # z [B, z_dim], ok [G, B] bool, masses [G, B, A], probs [B, P]
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from jaxfair.judge import attributes, render, sizing
from jaxfair.judge.classifier import Classifier
from jaxfair.models import stylegan2 as sg
from jaxfair.search import objective as obj


@dataclasses.dataclass(frozen=True, eq=False)
class Judge:
    """z -> group test: the generator and classifier structure plus the acceptance rule.

    Attributes:
      G, C: generator and classifier (weights are call arguments of ``__call__``).
      objective: acceptance rule (threshold or argmax) on every constrained attribute.
      psi: truncation; noise_mode: 'const' or 'none'.
      resolution: judge the skip image of this synthesis block (a block resolution of G:
        the blocks above it are not computed); None: the full image.
    """

    G: sg.Generator
    C: Classifier
    objective: obj.Objective
    psi: float = 1.0
    noise_mode: str = "const"
    resolution: int | None = None

    def __post_init__(self):
        r = self.resolution
        if r is not None and r not in self.G.config.block_resolutions:
            raise ValueError(f"planner.score_resolution must be one of "
                             f"{self.G.config.block_resolutions} (or 0 for full), got {r}")

    def probs(self, g_state, c_state, z: jax.Array) -> dict[str, jax.Array]:
        """z [N, z_dim] -> {attribute: probabilities [N, K]} (pure)."""
        ws = sg.mapping(self.G.graphdef, g_state, z, self.psi)
        return render.judge(self.G.graphdef, g_state, self.C.graphdef, c_state,
                            self.C.preprocess, self.C.schema, ws, self.noise_mode,
                            resolution=self.resolution)[1]

    def test(self, probs: dict[str, jax.Array], target: attributes.Target
             ) -> tuple[jax.Array, jax.Array]:
        """(ok [N] bool, masses [N, A]) of probabilities against one target, or one target
        per row (masks [N, K])."""
        masses = obj.target_masses(probs, target, self.C.schema.names)
        return obj.accepted(self.objective, probs, target), masses


    def accepts(self, g_state, c_state, z: jax.Array, targets: attributes.Target
                ) -> jax.Array:
        """[N] bool: each z [N, z_dim] passes its own row's target (masks [N, K])."""
        return self.test(self.probs(g_state, c_state, z), targets)[0]


def make_judge_step(judge: Judge, micro: int = 0):
    """Jitted ``(g_state, c_state, z [B, D], targets [G]) -> (ok [G, B], masses [G, B, A],
    probs [B, P])``: every sample rendered, classified and tested against every group;
    ``probs`` the class probabilities of every attribute, in schema order (P = sum of the
    attributes' classes).

    ``micro`` (< B): render and judge ``micro`` samples at a time (``render.chunked``): the
    same z, the memory of ``micro``.
    """
    names = judge.C.schema.names

    @jax.jit
    def step(g_state, c_state, z, targets):
        probs = render.chunked(lambda x: judge.probs(g_state, c_state, x), z, micro)
        ok, masses = jax.vmap(functools.partial(judge.test, probs))(targets)
        return ok, masses, jnp.concatenate([probs[n] for n in names], axis=1)

    return step


def make_stream_step(judge: Judge, batch: int, micro: int = 0):
    """Jitted ``(g_state, c_state, key, targets [G]) -> (z [B, D], ok [G, B], masses
    [G, B, A], probs [B, P])``: ``make_judge_step`` on B prior samples z ~ N(0, I)."""
    z_dim = judge.G.config.z_dim
    judged = make_judge_step(judge, micro)

    @jax.jit
    def step(g_state, c_state, key, targets):
        z = jax.random.normal(key, (batch, z_dim))
        return (z, *judged(g_state, c_state, z, targets))

    return step


def judge_factory(judge: Judge, batch: int, targets: attributes.Target):
    """``micro -> (make_judge_step(judge, micro), abstract arguments)`` for
    ``jaxfair.judge.sizing.size_step`` (z [batch, D]; ``targets``: the stacked group
    targets)."""
    args = (sizing.abstract(judge.G.state), sizing.abstract(judge.C.state),
            jax.ShapeDtypeStruct((batch, judge.G.config.z_dim), jnp.float32),
            sizing.abstract(targets))

    def factory(micro):
        return make_judge_step(judge, micro), args

    return factory


def step_factory(judge: Judge, batch: int, targets: attributes.Target):
    """``micro -> (make_stream_step(judge, batch, micro), abstract arguments)`` for
    ``jaxfair.judge.sizing.size_step`` (``targets``: the stacked group targets)."""
    args = (sizing.abstract(judge.G.state), sizing.abstract(judge.C.state),
            jax.random.key(0), sizing.abstract(targets))

    def factory(micro):
        return make_stream_step(judge, batch, micro), args

    return factory


def assign(ok) -> jax.Array:
    """ok [G, B] -> group of every sample [B] (first group that accepts it; -1: none)."""
    ok = jnp.asarray(ok)
    first = jnp.argmax(ok, axis=0)
    return jnp.where(jnp.any(ok, axis=0), first, -1)
