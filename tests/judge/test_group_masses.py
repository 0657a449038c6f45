"""Group masses of the render-and-classify step."""

import jax.numpy as jnp
import numpy as np

from jaxfair.judge import attributes, render


def test_group_masses_is_min_over_constrained_attributes():
    schema = attributes.DEMO
    probs = {"tone": jnp.asarray([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8]]),
             "hair": jnp.asarray([[0.3, 0.7], [0.95, 0.05]]),
             "glasses": jnp.asarray([[0.5, 0.5], [0.5, 0.5]])}
    groups = attributes.enumerate_groups(schema, ("tone", "hair"))
    masses = np.asarray(render.group_masses(probs, attributes.stack_targets(
        [t for _, t in groups])))
    names = [n for n, _ in groups]
    assert masses.shape == (6, 2)
    np.testing.assert_allclose(masses[names.index("tone=light,hair=long"), 0], 0.7, rtol=1e-6)
    np.testing.assert_allclose(masses[names.index("tone=dark,hair=short"), 1], 0.8, rtol=1e-6)
    np.testing.assert_allclose(masses[names.index("tone=dark,hair=long"), 1], 0.05, rtol=1e-5)
