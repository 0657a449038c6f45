"""Tiny random models for engine tests, and the demo checkpoints where a real judge is needed.

The demo checkpoints are looked up in ``$JAXFAIR_DEMO_CHECKPOINTS`` (default:
checkpoints/demo); tests that need them are skipped when they are absent.
"""

import os

import demo_config
import jax
import pytest
from flax import nnx

from jaxfair.io import checkpoints
from jaxfair.judge import attributes
from jaxfair.judge import preprocess as pp
from jaxfair.judge.classifier import Classifier
from jaxfair.models import resnet
from jaxfair.models import stylegan2 as sg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.environ.get("JAXFAIR_DEMO_CHECKPOINTS", os.path.join(ROOT, "checkpoints", "demo"))


def tiny_generator(resolution: int = 16, seed: int = 0) -> sg.Generator:
    cfg = sg.StyleGAN2Config.create(z_dim=16, w_dim=16, img_resolution=resolution,
                                    mapping_layers=2, channel_base=256, channel_max=16)
    return sg.Generator.random(cfg, jax.random.key(seed))


def tiny_classifier(size: int = 16, seed: int = 1) -> Classifier:
    cfg = resnet.ResNetConfig((1,), (8,), 8, attributes.DEMO.num_outputs)
    graphdef, state = resnet.init(cfg, jax.random.key(seed))
    return Classifier("resnet", cfg, graphdef, state, attributes.DEMO, pp.Preprocess.demo(size))


@pytest.fixture(scope="session")
def tiny_G():
    return tiny_generator()


@pytest.fixture(scope="session")
def tiny_C():
    return tiny_classifier()


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory, tiny_G, tiny_C):
    """The tiny models saved as checkpoint directories: (generator, classifier) paths."""
    root = tmp_path_factory.mktemp("tiny_models")
    g, c = str(root / "generator"), str(root / "classifier")
    checkpoints.save(g, nnx.to_pure_dict(sg.stored_weights(tiny_G.state)),
                     {"kind": "stylegan2", "config": tiny_G.config.to_dict()})
    checkpoints.save(c, nnx.to_pure_dict(tiny_C.state),
                     {"kind": "resnet", "config": tiny_C.config.to_dict(), "schema": "demo",
                      "preprocess": tiny_C.preprocess.to_dict()})
    return g, c


@pytest.fixture(scope="session")
def demo_dirs():
    g, c = os.path.join(DEMO, "generator"), os.path.join(DEMO, "classifier")
    if not (os.path.isdir(g) and os.path.isdir(c)):
        pytest.skip(f"demo checkpoints not found in {DEMO}")
    return g, c


load_config = demo_config.load
