"""Identity variations: moves along named W-space directions, re-classified and filtered.

The original method made 45 images per identity by moving its latent along directions for
pose, illumination and expression. Here a directions file holds M named unit vectors in W
with a scale each; variation candidate c of an identity w is

  w_c = w + L * sum_m a_cm * scale_m * d_m,   a_cm ~ U(-1, 1),   L = w_std * sqrt(w_dim)

(L is the typical distance of a prior w from w_avg, so scale 1 is a move as long as a
typical face's offset from the average face; in W+ every layer moves). Candidates are
rendered and classified; a candidate is kept only if it is still in the identity's group
(same acceptance rule as the search); the first K kept per identity are its variations.

File format (``.npz``): ``names`` [M] str, ``directions`` [M, w_dim] float32 (unit rows),
``scales`` [M] float32. ``python -m jaxfair.directions`` fits one direction per classifier
attribute class by logistic regression in W (``fit_direction``).
"""

from __future__ import annotations

import dataclasses
import math
import zipfile
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxfair
from jaxfair import keys as keylib
from jaxfair.io import atomic
from jaxfair.judge import attributes, render
from jaxfair.search import objective as obj
from jaxfair.search import spaces

# Largest scale of a direction: a move of 10 typical face offsets (L) leaves the prior far
# behind (images are noise), so a larger one is a typo, not a setting.
MAX_SCALE = 10.0
MIN_CLASS = 20  # fewest labelled samples on either side of a boundary worth fitting


def check_scale(scale: float, where: str) -> float:
    """``scale`` if it is finite and in (0, MAX_SCALE]; else ValueError naming ``where``."""
    if not (math.isfinite(scale) and 0 < scale <= MAX_SCALE):
        raise ValueError(f"{where}: scale must be finite and in (0, {MAX_SCALE:g}], got {scale}")
    return scale


@dataclasses.dataclass(frozen=True)
class Directions:
    """Named W directions: names [M], vectors [M, w_dim] (unit rows), scales [M]."""

    names: tuple[str, ...]
    vectors: np.ndarray
    scales: np.ndarray

    def __post_init__(self):
        m = len(self.names)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != m or self.scales.shape != (m,):
            raise ValueError(f"directions: {m} names, vectors {self.vectors.shape} and scales "
                             f"{self.scales.shape} do not match")
        if m == 0:
            raise ValueError("directions: the file holds no direction")

    @property
    def w_dim(self) -> int:
        return self.vectors.shape[1]


def load(path: str, w_dim: int) -> Directions:
    """Reads and checks a directions file against the generator's ``w_dim``."""
    try:
        with np.load(path, allow_pickle=False) as f:
            names, vectors, scales = f["names"], f["directions"], f["scales"]
    # EOFError: an empty file; BadZipFile: a damaged one (neither is an OSError).
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read directions file {path}: {type(e).__name__}: "
                         f"{e}") from None
    d = Directions(tuple(str(n) for n in names), np.asarray(vectors, np.float32),
                   np.asarray(scales, np.float32))
    if d.w_dim != w_dim:
        raise ValueError(f"directions file {path}: latent width {d.w_dim} does not match the "
                         f"generator's w_dim {w_dim}")
    for name, s in zip(d.names, d.scales):
        check_scale(float(s), f"directions file {path}, direction {name[:80]!r}")
    norms = np.linalg.norm(d.vectors, axis=1)
    if not np.allclose(norms, 1, atol=1e-3):
        raise ValueError(f"directions file {path}: rows must be unit vectors, norms {norms}")
    return d


def save(path: str, d: Directions) -> None:
    """Writes a directions file atomically (``io.atomic.file``)."""
    with atomic.file(path, "wb") as f:
        np.savez(f, names=np.asarray(d.names), directions=d.vectors, scales=d.scales)


@dataclasses.dataclass
class Variations:
    """Kept variations of n identities, rows grouped by identity.

    Attributes:
      ws [V, num_ws, w_dim]; images [V, H, W, 3] uint8; probs {attr: [V, K]};
      identity [V] index of the identity; index [V] 1..K within the identity;
      rejected: candidates tried and refused (left their group); missing: variations short
      of K after ``tries * K`` candidates per identity.
    """

    ws: np.ndarray
    images: np.ndarray
    probs: dict[str, np.ndarray]
    identity: np.ndarray
    index: np.ndarray
    rejected: int
    missing: int


def candidates(d: Directions, prior: spaces.Prior, ws: np.ndarray, num: int,
               key: jax.Array) -> np.ndarray:
    """ws [n, num_ws, w_dim] -> num moved copies per identity [n, num, num_ws, w_dim]."""
    n = ws.shape[0]
    a = keylib.uniform(key, (n, num, len(d.names)), minval=-1.0, maxval=1.0)
    length = prior.w_std * np.sqrt(d.w_dim)
    delta = length * (a * jnp.asarray(d.scales)) @ jnp.asarray(d.vectors)  # [n, num, w_dim]
    return np.asarray(jnp.asarray(ws)[:, None] + delta[:, :, None, :], np.float32)


def generate(d: Directions, prior: spaces.Prior, ws: np.ndarray, k: int, tries: int,
             key: jax.Array, render: Callable, target, objective: obj.Objective
             ) -> Variations:
    """Up to k variations per identity of ws [n, num_ws, w_dim] (see module docstring).

    Args:
      render: ws [N, num_ws, w_dim] -> ({attr: probs [N, K]}, uint8 images [N, H, W, 3]).
      target, objective: the identity's group and the acceptance rule.
    """
    n, num = ws.shape[0], k * tries
    cand = candidates(d, prior, ws, num, key).reshape(n * num, *ws.shape[1:])
    probs, imgs = render(cand)
    ok = np.asarray(obj.accepted(objective, probs, target)).reshape(n, num)
    keep = ok & (np.cumsum(ok, axis=1) <= k)  # the first k accepted per identity
    tried = np.where(ok.sum(axis=1) >= k, np.argmax(np.cumsum(ok, axis=1) == k, axis=1) + 1,
                     num)  # candidates looked at until the k-th was kept
    rejected = int(np.sum(tried - np.minimum(ok.sum(axis=1), k)))
    flat = np.flatnonzero(keep.reshape(-1))
    identity = flat // num
    index = np.cumsum(keep, axis=1).reshape(-1)[flat]
    return Variations(cand[flat], imgs[flat], {a: p[flat] for a, p in probs.items()},
                      identity, index, rejected, int(np.sum(k - keep.sum(axis=1))))


def fit_direction(u: jax.Array, labels: jax.Array, steps: int = 500, l2: float = 1e-3,
                  learning_rate: float = 0.05) -> tuple[np.ndarray, float]:
    """Logistic regression on standardised latents u [N, w_dim] with labels [N] (0/1).

    Returns:
      (unit normal of the decision boundary [w_dim], pointing to label 1; training
      accuracy). W's standardisation is isotropic (one w_std), so the normal in u is the
      normal in W.
    """
    labels = jnp.asarray(labels, jnp.float32)
    params = (jnp.zeros(u.shape[1]), jnp.zeros(()))
    opt = optax.adam(learning_rate)

    def loss(p):
        logits = u @ p[0] + p[1]
        return (jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
                + l2 * jnp.sum(jnp.square(p[0])))

    @jax.jit
    def train(p):
        def body(carry, _):
            p, s = carry
            g = jax.grad(loss)(p)
            upd, s = opt.update(g, s, p)
            return (optax.apply_updates(p, upd), s), None
        (p, _), _ = jax.lax.scan(body, (p, opt.init(p)), None, length=steps)
        return p

    w, b = train(params)
    acc = float(jnp.mean(((u @ w + b) > 0) == (labels > 0.5)))
    norm = float(jnp.linalg.norm(w))
    if norm == 0:
        raise ValueError("fit_direction: the labels do not separate the latents at all")
    return np.asarray(w / norm, np.float32), acc


def parse_specs(text: str, schema: attributes.Schema) -> list[tuple[str, str, float]]:
    """'attr=class:scale;...' -> [(attr, class, scale)] (validated against the schema)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        head, _, scale = part.partition(":")
        name, _, cls = head.partition("=")
        a = schema.attribute(name.strip())
        if cls.strip() not in a.classes:
            raise ValueError(f"unknown class {cls.strip()!r} of {a.name}; choose from "
                             f"{', '.join(a.classes)}")
        try:
            s = float(scale) if scale else 1.0
        except ValueError:
            raise ValueError(f"bad scale {scale!r} in {part!r}") from None
        check_scale(s, f"--directions {part!r}")  # NaN and inf too
        out.append((a.name, cls.strip(), s))
    if not out:
        raise ValueError("no direction named, e.g. 'glasses=yes:0.5'")
    return out


def fit_directions(config, specs, num: int, log: Callable[[str], None] = print) -> Directions:
    """Labels ``num`` prior samples and fits one direction per spec."""
    G = jaxfair.load_generator(config.generator)
    C = jaxfair.load_classifier(config.classifier)
    specs = parse_specs(specs, C.schema) if isinstance(specs, str) else specs
    root = keylib.root(config.seed)
    prior = spaces.estimate_prior(G, keylib.prior(root))
    batch = min(num, config.render_batch)
    step = render.make_step(G, C, batch, config.truncation_psi, config.noise_mode)
    dummy = attributes.stack_targets([attributes.any_target(C.schema)])
    ws, probs = [], []
    for i in range(-(-num // batch)):
        _, w, _, p, _ = step(G.state, C.state, keylib.labels(root, i), dummy)
        ws.append(np.asarray(w[:, 0]))
        probs.append(jax.device_get(p))
    w = np.concatenate(ws)[:num]
    u = (jnp.asarray(w) - prior.w_avg) / prior.w_std
    names, vectors, scales = [], [], []
    for name, cls, scale in specs:
        a = C.schema.attribute(name)
        p = np.concatenate([q[name] for q in probs])[:num]
        labels = np.argmax(p, axis=1) == a.classes.index(cls)
        if min(labels.sum(), (~labels).sum()) < MIN_CLASS:
            raise ValueError(f"{name}={cls}: {labels.sum()} of {num} samples are in the class; "
                             f"need at least {MIN_CLASS} on each side (raise --num)")
        d, acc = fit_direction(u, labels)
        log(f"{name}={cls}: {labels.sum()}/{num} samples in class, boundary accuracy {acc:.3f}")
        names.append(f"{name}={cls}")
        vectors.append(d)
        scales.append(scale)
    return Directions(tuple(names), np.stack(vectors), np.asarray(scales, np.float32))
