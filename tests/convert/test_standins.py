"""Random stand-ins of the real architectures: the numpy init follows the modules' own init,
calibrated heads spread their predictions, ``convert --random`` writes loadable, clearly
marked directories, and bad input is one line with exit status 2 and nothing written."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx
from standins_once import standins_once

import jaxfair
from jaxfair.convert import standins
from jaxfair.models import resnet, vggface
from jaxfair.models import stylegan2 as sg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module", autouse=True)
def once_per_argument():
    """The reduced random ffhq256 generator and its calibration images, drawn and rendered
    once per seed in this module: the three classifier stand-ins of seed 3 calibrate on the
    same 128 images, and the calibrated classifier's check renders the generator it was
    calibrated on."""
    with standins_once():
        yield


def _flat(tree):
    return {jax.tree_util.keystr(p): np.asarray(v)
            for p, v in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize("module,cfg,lr_mul", [
    (sg, sg.StyleGAN2Config.create(img_resolution=16, channel_base=256, channel_max=32,
                                   z_dim=32, w_dim=32, mapping_layers=2), 0.01),
    (resnet, resnet.ResNetConfig((1, 1), (8, 16), 8, 18), 0.0),
    (vggface, vggface.VGGFaceConfig(blocks=((4,), (8,)), fc_width=16, input_size=8), 0.0),
])
def test_numpy_init_follows_module_init(module, cfg, lr_mul):
    _, ref = module.init(cfg, jax.random.key(0))
    _, abstract = module.abstract(cfg)
    ours = _flat(standins._random_params(abstract, 0, lr_mul))
    ref = _flat(nnx.to_pure_dict(ref))
    assert ours.keys() == ref.keys()
    for k, r in ref.items():
        o = ours[k]
        assert o.shape == r.shape and o.dtype == r.dtype, k
        if np.all(r == r.flat[0]) and r.size > 1 or r.size == 1:  # constants: exactly equal
            np.testing.assert_array_equal(o, r, err_msg=k)
        elif r.size >= 64:  # random draws: the same scale (std within 35 %)
            assert 0.65 < o.std() / r.std() < 1.35, (k, o.std(), r.std())


def test_head_spreads_every_attribute():
    rng = np.random.default_rng(0)
    # Strongly correlated features with a large common offset (what random nets give).
    feats = 50 + rng.standard_normal((128, 3)) @ rng.standard_normal((3, 40)) * 5 \
        + 0.1 * rng.standard_normal((128, 40))
    w, b = standins.head_affine(feats, (7, 2), np.random.default_rng(1), components=3 + 4)
    logits = feats @ w + b
    for cols in (slice(0, 7), slice(7, 9)):
        z = logits[:, cols]
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        k = z.shape[1]
        assert np.bincount(p.argmax(1), minlength=k).min() > 0  # every class wins some
        np.testing.assert_allclose(p.mean(0), 1 / k, atol=1e-3)  # balanced on average
        assert p.max(1).min() < 0.6 and p.max(1).max() > 0.9  # confidence varies


def convert(*args, env=None):
    r = subprocess.run([sys.executable, "-m", "jaxfair.convert", *args], cwd=ROOT,
                       capture_output=True, text=True, env=env)
    return r.returncode, r.stdout, r.stderr


# The classifiers calibrate on rendered images: fairface7 ~11 CPU s (the 256 px calibration
# renders and the features, compiled and run), then fairface4 ~2.5 s and deepface 3.5-5 s
# on the same images (``once_per_argument``).
@pytest.mark.parametrize("name,scale", [
    ("ffhq1024", 1 / 32), ("ffhq512", 1 / 32), ("ffhq256", 1 / 16), ("fairface7", 1 / 8),
    ("fairface4", 1 / 8), ("deepface", 1 / 16)])
def test_random_writes_a_loadable_marked_directory(tmp_path, name, scale):
    st = standins.create(name, seed=3, channels_scale=scale)
    out = str(tmp_path / name)
    jaxfair.io.checkpoints.save(out, st.params, st.meta)
    with open(os.path.join(out, "meta.json")) as f:
        meta = json.load(f)
    assert meta["random_standin"] is True and meta["standin"]["seed"] == 3
    if name.startswith("ffhq"):
        G = jaxfair.load_generator(out)
        real = getattr(sg.StyleGAN2Config, f"ffhq_{name[4:]}")()
        assert G.config.img_resolution == real.img_resolution
        assert G.config.mapping_layers == real.mapping_layers == 8
        assert G.config.channels == standins.generator_config(name, scale).channels
        assert float(np.abs(np.asarray(G.state["mapping"]["w_avg"][...])).sum()) > 0
    else:
        C = jaxfair.load_classifier(out)
        assert C.schema.name == {"fairface7": "fairface7", "fairface4": "fairface4",
                                 "deepface": "deepface"}[name]


# 13-14 CPU s: calibration on the images of seed 0 and 64 more renders at 256 px.
def test_calibrated_classifier_reaches_every_class():
    """On 64 images of the generator it was calibrated on (not the calibration images)."""
    kind, cfg, schema, params = standins.random_classifier("fairface7", 0, 1 / 8)
    C = jaxfair.io.loading.classifier_from_params(kind, cfg, params, schema)
    gcfg, gparams = standins.random_generator("ffhq256", 0, standins.CALIBRATION_SCALE)
    G = jaxfair.io.loading.generator_from_params(gcfg, gparams)
    z = np.random.default_rng(99).standard_normal((64, gcfg.z_dim)).astype(np.float32)
    probs = C.predict(G.synthesis(G.mapping(z, 0.7)))
    for name in ("race", "gender"):
        p = np.asarray(probs[name])
        counts = np.bincount(p.argmax(1), minlength=p.shape[1])
        assert counts.min() > 0, (name, counts)
        assert np.ptp(p.max(1)) > 0.3, name


def test_calibration_renders_a_fixed_number_of_pixels_per_call():
    """One 8 px image per call gives the images of one call for all three (the batch only
    bounds memory: 16 images per call at 1024 px peaked at 9.4 GiB)."""
    G = sg.Generator.random(sg.StyleGAN2Config.create(
        z_dim=8, w_dim=8, img_resolution=8, mapping_layers=1, channel_base=64, channel_max=8),
        jax.random.key(0))
    one = standins.calibration_images(0, G, num=3, pixels=64)
    three = standins.calibration_images(0, G, num=3, pixels=3 * 64)
    assert one.shape == (3, 8, 8, 3)
    np.testing.assert_allclose(one, three, atol=1e-5)
    assert np.ptp(one, axis=0).max() > 0  # three different faces


def test_cli_random_reduced(tmp_path):
    out = tmp_path / "g"
    code, stdout, stderr = convert("--random=ffhq256", "--seed=1", "--channels_scale=0.0625",
                                   f"--out={out}")
    assert code == 0 and "RANDOM STAND-IN" in stdout, stderr
    with open(out / "meta.json") as f:
        assert json.load(f)["standin"] == {"name": "ffhq256", "seed": 1,
                                           "channels_scale": 0.0625}
    assert jaxfair.load_generator(str(out)).config.img_resolution == 256


def test_full_size_ffhq1024(tmp_path):
    out = tmp_path / "g"
    code, stdout, _ = convert("--random=ffhq1024", "--seed=0", f"--out={out}")
    assert code == 0 and "RANDOM STAND-IN" in stdout
    G = jaxfair.load_generator(str(out))
    assert G.config == sg.StyleGAN2Config.ffhq_1024()
    assert sg.num_params(G.state) == 30_370_060


@pytest.mark.parametrize("args,msg", [
    (["--random=ffhq2048"], "unknown stand-in 'ffhq2048'"),
    (["--random=ffhq256", "--channels_scale=2"], "channels_scale must be in (0, 1]"),
    (["--random=ffhq256", "--calibrate_on=x"], "calibrate_on applies to classifier"),
])
def test_bad_input_one_line_exit_2(tmp_path, args, msg):
    out = tmp_path / "out"
    code, stdout, stderr = convert(*args, f"--out={out}")
    assert code == 2 and stderr.strip().count("\n") == 0 and msg in stderr, stderr
    assert not out.exists() and os.listdir(tmp_path) == []
