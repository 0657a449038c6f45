"""Demo model training: the latent -> world map, and that both fits learn (tiny configs)."""

import jax
import numpy as np
import pytest

from jaxfair.demo import fit_classifier, fit_generator, world
from jaxfair.judge import attributes


@pytest.fixture(scope="module")
def z():
    return jax.random.normal(jax.random.key(0), (20000, 64))


def test_factors_from_latent_are_uniform(z):
    u = np.asarray(fit_generator.factors_from_latent(z))
    assert u.shape == (20000, world.NUM_FACTORS) and (u > 0).all() and (u < 1).all()
    for col in (0, 1, 2, world.NUM_FACTORS - 1):
        q = np.quantile(u[:, col], [0.1, 0.25, 0.5, 0.75, 0.9])
        np.testing.assert_allclose(q, [0.1, 0.25, 0.5, 0.75, 0.9], atol=0.012)


def test_latent_labels_carry_the_world_bias(z):
    labels = fit_generator.labels_from_latent(z)
    for name, probs in world.BIAS.items():
        freq = np.bincount(np.asarray(labels[name]), minlength=len(probs)) / len(z)
        np.testing.assert_allclose(freq, probs, atol=0.015)


def test_factors_depend_only_on_latent_direction(z):
    """The generator normalises z first, so the target must not depend on |z|."""
    np.testing.assert_allclose(np.asarray(fit_generator.factors_from_latent(z[:8] * 3.0)),
                               np.asarray(fit_generator.factors_from_latent(z[:8])),
                               atol=1e-5)  # float32 rounding of the normalisation


def test_generator_fit_learns():
    cfg = fit_generator.GeneratorFitConfig(steps=12, batch_size=8, image_size=16, z_dim=40,
                                           w_dim=16, mapping_layers=2, channel_base=256,
                                           channel_max=16, log_every=4)
    logs = []
    gcfg, state, record = fit_generator.fit(cfg, log=logs.append)
    mses = [float(line.split("loss ")[1].split()[0]) for line in logs]
    assert len(mses) == 3 and mses[-1] < mses[0]
    assert gcfg.img_resolution == 16 and record["fit"]["steps"] == 12
    assert np.isfinite(np.asarray(state["mapping"]["w_avg"].value)).all()


def test_classifier_fit_learns():
    cfg = fit_classifier.ClassifierFitConfig(steps=12, batch_size=16, image_size=32,
                                             stem_width=8, widths=(8, 16), stage_sizes=(1, 1),
                                             log_every=4, learning_rate=3e-3)
    logs = []
    rcfg, _, _, record = fit_classifier.fit(cfg, log=logs.append)
    losses = [float(line.split("loss ")[1].split()[0]) for line in logs]
    assert losses[-1] < losses[0]
    assert rcfg.num_outputs == attributes.DEMO.num_outputs == 7


def test_demo_schema_matches_world():
    assert {a.name: a.labels for a in attributes.DEMO.attributes} == dict(world.SCHEMA)
