"""Random stand-ins of the real architectures: seeded weights in the real shapes.

A user who does not have (or may not yet download) NVIDIA's FFHQ generators, FairFace or
DeepFace can still size a machine, time every step and smoke-test a run end to end:

  python -m jaxfair.convert --random=ffhq1024 --seed=0 --out=checkpoints/random/ffhq1024
  python -m jaxfair.convert --random=fairface7 --seed=0 --out=checkpoints/random/fairface7

Names (``STANDINS``): ffhq1024 / ffhq512 / ffhq256 (``StyleGAN2Config.ffhq_1024()`` etc.),
fairface7 (torchvision ResNet-34, 18-way FairFace head), fairface4 (the 4-race model) and
deepface (VGG-Face with the race head). ``channels_scale`` < 1 shrinks every width (feature
maps, ResNet stages, VGG blocks and fc) but keeps the real resolution, mapping network,
depth and heads: what CI runs end to end.

The weights are NOT real: ``meta.json`` says ``"random_standin": true`` with the name, seed
and scale (``jaxfair.io.loading`` logs a warning when it loads one, and the dataset's
plan.json records it). Images are random textures, predictions are arbitrary.

Generators: the module's own random init, with ``w_avg`` set to the mean of ``mapping(z)``
over 4,096 prior draws (what training tracks), so truncation pulls towards the real centre.

Classifiers: a random network with untrained BatchNorm statistics gives logits whose
softmax is either saturated on one class for every image or uniform. The head is therefore
calibrated, per attribute, on ``CALIBRATION_IMAGES`` images (psi 0.7) of a generator: by
default a reduced random generator (``ffhq256`` family, ``channels_scale`` 1/16, the same
seed), or the one named by ``calibrate_on`` (``convert --calibrate_on=DIR``). The top
principal directions of the features are whitened, each attribute reads K random
orthonormal directions there (uncorrelated logits of standard deviation ``LOGIT_STD``) and
its biases are shifted until every class has mean probability 1/K on the calibration
images (``head_affine``). On that generator every class is the argmax of some images and
the largest probability spreads over (1/K, 1): thresholds up to ~0.9 are met by some images
of every group. On another random generator's textures the balance shifts (some classes
may never win): calibrate on the generator the stand-in will judge. The affine map folds
into the head's own weight and bias: the stand-in is an ordinary checkpoint of the real
architecture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxfair.judge import attributes
from jaxfair.judge import preprocess as pp
from jaxfair.models import resnet, vggface
from jaxfair.models import stylegan2 as sg

GENERATORS = ("ffhq1024", "ffhq512", "ffhq256")
CLASSIFIERS = ("fairface7", "fairface4", "deepface")
STANDINS = GENERATORS + CLASSIFIERS
CALIBRATION_IMAGES = 128
CALIBRATION_SCALE = 1 / 16  # width of the generator whose images calibrate the heads
CALIBRATION_PSI = 0.7  # the real jobs' truncation
# Pixels rendered per call (16 images at 256 px): the activations scale with pixels, so a
# 1024 px generator renders one image per call (16 took 9.4 GiB peak on CPU).
CALIBRATION_PIXELS = 16 * 256 * 256
LOGIT_STD = 2.0  # per-class logit spread over images after calibration
WHITEN_COMPONENTS = 16  # principal feature directions the heads read
W_AVG_SAMPLES = 4096


class StandinError(ValueError):
    """An unknown stand-in name or an invalid scale."""


@dataclasses.dataclass(frozen=True)
class Standin:
    """A stand-in checkpoint in memory (what ``checkpoints.save`` writes).

    Attributes:
      kind: 'stylegan2', 'resnet' or 'vggface'.
      config: the architecture dataclass.
      params: nested dict of numpy arrays shaped like the module state.
      meta: meta.json contents (kind, config, source, schema, random_standin, standin).
    """

    kind: str
    config: object
    params: dict
    meta: dict


def _scaled(width: int, scale: float) -> int:
    return max(1, int(round(width * scale)))


def generator_config(name: str, channels_scale: float = 1.0) -> sg.StyleGAN2Config:
    """The real preset of ``name`` with every block's channels times ``channels_scale``."""
    cfg = {"ffhq1024": sg.StyleGAN2Config.ffhq_1024, "ffhq512": sg.StyleGAN2Config.ffhq_512,
           "ffhq256": sg.StyleGAN2Config.ffhq_256}[name]()
    if channels_scale == 1.0:
        return cfg
    return dataclasses.replace(cfg, channels=tuple(_scaled(c, channels_scale)
                                                   for c in cfg.channels))


def classifier_config(name: str, channels_scale: float = 1.0):
    """(kind, architecture, schema name) of a classifier stand-in, widths scaled."""
    if name in ("fairface7", "fairface4"):
        r = resnet.ResNetConfig.resnet34(18)
        r = dataclasses.replace(r, widths=tuple(_scaled(w, channels_scale) for w in r.widths),
                                stem_width=_scaled(r.stem_width, channels_scale))
        return "resnet", r, name
    v = vggface.VGGFaceConfig(heads=("race",), head_sizes=(6,), head_backbone=(0,))
    v = dataclasses.replace(
        v, blocks=tuple(tuple(_scaled(w, channels_scale) for w in b) for b in v.blocks),
        fc_width=_scaled(v.fc_width, channels_scale))
    return "vggface", v, "deepface"


def _leaf_init(path: tuple[str, ...], shape: tuple[int, ...], rng: np.random.Generator,
               lr_mul: float) -> np.ndarray:
    """The modules' own init rule for one leaf (jaxfair.models: StyleGAN2's official init,
    He-normal convs and identity BatchNorm for ResNet and VGG-Face), drawn with numpy.

    Why not ``module.init``: eagerly it dispatches (and compiles) hundreds of small random
    ops, jitted it is one very large program; either takes minutes for a 1024 px generator
    on a loaded CPU. ``tests/convert/test_standins.py`` checks these rules against the
    modules' init on tiny configs.
    """
    name, parent = path[-1], path[-2] if len(path) > 1 else ""
    batchnorm = parent.startswith("bn") or (len(path) > 2 and path[-3] == "downsample"
                                            and len(shape) == 1)
    if name == "running_var" or (name == "bias" and parent == "affine") or \
            (name == "weight" and batchnorm):
        return np.ones(shape, np.float32)  # BN variance and scale 1; StyleGAN2 affine bias 1
    if name in ("bias", "noise_strength", "running_mean", "w_avg"):
        return np.zeros(shape, np.float32)
    x = rng.standard_normal(shape, np.float32)
    if path[0] == "mapping":
        return x / lr_mul  # equalized lr: the stored weight is N(0, 1 / lr_mul^2)
    if len(shape) == 4 and name in ("weight", "kernel") and lr_mul == 0:
        return x * np.float32(np.sqrt(2 / (shape[0] * shape[1] * shape[2])))  # He normal
    if len(shape) == 2 and lr_mul == 0:
        return x / np.float32(np.sqrt(shape[0]))  # ResNet fc (replaced by the calibrated head)
    return x


def _random_params(abstract: nnx.State, seed, lr_mul: float) -> dict:
    """Numpy weights for every leaf of ``abstract`` (lr_mul 0: a classifier: He init)."""
    rng = np.random.default_rng(seed)
    pure = nnx.to_pure_dict(abstract)
    return jax.tree_util.tree_map_with_path(
        lambda p, leaf: _leaf_init(tuple(str(getattr(k, "key", k)) for k in p),
                                   tuple(leaf.shape), rng, lr_mul), pure)


def random_generator(name: str, seed: int, channels_scale: float = 1.0
                     ) -> tuple[sg.StyleGAN2Config, dict]:
    """(config, params) of a random generator with ``w_avg`` = mean of mapping(z)."""
    cfg = generator_config(name, channels_scale)
    graphdef, abstract = sg.abstract(cfg)
    params = _random_params(abstract, seed, cfg.mapping_lr_mul)
    z = np.random.default_rng([seed, 1]).standard_normal((W_AVG_SAMPLES, cfg.z_dim),
                                                        np.float32)
    mapping = {"mapping": params["mapping"]}
    w = jax.jit(lambda m, z: _mapping_only(graphdef, abstract, m, z))(mapping, z)
    params["mapping"]["w_avg"] = np.asarray(jnp.mean(w, axis=0), np.float32)
    return cfg, params


def _mapping_only(graphdef, abstract: nnx.State, mapping: dict, z: jax.Array) -> jax.Array:
    """w [N, w_dim] = mapping(z) (psi 1) with only the mapping weights given (the synthesis
    weights are not needed, so they do not enter the compiled program)."""
    state = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), abstract)
    nnx.replace_by_pure_dict(state, mapping)
    return sg.mapping(graphdef, state, z, 1.0)[:, 0]


def calibration_images(seed: int, generator: sg.Generator | None = None,
                       num: int = CALIBRATION_IMAGES, pixels: int = CALIBRATION_PIXELS
                       ) -> np.ndarray:
    """[num, R, R, 3] images in [-1, 1] (psi ``CALIBRATION_PSI``) of ``generator``, by
    default of a reduced random ffhq256 generator of the same seed, rendered
    ``pixels // R**2`` (at least 1) per call."""
    if generator is None:
        cfg, params = random_generator("ffhq256", seed, CALIBRATION_SCALE)
        graphdef, state = sg.abstract(cfg)
        nnx.replace_by_pure_dict(state, jax.device_put(params))
    else:
        cfg, graphdef, state = generator.config, generator.graphdef, generator.state

    @jax.jit
    def render(state, z):
        ws = sg.mapping(graphdef, state, z, CALIBRATION_PSI)
        return sg.synthesis(graphdef, state, ws, "const", None)

    batch = max(1, pixels // cfg.img_resolution ** 2)
    z = np.random.default_rng([seed, 2]).standard_normal((num, cfg.z_dim), np.float32)
    return np.concatenate([np.asarray(render(state, z[i:i + batch]))
                           for i in range(0, num, batch)])


def head_affine(feats: np.ndarray, sizes: tuple[int, ...], rng: np.random.Generator,
                components: int = WHITEN_COMPONENTS, balance_steps: int = 100
                ) -> tuple[np.ndarray, np.ndarray]:
    """A head ``logits = feats @ W + b`` spreading every attribute's softmax over images.

    Random-network features are strongly correlated (a few directions carry most of the
    variance), so random directions in raw feature space give correlated class logits and
    a few classes win almost every image. Instead, per attribute with K classes: whiten the
    top ``components`` principal directions of the calibration features, take K random
    orthonormal directions there (uncorrelated logits of equal variance ``LOGIT_STD``), then
    shift the biases until every class has mean probability 1/K on the calibration images
    (``b_k -= log(K mean_n p_nk)``, a fixed point iteration).

    Args:
      feats: [N, F] penultimate features of N calibration images.
      sizes: classes per attribute, in output order (sum = outputs).
      rng: draws the random directions.
      components: whitened principal directions used (at most N - 1 and F).
      balance_steps: bias iterations.

    Returns:
      (W [F, sum(sizes)], b [sum(sizes)]).
    """
    feats = np.asarray(feats, np.float64)
    mu = feats.mean(0)
    _, sv, vt = np.linalg.svd(feats - mu, full_matrices=False)
    r = int(min(components, np.sum(sv > sv[0] * 1e-6), len(feats) - 1))
    if r < max(sizes):
        raise StandinError(f"calibration features span {r} directions, fewer than the "
                           f"{max(sizes)} classes of an attribute")
    whiten = vt[:r].T / sv[:r] * np.sqrt(len(feats))  # [F, r]: unit variance, uncorrelated
    w = np.zeros((feats.shape[1], sum(sizes)))
    b = np.zeros(sum(sizes))
    start = 0
    for k in sizes:
        q, _ = np.linalg.qr(rng.standard_normal((r, k)))
        cols = slice(start, start + k)
        w[:, cols] = whiten @ q * LOGIT_STD
        logits = (feats - mu) @ w[:, cols]
        bias = -logits.mean(0)
        for _ in range(balance_steps):
            z = logits + bias
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            bias -= np.log(k * p.mean(0))
        b[cols] = bias - mu @ w[:, cols]
        start += k
    return w.astype(np.float32), b.astype(np.float32)


def _sizes(schema: attributes.Schema) -> tuple[int, ...]:
    sizes = tuple(len(a.classes) for a in schema.attributes)
    # Outputs no attribute reads (fairface4's unused 14 of 18) keep the calibrated scale too.
    return sizes + ((schema.num_outputs - sum(sizes),) if schema.num_outputs > sum(sizes)
                    else ())


def random_classifier(name: str, seed: int, channels_scale: float = 1.0,
                      images: np.ndarray | None = None) -> tuple[str, object, str, dict]:
    """(kind, config, schema name, params) of a calibrated random classifier.

    Args:
      images: [N, H, W, 3] calibration images in [-1, 1]; default ``calibration_images(seed)``.
    """
    kind, cfg, schema_name = classifier_config(name, channels_scale)
    module = resnet if kind == "resnet" else vggface
    graphdef, state = module.abstract(cfg)
    nnx.replace_by_pure_dict(state, _random_params(state, [seed, 3], 0.0))
    spec = (pp.Preprocess.fairface() if kind == "resnet"
            else pp.Preprocess.deepface(size=cfg.input_size))
    schema = (attributes.resnet_schema(schema_name, cfg.num_outputs) if kind == "resnet"
              else attributes.deepface_schema(cfg.heads))
    images = calibration_images(seed) if images is None else images
    feats_fn = jax.jit(lambda s, im: nnx.merge(graphdef, s).features(pp.preprocess(im, spec)))
    feats = np.concatenate([np.asarray(feats_fn(state, images[i:i + 16]))
                            for i in range(0, len(images), 16)])
    w, b = head_affine(feats, _sizes(schema), np.random.default_rng([seed, 4]))
    params = jax.tree.map(np.asarray, nnx.to_pure_dict(state))
    if kind == "resnet":
        params["fc"]["weight"], params["fc"]["bias"] = w, b
    else:
        params["race"]["kernel"], params["race"]["bias"] = w[None, None], b
    return kind, cfg, schema_name, params


def create(name: str, seed: int = 0, channels_scale: float = 1.0,
           calibrate_on: str | None = None,
           load_generator: Callable[[str], sg.Generator] | None = None) -> Standin:
    """A stand-in of ``name`` (one of ``STANDINS``) with weights drawn from ``seed``.

    Args:
      calibrate_on: classifiers: a generator checkpoint whose images calibrate the heads
        (the predictions spread over the images of THIS generator; default a reduced
        random ffhq256 generator of the same seed). Random networks see the textures of
        different random generators differently: calibrate on the generator the stand-in
        will judge, or some classes may never win on its images.
      load_generator: reads the ``calibrate_on`` checkpoint (``jaxfair.load_generator``;
        passed in because importers sit below the loading layer). Needed with
        ``calibrate_on``.

    Raises:
      StandinError: unknown name, ``channels_scale`` outside (0, 1], or ``calibrate_on``
        without ``load_generator``.
    """
    if name not in STANDINS:
        raise StandinError(f"unknown stand-in {name!r}; choose from {', '.join(STANDINS)}")
    if not 0 < channels_scale <= 1:
        raise StandinError(f"channels_scale must be in (0, 1], got {channels_scale}")
    if calibrate_on and name in GENERATORS:
        raise StandinError("calibrate_on applies to classifier stand-ins only")
    info = {"name": name, "seed": int(seed), "channels_scale": float(channels_scale)}
    source = {"format": "random-standin", "file": None, "sha256": None, **info}
    if name in GENERATORS:
        cfg, params = random_generator(name, seed, channels_scale)
        kind, schema = "stylegan2", None
    else:
        images, calib = None, {"generator": "ffhq256", "channels_scale": CALIBRATION_SCALE}
        if calibrate_on:
            if load_generator is None:
                raise StandinError("calibrate_on needs load_generator")
            from jaxfair.io import checkpoints

            images = calibration_images(seed, load_generator(calibrate_on))
            calib = {"generator": calibrate_on,
                     "sha256": checkpoints.fingerprint(calibrate_on)}
        kind, cfg, schema, params = random_classifier(name, seed, channels_scale, images)
        info["calibration"] = {**calib, "images": CALIBRATION_IMAGES, "psi": CALIBRATION_PSI,
                               "logit_std": LOGIT_STD, "components": WHITEN_COMPONENTS}
    meta = {"kind": kind, "config": cfg.to_dict(), "source": source, "random_standin": True,
            "standin": info}
    if schema is not None:
        meta["schema"] = schema
    return Standin(kind, cfg, params, meta)


def describe(meta: dict) -> dict | None:
    """The stand-in record of a checkpoint's meta.json ({name, seed, ...}), None if real."""
    if not meta.get("random_standin"):
        return None
    return dict(meta.get("standin", {}))
