"""The unguided reference sample: a binned rejection sample of the reference key stream,
by the dataset's rule, with its cost; deterministic; a short group reports its size."""

import os

import jax
import numpy as np
import pytest
from dataset_writer import DEMO

import jaxfair
from jaxfair import keys as keylib
from jaxfair.judge import attributes
from jaxfair.report import reference
from jaxfair.search import objective as obj

GROUPS = ["tone=light,hair=short", "tone=dark,hair=long"]
BATCH = 16


@pytest.fixture(scope="module")
def models():
    return (jaxfair.load_generator(os.path.join(DEMO, "generator")),
            jaxfair.load_classifier(os.path.join(DEMO, "classifier")))


def test_draw_is_binned_rejection_of_the_reference_stream(models):
    G, C = models
    rule = obj.Objective(threshold=0.99)
    need = {GROUPS[0]: 4, GROUPS[1]: 50}  # the rare group cannot reach 50 in 48 samples
    a = reference.draw(G, C, rule, GROUPS, need, 48, BATCH, 1.0, "const", seed=0)
    assert a.evaluations == 48 and len(a.z[GROUPS[0]]) == 4 and len(a.z[GROUPS[1]]) < 50
    root = keylib.root(0)
    z = np.concatenate([np.asarray(jax.random.normal(
        jax.random.split(keylib.reference(root, b))[0], (BATCH, G.config.z_dim)))
        for b in range(3)])
    probs = C.predict(G(z))
    for g in GROUPS:
        ok = np.asarray(obj.accepted(rule, probs, attributes.parse_target(g, C.schema)))
        want = z[ok][:need[g]]
        np.testing.assert_allclose(a.z[g].reshape(-1, z.shape[1]), want, rtol=0, atol=0)
    rows = z[np.asarray(obj.accepted(rule, probs, attributes.parse_target(GROUPS[0],
                                                                          C.schema)))][:4]
    np.testing.assert_allclose(a.features[GROUPS[0]], C.features(G(rows)), rtol=1e-4,
                               atol=1e-4)
    b = reference.draw(G, C, rule, GROUPS, need, 48, BATCH, 1.0, "const", seed=0)
    for g in GROUPS:
        assert np.array_equal(a.z[g], b.z[g]) and np.array_equal(a.features[g], b.features[g])
    # Stops as soon as every group has its need: one batch here.
    c = reference.draw(G, C, rule, GROUPS, {GROUPS[0]: 1}, 48, BATCH, 1.0, "const", seed=0)
    assert c.evaluations == BATCH and len(c.z[GROUPS[1]]) == 0
