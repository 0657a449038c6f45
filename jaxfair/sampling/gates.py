"""Gates: regions of latent space, tested without rendering, that hold a whole group.

Binned rejection sampling renders and judges every prior sample, and most of them land in
the common groups. A *gate* of group g is a region R_g of the latent space that holds the
group and is tested on the mapping network's output w alone (a few dot products, no image):
prior samples drawn until one falls inside R_g, then rendered and judged, are exact draws
of the generator's faces of g inside R_g, i.e. of the whole group when R_g holds all of it,
at a yield P(g | R_g) that is P(g) / P(R_g) times the stream's.

A gate is an intersection of half-spaces of standardised w, one for each class that the
group excludes on each attribute it constrains (a band class such as tone=medium gets one
from each side). For an excluded class e of attribute a, the direction is a ridge regression
of log p_e - log p(group's classes of a) on standardised w over the stream's samples; the
half-space keeps ``s = x . d <= tau`` with ``tau`` the largest ``s`` of any stream sample
that passes the group's test on ``a``, plus ``margin`` standard deviations of ``s``. Stream
samples that pass ``a`` are many more than the group's own faces (every group sharing the
class), so the boundary is measured where it is. ``leak`` estimates, leave one out, the
share of the group that a gate fitted without a face would miss.

Example:
  mean, std = standardizer(w_stream)
  gate = fit(Ridge((w_stream - mean) / std), probs, target, schema, rule, margin=0.5)
  inside = contains(gate, (w_new - mean) / std)        # [N] bool
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxfair.judge import attributes
from jaxfair.search import objective as obj


@dataclasses.dataclass(frozen=True)
class Gate:
    """Half-spaces ``x @ dirs[e] <= tau[e]`` of standardised w (all must hold).

    Attributes:
      dirs: [E, F] unit directions (E may be 0: the whole space).
      tau: [E] thresholds.
      top2: [E, 2] the two largest scores of the stream samples that set ``tau`` (the
        leave-one-out leak estimate needs the second).
    """

    dirs: np.ndarray
    tau: np.ndarray
    top2: np.ndarray


def standardizer(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean [F], std [F]) of stream samples' w [N, F] (std floored: constant columns)."""
    w = np.asarray(w, np.float64)
    return w.mean(axis=0), np.maximum(w.std(axis=0), 1e-6)


def attribute_pass(p: np.ndarray, mask: np.ndarray, rule: obj.Objective) -> np.ndarray:
    """[N] bool: probabilities p [N, K] of one attribute pass the group's test on it (its
    classes ``mask`` [K] hold at least the threshold, or hold the argmax)."""
    mask = np.asarray(mask, bool)
    if rule.mode == "argmax":
        return mask[np.argmax(p, axis=1)]
    return p[:, mask].sum(axis=1) >= rule.threshold


class Ridge:
    """Ridge regressions on one set of standardised stream samples x [N, F]: the normal
    equations factored once, shared by every gate of a round (penalty in units of sample
    count, comparable at any N); directions cached by what they regress."""

    def __init__(self, x: np.ndarray, ridge: float = 1.0):
        self.x = np.asarray(x, np.float64)
        n, f = self.x.shape
        self._xc = self.x - self.x.mean(axis=0)
        self._chol = np.linalg.cholesky(self._xc.T @ self._xc + ridge * n * np.eye(f) / f)
        self._cache: dict = {}

    def direction(self, y: np.ndarray, key=None) -> np.ndarray:
        """Unit vector [F] of the coefficients of y [N] (zero if y is constant)."""
        if key is not None and key in self._cache:
            return self._cache[key]
        b = self._xc.T @ (y - y.mean())
        coef = np.linalg.solve(self._chol.T, np.linalg.solve(self._chol, b))
        norm = np.linalg.norm(coef)
        d = coef / norm if norm > 0 else coef
        if key is not None:
            self._cache[key] = d
        return d


def fit(ridge: Ridge, probs: dict[str, np.ndarray], target: attributes.Target,
        schema: attributes.Schema, rule: obj.Objective, margin: float,
        min_samples: int = 2) -> Gate | None:
    """The gate of one group from stream samples.

    Args:
      ridge: ``Ridge`` of the stream samples' standardised w [N, F].
      probs: attribute -> [N, K] their class probabilities.
      target: the group (one target: masks [K]).
      schema: the classifier's schema.
      rule: the acceptance rule (threshold or argmax).
      margin: extra room beyond the farthest passing sample, in standard deviations of
        each score over the stream.
      min_samples: stream samples that must pass each constrained attribute (>= 2): the
        farthest of few is a poor guess of where the group ends.

    Returns:
      The gate, or None while some constrained attribute has fewer passing samples.
    """
    x = ridge.x
    dirs, tau, top2 = [], [], []
    for a in schema.attributes:
        mask = np.asarray(target.masks[a.name], bool)
        if mask.all():
            continue
        p = np.clip(np.asarray(probs[a.name], np.float64), 1e-6, 1.0)
        ok = attribute_pass(p, mask, rule)
        if ok.sum() < max(2, min_samples):
            return None
        inside = np.log(p[:, mask].sum(axis=1))
        for e in np.nonzero(~mask)[0]:
            d = ridge.direction(np.log(p[:, e]) - inside, (a.name, mask.tobytes(), int(e)))
            s = x @ d
            best = np.sort(s[ok])[-2:][::-1]
            dirs.append(d)
            tau.append(best[0] + margin * s.std())
            top2.append(best)
    f = x.shape[1]
    return Gate(np.asarray(dirs, np.float64).reshape(-1, f), np.asarray(tau, np.float64),
                np.asarray(top2, np.float64).reshape(-1, 2))


def contains(gate: Gate, x: np.ndarray) -> np.ndarray:
    """[N] bool: standardised w x [N, F] inside the gate."""
    x = np.asarray(x, np.float64)
    if len(gate.tau) == 0:
        return np.ones(len(x), bool)
    return np.all(x @ gate.dirs.T <= gate.tau, axis=1)


def leak(gate: Gate, x_faces: np.ndarray) -> float:
    """Leave-one-out share of the group outside its gate: the fraction of the group's
    stream faces x_faces [n, F] that a gate fitted without them would leave out (a face
    sets a threshold only if it is the farthest passing sample; without it the threshold
    falls to the second farthest, plus the same margin). 0.0 without faces."""
    x = np.asarray(x_faces, np.float64)
    if len(x) == 0 or len(gate.tau) == 0:
        return 0.0
    s = x @ gate.dirs.T  # [n, E]
    loo_tau = gate.tau - gate.top2[:, 0] + gate.top2[:, 1]
    out = np.any((s >= gate.top2[:, 0] - 1e-12) & (s > loo_tau), axis=1)
    return float(out.mean())
