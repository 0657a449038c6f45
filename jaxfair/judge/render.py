"""The render-and-judge step: latents -> images -> probabilities (and features).

Every command judges a face the same way: ``judge`` renders ws with the generator's
synthesis network and classifies the images with the classifier, inside the caller's own
jit (weights are arguments, graphdefs static). Around it:

  make_step    the prior stream's step: z ~ N(0, I) -> mapping -> judge -> group masses of
               all groups at once (stacked targets: arrays, so it never recompiles);
  make_render  ws -> (probabilities, uint8 images) at full resolution in float32 (what a
               job writes);
  make_features ws -> (probabilities, classifier features) of the full-resolution float32
               render (the dataset report's comparison with an unguided sample);
  batched      the one host-side batching helper: a jitted function over N rows in
               fixed-size, padded batches (one trace whatever N is);
  chunked      its in-jit twin: a batch function over N rows in micro-batches of M
               (``lax.map``), so a step keeps its logical batch (its random draws) and
               needs the memory of M rows (the micro-batch the memory budget allows,
               jaxfair.judge.sizing).

A sample belongs to group g when, for every attribute g constrains, the classifier's
probability of g's classes is >= a threshold (> 0.5 makes groups disjoint): ``group_masses``.

Example:
  render = make_render(G, C, "const")
  probs, images = batched(lambda ws: render(G.state, C.state, ws), ws, 64)
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxfair.io import images as imlib
from jaxfair.judge import attributes, classifier, crops, sizing
from jaxfair.judge import preprocess as pp
from jaxfair.models import stylegan2 as sg


def judge(g_graphdef, g_state, c_graphdef, c_state, preprocess: pp.Preprocess,
          schema: attributes.Schema, ws: jax.Array, noise_mode: str = "const",
          key: jax.Array | None = None, resolution: int | None = None,
          dtype: str = "float32", features: bool = False):
    """ws [N, num_ws, w_dim] -> (images [N, R, R, 3] float32 in ~[-1, 1], {attribute:
    probabilities [N, K]}, features [N, F] or None). Pure; call it inside a jit.

    Args:
      noise_mode: 'const', 'none' or 'random' (noise from ``key``).
      resolution: stop synthesis at this block's skip image (None: full).
      dtype: compute dtype of synthesis and classifier ('float32' or 'bfloat16');
        probabilities and features come back float32.
      features: also return the classifier's penultimate features (same network pass).
    """
    img = sg.synthesis(g_graphdef, g_state, ws, noise_mode,
                       key if noise_mode == "random" else None, resolution, dtype)
    if features or dtype != "float32":
        probs, feats = classifier.predict_with_features(c_graphdef, c_state, img, preprocess,
                                                        schema, dtype)
        return img, probs, feats if features else None
    return img, classifier.predict(c_graphdef, c_state, img, preprocess, schema), None


def group_masses(probs: dict[str, jax.Array], targets: attributes.Target) -> jax.Array:
    """Smallest per-attribute target probability, for every group: [G, N].

    Args:
      probs: {attribute: [N, K]} classifier probabilities.
      targets: G stacked targets (masks [G, K]).
    """
    def one(target):
        mass = attributes.target_mass(probs, target)
        return jnp.min(jnp.stack(list(mass.values())), axis=0)

    return jax.vmap(one)(targets)


def make_step(G: sg.Generator, C: classifier.Classifier, batch_size: int, psi: float,
              noise_mode: str, micro: int = 0, features: bool = False):
    """Jitted ``(g_state, c_state, key, targets) -> (z, ws, uint8 images, probs, masses [G, B])``.

    The prior stream: z and noise keys from ``split(key)``. ``ws`` [B, num_ws, w_dim] is
    returned for callers that keep W (the distribution method's labelling); unused outputs
    are pruned by XLA when the step is called inside another jit. ``micro`` (< B): render
    and classify ``micro`` rows at a time (``chunked``; the same z), not with random noise.
    ``features`` appends the classifier's penultimate features [B, F] (same network pass)
    as a sixth output.
    """
    if noise_mode == "random" and 0 < micro < batch_size:
        raise ValueError("micro-batches need noise_mode const or none (random noise is "
                         "drawn for the whole batch)")

    @jax.jit
    def step(g_state, c_state, key, targets):
        kz, kn = jax.random.split(key)
        z = jax.random.normal(kz, (batch_size, G.config.z_dim))

        def rows(z):
            ws = sg.mapping(G.graphdef, g_state, z, psi)
            img, probs, feats = judge(G.graphdef, g_state, C.graphdef, c_state, C.preprocess,
                                      C.schema, ws, noise_mode, kn, features=features)
            return ws, imlib.to_uint8(img), probs, feats

        ws, img, probs, feats = chunked(rows, z, micro)
        out = (z, ws, img, probs, group_masses(probs, targets))
        return (*out, feats) if features else out

    return step


def step_factory(G: sg.Generator, C: classifier.Classifier, batch_size: int, psi: float,
                 noise_mode: str, num_targets: int):
    """``micro -> (make_step(..., micro), abstract arguments)`` for
    ``jaxfair.judge.sizing.size_step``; ``num_targets`` stacked targets per call."""
    targets = attributes.stack_targets([attributes.any_target(C.schema)] * num_targets)

    def factory(micro):
        return (make_step(G, C, batch_size, psi, noise_mode, micro),
                (sizing.abstract(G.state), sizing.abstract(C.state), jax.random.key(0),
                 sizing.abstract(targets)))

    return factory


def render_factory(G: sg.Generator, C: classifier.Classifier, noise_mode: str,
                   crop: str = "none"):
    """``batch -> (make_render(...), abstract arguments of a batch)`` for
    ``jaxfair.judge.sizing.size_step`` (the render's batch is its memory: ``batched``)."""
    render = make_render(G, C, noise_mode, crop)

    def factory(b):
        ws = jax.ShapeDtypeStruct((b, G.config.num_ws, G.config.w_dim), jnp.float32)
        return render, (sizing.abstract(G.state), sizing.abstract(C.state), ws)

    return factory


def make_render(G: sg.Generator, C: classifier.Classifier, noise_mode: str,
                crop: str = "none"):
    """Jitted ``(g_state, c_state, ws) -> ({attribute: probs [N, K]}, uint8 images)``: the
    full-resolution, float32 render of accepted latents (``noise_mode`` 'const' or 'none').
    ``crop`` 'arcface112' crops the images written (jaxfair.judge.crops); the classifier
    always judges the full frame."""

    @jax.jit
    def render(g_state, c_state, ws):
        img, probs, _ = judge(G.graphdef, g_state, C.graphdef, c_state, C.preprocess,
                              C.schema, ws, noise_mode)
        out = imlib.to_uint8(img)
        if crop == "arcface112":
            out = crops.arcface112(out)
        return probs, out

    return render


def make_features(G: sg.Generator, C: classifier.Classifier, noise_mode: str):
    """Jitted ``(g_state, c_state, ws) -> ({attribute: probs [N, K]}, features [N, F])``: the
    classifier's judgement and penultimate features of the full-resolution float32 render
    (``noise_mode`` 'const' or 'none'), as ``make_step(..., features=True)`` gives them for
    prior samples."""

    @jax.jit
    def features(g_state, c_state, ws):
        _, probs, feats = judge(G.graphdef, g_state, C.graphdef, c_state, C.preprocess,
                                C.schema, ws, noise_mode, features=True)
        return probs, feats

    return features


def batched(fn: Callable[[np.ndarray], object], x: np.ndarray, batch_size: int):
    """Applies ``fn`` to fixed-size batches of ``x`` [N, ...]; concatenates the leaves.

    The last batch is padded (repeating its last row) to ``batch_size``, so a jitted ``fn``
    compiles once whatever N is; padded rows are dropped from the result (rows are
    independent: every step here is per sample). Results come back as host arrays.
    """
    x = np.asarray(x)
    outs = []
    for s in range(0, len(x), batch_size):
        chunk = x[s:s + batch_size]
        take = len(chunk)
        if take < batch_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - take, 0)])
        outs.append(jax.tree.map(lambda a, t=take: np.asarray(a)[:t],
                                 jax.device_get(fn(chunk))))
    return jax.tree.map(lambda *a: np.concatenate(a), *outs)


def chunked(fn: Callable, rows, micro: int):
    """``fn(rows)`` computed ``micro`` rows at a time inside a jit (``lax.map``).

    Args:
      fn: rows -> pytree of arrays with the same leading length (per-row results).
      rows: pytree of arrays with a common leading length N.
      micro: rows per call of ``fn``; 0 or >= N: one call (exactly ``fn(rows)``).

    Returns:
      ``fn(rows)``'s pytree, [N, ...] leaves. The last micro-batch is padded by repeating
      its last row; padded rows are dropped. Per-row results equal ``fn``'s up to the float
      rounding of another batch size (XLA picks kernels by shape: measured ~1e-6 on the
      demo's probabilities).
    """
    n = jax.tree.leaves(rows)[0].shape[0]
    if micro <= 0 or micro >= n:
        return fn(rows)
    chunks = -(-n // micro)

    def split(x):
        pad = chunks * micro - n
        if pad:
            x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])
        return x.reshape(chunks, micro, *x.shape[1:])

    out = jax.lax.map(fn, jax.tree.map(split, rows))
    return jax.tree.map(lambda y: y.reshape(chunks * micro, *y.shape[2:])[:n], out)
