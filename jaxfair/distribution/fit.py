"""The distribution method (Rahimi et al.): label W, learn a code, one mixture per group.

Fit (``fit``):
  1. Label: N latents w = mapping(z) rendered and classified in fused jitted batches (the
     rejection sampler's step, plus the mapping); every sample keeps its probabilities for
     every attribute and its mass in every group. A sample belongs to a group when the
     group's mass (smallest per-attribute target probability) is >= ``threshold``; samples
     below it in every group are low-confidence and used only to train the reconstruction.
  2. Encode: the MLP autoencoder of ``jaxfair.models.autoencoder`` trained with optax on
     reconstruction MSE (standardised W) + ``separation_weight`` x cross-entropy of a linear
     head that predicts the sample's group (combination of ``attributes``) from the code.
  3. Model: one Gaussian mixture per group on the codes of its members (``covariance``
     'diag', as published, or 'full'), by EM in JAX, vmapped over groups
     (``jaxfair.distribution.gmm``).
  Saved as one jaxfair checkpoint (``DIR/meta.json`` + ``DIR/params``): the autoencoder,
  the stacked mixtures, and the labelled data (w, probabilities, group masses).

Draw: ``jaxfair.distribution.draw`` (codes from a group's mixture -> decode ->
render, optionally verified by the classifier).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

import jaxfair
from jaxfair import train_loop as loop
from jaxfair.distribution import gmm as gmmlib
from jaxfair.io import checkpoints
from jaxfair.judge import attributes, render, sizing
from jaxfair.judge.classifier import Classifier
from jaxfair.models import autoencoder as ae
from jaxfair.models import stylegan2 as sg

KIND = "distribution"


# Fit ------------------------------------------------------------------------------------------

def validate(dc: ml_collections.ConfigDict, schema: attributes.Schema) -> None:
    """Raises ValueError (or TargetError) naming the first bad ``config.distribution`` field."""
    for name in ("num_samples", "batch_size", "ae_steps", "ae_batch_size", "num_components",
                 "em_steps", "min_group_samples"):
        if dc[name] < 1:
            raise ValueError(f"distribution.{name} must be >= 1, got {dc[name]}")
    if not 0.5 < dc.threshold <= 1:
        raise ValueError(f"distribution.threshold must be in (0.5, 1], got {dc.threshold}")
    if dc.min_group_samples < dc.num_components:
        raise ValueError(f"distribution.min_group_samples ({dc.min_group_samples}) must be >= "
                         f"num_components ({dc.num_components})")
    if not 0 <= dc.holdout < dc.num_samples:
        raise ValueError(f"distribution.holdout must be in [0, num_samples), got {dc.holdout}")
    if not dc.attributes:
        raise ValueError("distribution.attributes must name at least one classifier attribute")
    if dc.covariance not in gmmlib.COVARIANCES:
        raise ValueError(f"distribution.covariance must be one of "
                         f"{', '.join(gmmlib.COVARIANCES)}, got {dc.covariance!r}")
    for name in dc.attributes:
        schema.attribute(name)


def model_groups(schema: attributes.Schema, dc: ml_collections.ConfigDict
                 ) -> tuple[list[str], list[attributes.Target], int]:
    """Groups that get a mixture: every combination of ``attributes`` (the head's classes,
    first), then ``extra_groups`` (any targets, e.g. a single attribute), canonical text.

    Returns:
      (names, targets, number of combination groups).
    """
    combos = attributes.enumerate_groups(schema, tuple(dc.attributes))
    names = [attributes.format_target(t, schema) for _, t in combos]
    targets = [t for _, t in combos]
    for text in dc.extra_groups:
        t = attributes.parse_target(text, schema)
        name = attributes.format_target(t, schema)
        if name not in names:
            names.append(name)
            targets.append(t)
    return names, targets, len(combos)


def make_label_step(G: sg.Generator, C: Classifier, batch_size: int, psi: float,
                    noise_mode: str, micro: int = 0):
    """Jitted ``(g_state, c_state, key, targets) -> (w [B, w_dim], probs, masses [G, B])``.

    The rejection sampler's generate + classify step, keeping its w (every row of ws is the
    same w at psi 1; with truncation all rows are truncated alike when cutoff is None); the
    uint8 images it also returns are dropped (and so not computed) inside this jit.
    ``micro``: render and classify this many at a time (``render.make_step``).
    """
    step = render.make_step(G, C, batch_size, psi, noise_mode, micro)

    @jax.jit
    def label(g_state, c_state, key, targets):
        _, ws, _, probs, masses = step(g_state, c_state, key, targets)
        return ws[:, 0], probs, masses

    return label


def label_factory(G: sg.Generator, C: Classifier, dc, num_targets: int):
    """``micro -> (make_label_step(..., micro), abstract arguments)`` for
    ``sizing.size_step`` (``num_targets`` stacked targets)."""
    args = render.step_factory(G, C, dc.batch_size, dc.truncation_psi, dc.noise_mode,
                               num_targets)(dc.batch_size)[1]

    def factory(micro):
        return make_label_step(G, C, dc.batch_size, dc.truncation_psi, dc.noise_mode,
                               micro), args

    return factory


def label(G, C, dc, targets, key, log, budget_bytes: int | None = None
          ) -> tuple[np.ndarray, dict, np.ndarray, float]:
    """Labels ``dc.num_samples`` latents. Returns (w [N, D], {attr: [N, K]}, masses [G, N],
    samples/s). ``budget_bytes``: memory budget of one step call (micro-batches within it,
    ``sizing.size_step``; random noise runs whole batches); None: whole batches."""
    factory = label_factory(G, C, dc, jax.tree.leaves(targets)[0].shape[0])
    if budget_bytes is None:
        step = factory(dc.batch_size)[0]
    else:
        step = sizing.size_step(factory, budget_bytes, dc.batch_size, "label",
                                allowed=(dc.batch_size,) if dc.noise_mode == "random"
                                else None)
        log(f"label step: batch {dc.batch_size}, micro-batch {step.batch} "
            f"({sizing.describe(step.memory)})")
    n_batches = -(-dc.num_samples // dc.batch_size)
    out = []
    start = time.time()
    for b in range(n_batches):
        out.append(step(G.state, C.state, jax.random.fold_in(key, b), targets))
        if (b + 1) % 20 == 0 or b + 1 == n_batches:
            jax.block_until_ready(out[-1])
            log(f"labelled {(b + 1) * dc.batch_size} samples  {time.time() - start:.0f}s")
    out = jax.device_get(out)
    n = dc.num_samples
    w = np.concatenate([o[0] for o in out])[:n]
    probs = {a: np.concatenate([o[1][a] for o in out])[:n] for a in out[0][1]}
    masses = np.concatenate([o[2] for o in out], axis=1)[:, :n]
    rate = n_batches * dc.batch_size / (time.time() - start)
    return w, probs, masses, rate


def train_autoencoder(cfg: ae.AutoencoderConfig, w: np.ndarray, labels: np.ndarray, dc,
                      key: jax.Array, log: Callable[[str], None]):
    """Trains the autoencoder on w [N, D] with group labels [N] (-1: none).

    Returns:
      (graphdef, state, final mean loss).
    """
    k_init, k_train = jax.random.split(key)
    graphdef, state = ae.init(cfg, k_init)
    w_dev, labels_dev = jnp.asarray(w), jnp.asarray(labels, jnp.int32)
    state["w_mean"][...] = jnp.mean(w_dev, axis=0)
    state["w_std"][...] = jnp.std(w_dev, axis=0) + 1e-6
    params, rest = nnx.split_state(state, nnx.Param, ...)
    tx = optax.adam(optax.cosine_decay_schedule(dc.learning_rate, dc.ae_steps, alpha=0.05))
    opt_state = tx.init(params)

    def loss_fn(params, wb, lb):
        recon, ce = ae.losses(graphdef, nnx.merge_state(params, rest), wb, lb)
        return recon + dc.separation_weight * ce

    @jax.jit
    def step(params, opt_state, key):
        idx = jax.random.randint(key, (dc.ae_batch_size,), 0, w_dev.shape[0])
        loss, grads = jax.value_and_grad(loss_fn)(params, w_dev[idx], labels_dev[idx])
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params, _, final, _ = loop.train(step, params, opt_state, k_train, dc.ae_steps,
                                     max(dc.ae_steps // 5, 1), log, "autoencoder")
    return graphdef, nnx.merge_state(params, rest), final


def make_reconstruction_step(G: sg.Generator, noise_mode: str):
    """Jitted ``(g_state, w [B, D], w_hat [B, D]) -> [B]``: per pair, the mean |pixel|
    difference in [-1, 1] image units between the renders of w and of w_hat (2B renders)."""

    @jax.jit
    def step(g_state, w, w_hat):
        n = w.shape[0]
        both = jnp.concatenate([w, w_hat])[:, None, :]
        img = sg.synthesis(G.graphdef, g_state,
                           jnp.broadcast_to(both, (2 * n, G.config.num_ws, G.config.w_dim)),
                           noise_mode)
        return jnp.mean(jnp.abs(img[:n] - img[n:]), axis=(1, 2, 3))

    return step


def reconstruction_factory(G: sg.Generator, noise_mode: str):
    """``pairs -> (make_reconstruction_step(...), abstract arguments)`` for
    ``sizing.size_step`` (a batch of ``pairs`` renders 2 x pairs images)."""
    step = make_reconstruction_step(G, noise_mode)

    def factory(b):
        w = jax.ShapeDtypeStruct((b, G.config.w_dim), jnp.float32)
        return step, (sizing.abstract(G.state), w, w)

    return factory


def reconstruction_errors(G: sg.Generator, graphdef, state, w: np.ndarray, noise_mode: str,
                          max_images: int = 256, pairs: int = 64,
                          budget_bytes: int | None = None,
                          log: Callable[[str], None] | None = None) -> dict:
    """Relative MSE in W (MSE / per-dimension variance of w) and mean |pixel| error in
    [-1, 1] image units between renders of w and of its reconstruction.

    The renders (of the first ``max_images`` rows of w and of their reconstructions) run
    ``pairs`` rows (2 x ``pairs`` images) per call, fewer where that exceeds
    ``budget_bytes`` (``sizing.size_step``; None: ``pairs`` as given). ``fit`` passes half
    its labelling batch: as many renders per call as one labelling batch, without the
    classifier. (One call for all 2 x 256 images needed ~30 GiB at 256 px on CPU.)"""
    w = jnp.asarray(w)
    w_hat = jax.jit(ae.decode, static_argnums=0)(
        graphdef, state, jax.jit(ae.encode, static_argnums=0)(graphdef, state, w))
    rel = float(jnp.mean((w_hat - w) ** 2) / jnp.mean(jnp.var(w, axis=0)))
    n = min(max_images, w.shape[0])
    pairs = max(1, min(pairs, n))
    factory = reconstruction_factory(G, noise_mode)
    if budget_bytes is None:
        step, batch = factory(pairs)[0], pairs
    else:
        step = sizing.size_step(factory, budget_bytes, pairs, "reconstruct")
        batch = step.batch
        if log is not None:
            log(f"reconstruct step: batch {batch} pairs (configured {pairs}), compiled "
                f"memory {sizing.describe(step.memory)}")
    rows = np.concatenate([np.asarray(w[:n]), np.asarray(w_hat[:n])], axis=1)
    d = G.config.w_dim
    per_pair = render.batched(lambda r: step(G.state, r[:, :d], r[:, d:]), rows, batch)
    return {"w_relative_mse": round(rel, 5), "w_mse": round(float(jnp.mean((w_hat - w) ** 2)), 6),
            "image_mean_abs": round(float(np.mean(per_pair)), 5),
            "num_heldout": int(w.shape[0])}


def fit(config: ml_collections.ConfigDict, workdir: str,
        log: Callable[[str], None] = print) -> dict:
    """Fits the distribution model of ``config.distribution`` and saves it to ``workdir``.

    Raises:
      ValueError: bad settings, or a group with fewer than ``min_group_samples`` members
        (the message says how many were found and how many are needed).
    """
    dc = config.distribution
    checkpoints.check_output_dir(workdir)
    G = jaxfair.load_generator(config.generator)
    C = jaxfair.load_classifier(config.classifier)
    validate(dc, C.schema)
    names, targets, num_combos = model_groups(C.schema, dc)
    stacked = attributes.stack_targets(targets)
    key = jax.random.key(dc.seed)
    k_label, k_ae, k_em = jax.random.split(key, 3)
    budget = sizing.budget_bytes(config.memory_budget_gb)[0]
    w, probs, masses, label_rate = label(G, C, dc, stacked, k_label, log, budget)
    members = masses >= dc.threshold  # [G, N]
    counts = members.sum(axis=1)
    short = [f"{n}: {c}" for n, c in zip(names, counts) if c < dc.min_group_samples]
    if short:
        raise ValueError(f"too few samples after labelling {dc.num_samples} at threshold "
                         f"{dc.threshold}: found {'; '.join(short)}; need "
                         f"{dc.min_group_samples} per group (distribution.min_group_samples); "
                         "raise distribution.num_samples or lower distribution.threshold")
    # Combination groups are disjoint for threshold > 0.5: at most one head label per sample.
    head_labels = np.where(members[:num_combos].any(axis=0),
                           np.argmax(members[:num_combos], axis=0), -1)
    n_train = dc.num_samples - dc.holdout
    cfg = ae.AutoencoderConfig(w_dim=G.config.w_dim, hidden=tuple(dc.hidden),
                               code_dim=dc.code_dim,
                               num_groups=num_combos if dc.separation_weight > 0 else 0,
                               output_activation=dc.output_activation)
    graphdef, state, ae_loss = train_autoencoder(cfg, w[:n_train], head_labels[:n_train], dc,
                                                 k_ae, log)
    errors = reconstruction_errors(G, graphdef, state, w[n_train:] if dc.holdout else w,
                                   dc.noise_mode, pairs=max(1, dc.batch_size // 2),
                                   budget_bytes=budget, log=log)
    log(f"reconstruction: {errors}")
    codes = jax.jit(ae.encode, static_argnums=0)(graphdef, state, jnp.asarray(w))
    gmms, ll = gmmlib.fit_groups_jit(jax.random.split(k_em, len(names)), codes,
                                     jnp.asarray(members, jnp.float32), dc.num_components,
                                     dc.em_steps, dc.reg_covar, dc.covariance)
    ll = np.asarray(ll)
    record = {
        "groups": {n: {"members": int(c), "log_likelihood": round(float(ll[g, -1]), 4)}
                   for g, (n, c) in enumerate(zip(names, counts))},
        "label_samples_per_s": round(label_rate, 1), "autoencoder_loss": round(ae_loss, 5),
        "reconstruction": errors,
        "head_accuracy": head_accuracy(graphdef, state, codes, head_labels),
    }
    meta = {"kind": KIND, "config": {
        "autoencoder": cfg.to_dict(), "groups": names, "num_combination_groups": num_combos,
        "num_components": dc.num_components, "covariance": dc.covariance,
        "num_samples": dc.num_samples,
        "attributes": {a.name: a.size for a in C.schema.attributes}},
        "generator": config.generator, "classifier": config.classifier,
        "schema": C.schema.name, "threshold": dc.threshold,
        "truncation_psi": dc.truncation_psi, "noise_mode": dc.noise_mode,
        "fit": record, "jaxfair_version": jaxfair.__version__,
        "settings": json.loads(config.to_json())}
    params = {"autoencoder": nnx.to_pure_dict(state),
              "mixtures": dataclasses.asdict(jax.device_get(gmms)),
              "labels": {"w": w, "masses": masses, "probs": probs}}
    checkpoints.save(workdir, params, meta)
    return meta


def head_accuracy(graphdef, state, codes, labels) -> float | None:
    """Share of labelled samples whose group the code's linear head predicts (None: no head)."""
    model = nnx.merge(graphdef, state)
    if model.head is None or not (labels >= 0).any():
        return None
    pred = np.asarray(jnp.argmax(model.head(codes), axis=-1))
    return round(float(np.mean(pred[labels >= 0] == labels[labels >= 0])), 4)


# Loading --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Fitted:
    """A loaded distribution model."""

    meta: dict
    ae_config: ae.AutoencoderConfig
    ae_graphdef: nnx.GraphDef
    ae_state: nnx.State
    mixtures: gmmlib.GMM  # stacked over groups (DiagGMM or FullGMM)
    groups: tuple[str, ...]


def load(path: str) -> Fitted:
    """Reads a directory written by ``fit`` (without the labelled data)."""
    meta = checkpoints.read_meta(path)
    if meta["kind"] != KIND:
        raise checkpoints.CheckpointDirError(f"{path} holds a {meta['kind']!r} checkpoint, "
                                             "not a distribution model (jaxfair.sample fit)")
    mc = meta["config"]
    cfg = ae.AutoencoderConfig.from_dict(mc["autoencoder"])
    graphdef, abstract = ae.abstract(cfg)
    g, k, d, n = len(mc["groups"]), mc["num_components"], cfg.code_dim, mc["num_samples"]
    f32 = jnp.float32
    # Models fitted before full covariances existed carry no "covariance": they are diagonal.
    full = mc.get("covariance", "diag") == "full"
    mix_cls = gmmlib.FullGMM if full else gmmlib.DiagGMM
    spread = {"covariances": jax.ShapeDtypeStruct((g, k, d, d), f32)} if full else \
        {"variances": jax.ShapeDtypeStruct((g, k, d), f32)}
    target = {"autoencoder": nnx.to_pure_dict(abstract),
              "mixtures": {"weights": jax.ShapeDtypeStruct((g, k), f32),
                           "means": jax.ShapeDtypeStruct((g, k, d), f32), **spread},
              "labels": {"w": jax.ShapeDtypeStruct((n, cfg.w_dim), f32),
                         "masses": jax.ShapeDtypeStruct((g, n), f32),
                         "probs": {a: jax.ShapeDtypeStruct((n, s), f32)
                                   for a, s in mc["attributes"].items()}}}
    _, params = checkpoints.load(path, target)
    nnx.replace_by_pure_dict(abstract, jax.tree.map(jnp.asarray, params["autoencoder"]))
    mix = mix_cls(**{k: jnp.asarray(v) for k, v in params["mixtures"].items()})
    return Fitted(meta, cfg, graphdef, abstract, mix, tuple(mc["groups"]))
