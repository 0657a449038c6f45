"""Searches judged by the real demo models (skipped when checkpoints/demo is absent).

The demo generator's z has exact ground-truth labels (``labels_from_latent``), so accepted
candidates can be checked against the world itself, not only against the classifier.
"""

import jax
import numpy as np
import pytest
from demo_config import load as load_config

import jaxfair
from jaxfair.demo.fit_generator import labels_from_latent
from jaxfair.judge import attributes
from jaxfair.search import STRATEGIES, builder, readout, spaces

RAREST = "tone=dark,hair=long"  # 7 % x 30 % of the prior


@pytest.fixture(scope="module")
def models(demo_dirs):
    """(demo_dirs, G, C, prior): the demo models and their prior, loaded and estimated once
    for every strategy of the module."""
    G, C = jaxfair.load_generator(demo_dirs[0]), jaxfair.load_classifier(demo_dirs[1])
    return demo_dirs, G, C, spaces.estimate_prior(G, jax.random.key(0))


def search(models, strategy, chunks=10, want=16):
    """Accepted latents (distinct across searches) once ``want`` are archived or after
    ``chunks`` chunks of 10 generations."""
    demo_dirs, G, C, prior = models
    c = load_config()
    c.generator, c.classifier = demo_dirs
    # The acceptance threshold (config.threshold, 0.999, what every command uses), not 0.9:
    # at 0.9, SimpleGA, PSO and Open_ES accept 8-12 % of faces whose
    # ground truth is another group (the demo classifier agrees with the ground truth on
    # 96-98 % of faces, and population strategies find its mistakes); README has both.
    c.search.update(dict(strategy=strategy, population_size=16, num_searches=2,
                         generations_per_chunk=10, archive_capacity=32))
    engine = builder.build(builder.Settings.from_config(c), G, C)
    target = attributes.parse_target(RAREST, C.schema)
    targets = attributes.stack_targets([target] * 2)
    keys = jax.random.split(jax.random.key(1), 2)
    state = engine.init(G.state, C.state, prior, targets, keys)
    for _ in range(chunks):
        state, _ = engine.run(G.state, C.state, prior, targets, keys, state)
        if int(np.sum(state.archive.count)) >= want:
            break
    u, _, _, _ = readout.collect(state, engine.space, engine.duplicate_radius, 64)
    return u


def check_ground_truth(u, record_property):
    assert len(u) > 0, "no accepted candidates"
    labels = jax.device_get(labels_from_latent(u))
    right = (labels["tone"] == 2) & (labels["hair"] == 1)
    # Kept in the JUnit report (--junitxml) for the README's per-strategy table.
    record_property("accepted", len(u))
    record_property("ground_truth_rate", round(float(right.mean()), 4))
    assert right.mean() >= 0.95, f"{right.mean():.2%} of {len(u)} accepted are {RAREST}"


# The default strategy in the default run (~15 CPU s: its init and run compiled on the demo
# models, then up to 3,200 renders). Every other strategy: 13-45 CPU s each (~190 s for the
# nine), their own programs, then up to 9,600 demo renders; slow.
def test_default_strategy_finds_the_rarest_group(models, record_property):
    check_ground_truth(search(models, "Sep_CMA_ES"), record_property)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "Sep_CMA_ES"])
def test_every_strategy_finds_the_rarest_group(models, strategy, record_property):
    # 48, not 16: with ~16 accepted one wrong face already fails the 95 % bar, and plain
    # rejection's expected rate is the classifier's precision on prior samples (98.7 % at
    # 0.999, measured on 20,480 samples), so 16 would test luck, not the strategy.
    check_ground_truth(search(models, strategy, chunks=30, want=48), record_property)
