"""Shared fixtures: the golden tiny StyleGAN2 (official pickle + official outputs)."""

import os

import numpy as np
import pytest

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


@pytest.fixture(scope="session")
def golden_dir():
    return GOLDEN


@pytest.fixture(scope="session")
def sg2_pkl():
    return os.path.join(GOLDEN, "sg2_tiny.pkl")


@pytest.fixture(scope="session")
def sg2_ref():
    return dict(np.load(os.path.join(GOLDEN, "sg2_tiny_reference.npz")))


@pytest.fixture(scope="session")
def golden_G(sg2_pkl):
    import jaxfair

    return jaxfair.load_generator(sg2_pkl)
