"""The render-and-classify step of rejection sampling, and group masses.

One compiled step draws a batch from the prior, renders it and classifies it; group
membership is computed for all groups at once from the stacked targets (arrays, not
Python), so the step never recompiles. A sample belongs to group g when, for every
attribute g constrains, the classifier's probability of g's classes is >= a threshold
(> 0.5 makes groups disjoint). Used by the distribution method's labelling and draws
(jaxfair.distribution.fit, distribution_draw) and by jaxfair.directions; the bulk
job itself searches (jaxfair.pipeline).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxfair.io import images as imlib
from jaxfair.judge import attributes
from jaxfair.judge.classifier import Classifier
from jaxfair.judge.classifier import predict as classifier_predict
from jaxfair.models import stylegan2 as sg


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


def make_step(G: sg.Generator, C: Classifier, batch_size: int, psi: float, noise_mode: str):
    """Jitted ``(g_state, c_state, key, targets) -> (z, ws, uint8 images, probs, masses [G, B])``.

    ``ws`` [B, num_ws, w_dim] is returned for callers that keep W (the distribution method's
    labelling); unused outputs are pruned by XLA when the step is called inside another jit.
    """

    @jax.jit
    def step(g_state, c_state, key, targets):
        kz, kn = jax.random.split(key)
        z = jax.random.normal(kz, (batch_size, G.config.z_dim))
        ws = sg.mapping(G.graphdef, g_state, z, psi)
        img = sg.synthesis(G.graphdef, g_state, ws, noise_mode,
                           kn if noise_mode == "random" else None)
        probs = classifier_predict(C.graphdef, c_state, img, C.preprocess, C.schema)
        return z, ws, imlib.to_uint8(img), probs, group_masses(probs, targets)

    return step
