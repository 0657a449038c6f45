"""Shared fixtures: the golden tiny StyleGAN2 (official pickle + official outputs); the demo
config and one tiny fitted distribution model (distribution and lab tests)."""

import fcntl
import importlib.util
import os
import pickle
import shutil
import tempfile

# One XLA compilation cache for the whole session: both pytest-xdist workers and every entry
# point a test starts as a subprocess load what another process already compiled (the demo
# models' steps are compiled once, not once per process: a smoke `generate` drops from ~40 to
# ~15 CPU seconds). Made by the first process (the controller), inherited by the others
# through the environment, removed at the end. Set before anything imports jax.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxfair-test-xla-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_unconfigure(config):
    if _OWN_CACHE:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
def once(tmp_path_factory):
    """``once(name, build)``: ``build()`` run by one process of the session, its value
    shared with the other pytest-xdist worker.

    Both workers may draw tests that use the same fixture (``--dist worksteal`` starts each
    on a contiguous half of the suite, then an idle one steals from the other, often from
    the middle of a module); a heavy one (a fitted model, a dataset, subprocess runs) would
    be built twice. The first worker to ask builds it under a file lock in the workers'
    common temporary directory and pickles the value (paths, arrays, dicts: what the tests
    read); the other waits and unpickles it.
    Files the build writes stay where it wrote them, in the session's temporary tree.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base

    def run(name, build):
        path = shared / f"once-{name}.pkl"
        with open(shared / f"once-{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if path.exists():
                with open(path, "rb") as f:
                    return pickle.load(f)
            value = build()
            with open(f"{path}.tmp", "wb") as f:
                pickle.dump(value, f)
            os.replace(f"{path}.tmp", path)
            return value

    return run


@pytest.fixture(scope="session")
def fitted(tmp_path_factory, once):
    """(config, workdir, meta) of the TINY fit, shared by every test file that asks."""

    def build():
        config = demo_config(**TINY)
        workdir = str(tmp_path_factory.mktemp("dist") / "model")
        from jaxfair.distribution import fit as distribution

        meta = distribution.fit(config, workdir, log=lambda s: None)
        return config, workdir, meta

    return once("fitted", build)
