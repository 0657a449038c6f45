"""Shared by the distribution-method tests: the demo config and one tiny fitted model."""

import importlib.util
import os

import ml_collections
import pytest

from jaxfair.sampling import distribution

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Small enough for CPU (labelling dominates), large enough for every tone x hair group.
TINY = dict(num_samples=2560, batch_size=256, min_group_samples=16, ae_steps=1000,
            holdout=256, num_components=2, em_steps=50, output_activation="linear")


def demo_config(**dist) -> ml_collections.ConfigDict:
    """configs/demo.py with absolute checkpoint paths and ``distribution`` overrides."""
    spec = importlib.util.spec_from_file_location("demo_cfg", os.path.join(ROOT, "configs",
                                                                           "demo.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config()
    c.generator = os.path.join(ROOT, c.generator)
    c.classifier = os.path.join(ROOT, c.classifier)
    c.distribution.update(dist)
    return c


@pytest.fixture(scope="session")
def make_config():
    return demo_config


@pytest.fixture(scope="session")
def tiny():
    return dict(TINY)


@pytest.fixture(scope="session")
def fitted(tmp_path_factory):
    """(config, workdir, meta) of the TINY fit, shared by every test file that asks."""
    config = demo_config(**TINY)
    workdir = str(tmp_path_factory.mktemp("dist") / "model")
    meta = distribution.fit(config, workdir, log=lambda s: None)
    return config, workdir, meta
