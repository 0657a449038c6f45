"""The search objective (a loss: lower is better, as evosax minimises) and acceptance.

For one candidate with classifier probabilities ``p`` and a target ``t``:

  loss = - sum_a log(mass_a)                 mass_a = p_a summed over t's classes of a
         + prior_weight * prior_loss(u)      (spaces.prior_loss)
         + novelty_weight * exp(-d^2 / (2 r^2))   d = distance to the nearest archived latent

Unconstrained attributes have mass 1 and add nothing. A candidate is *accepted* when every
attribute's mass is >= ``threshold`` (mode 'threshold'), or when every attribute's argmax
class is in the target (mode 'argmax', the original method's rule).

Example:
  obj = Objective(threshold=0.9)
  mass = target_masses(probs, target)              # [N, A]
  ok = accepted(obj, probs, target)                # [N] bool
  loss = classifier_loss(mass) + obj.prior_weight * prior
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxfair.judge import attributes

MODES = ("threshold", "argmax")


@dataclasses.dataclass(frozen=True)
class Objective:
    """Fixed objective settings (hashable: a static jit argument).

    Attributes:
      threshold: target probability needed on every constrained attribute, in (0, 1].
      mode: 'threshold' or 'argmax' (accept when every argmax is in the target).
      prior_weight: weight of the prior term (0 disables it).
      novelty_weight: weight of the novelty term (0 disables it).
      novelty_radius: length scale r of the novelty term (spaces.distance units).
    """

    threshold: float = 0.9
    mode: str = "threshold"
    prior_weight: float = 0.1
    novelty_weight: float = 0.0
    novelty_radius: float = 0.3

    def __post_init__(self):
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.mode not in MODES:
            raise ValueError(f"unknown acceptance mode {self.mode!r}; choose from "
                             f"{', '.join(MODES)}")
        if self.prior_weight < 0 or self.novelty_weight < 0:
            raise ValueError("prior_weight and novelty_weight must be >= 0")
        if self.novelty_radius <= 0:
            raise ValueError(f"novelty_radius must be > 0, got {self.novelty_radius}")


def target_masses(probs: dict[str, jax.Array], target: attributes.Target,
                  names: tuple[str, ...] | None = None) -> jax.Array:
    """Probability inside the target per attribute: [N, A].

    Columns follow ``names`` (pass ``schema.names``), or sorted attribute names when None:
    jax transformations return dicts with sorted keys, so dict order is no guide.
    """
    mass = attributes.target_mass(probs, target)
    return jnp.stack([mass[k] for k in (names or sorted(probs))], axis=-1)


def classifier_loss(masses: jax.Array, eps: float = 1e-12) -> jax.Array:
    """- sum over attributes of log(mass): masses [N, A] -> [N]."""
    return -jnp.sum(jnp.log(masses + eps), axis=-1)


def accepted(objective: Objective, probs: dict[str, jax.Array],
             target: attributes.Target) -> jax.Array:
    """[N] bool: the candidate is in the target group by the objective's rule."""
    if objective.mode == "argmax":
        return attributes.in_target(probs, target)
    return jnp.all(target_masses(probs, target) >= objective.threshold, axis=-1)


def novelty_loss(dist_to_archive: jax.Array, radius: float) -> jax.Array:
    """exp(-d^2 / (2 r^2)) for distances [N] to the nearest archived latent (inf: empty)."""
    return jnp.exp(-0.5 * jnp.square(dist_to_archive / radius))
