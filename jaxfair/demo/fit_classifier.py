"""Trains the demo attribute classifier (a small jaxfair ResNet) on rendered demo faces.

Every step draws a fresh batch from the world (unlimited, exactly labelled data), with mild
augmentation (pixel noise and a random amount of blur) so the classifier also reads the
slightly softer images of the trained generator. BatchNorm layers keep identity statistics
(mean 0, variance 1): the network is small enough to train without batch normalisation,
and inference is then exactly what is trained.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxfair import train_loop as loop
from jaxfair.demo import draw
from jaxfair.judge import attributes
from jaxfair.judge import preprocess as pp
from jaxfair.models import resnet


@dataclasses.dataclass(frozen=True)
class ClassifierFitConfig:
    """Training settings of the demo classifier (recorded in its meta.json)."""

    seed: int = 0
    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 1e-3
    image_size: int = 64
    stem_width: int = 32
    widths: tuple[int, ...] = (32, 64, 128, 128)
    stage_sizes: tuple[int, ...] = (1, 1, 1, 1)
    noise_std: float = 0.03
    log_every: int = 100

    def resnet_config(self) -> resnet.ResNetConfig:
        return resnet.ResNetConfig(stage_sizes=self.stage_sizes, widths=self.widths,
                                   stem_width=self.stem_width,
                                   num_outputs=attributes.DEMO.num_outputs)


def _blur3(x: jnp.ndarray) -> jnp.ndarray:
    """[1, 2, 1]^2 / 16 blur of NHWC images, edge-replicated."""
    p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    rows = (p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]) / 4
    return (rows[:, :, :-2] + 2 * rows[:, :, 1:-1] + rows[:, :, 2:]) / 4


def augment(key: jax.Array, images: jnp.ndarray, noise_std: float) -> jnp.ndarray:
    """Random blend towards a blurred copy, plus Gaussian pixel noise; [N, H, W, 3]."""
    kb, kn = jax.random.split(key)
    t = jax.random.uniform(kb, (images.shape[0], 1, 1, 1))
    x = images + t * (_blur3(images) - images)
    return x + noise_std * jax.random.normal(kn, x.shape)


def loss_and_labels(logits: jnp.ndarray, labels: dict[str, jnp.ndarray]) -> jnp.ndarray:
    """Sum over the schema's attributes of the mean softmax cross-entropy."""
    total = 0.0
    for a in attributes.DEMO.attributes:
        lg = logits[:, a.start:a.start + len(a.classes)]
        total = total + jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
            lg, labels[a.name]))
    return total


def fit(cfg: ClassifierFitConfig, log: Callable[[str], None] = print
        ) -> tuple[resnet.ResNetConfig, nnx.GraphDef, nnx.State, dict]:
    """Trains the classifier. Returns (architecture, graphdef, state, training record)."""
    rcfg = cfg.resnet_config()
    spec = pp.Preprocess.demo(cfg.image_size)
    k_init, k_train = jax.random.split(jax.random.key(cfg.seed))
    graphdef, state = resnet.init(rcfg, k_init)
    params = state.filter(nnx.Param)
    rest = state.filter(lambda path, v: not isinstance(v, nnx.Param))
    schedule = optax.cosine_decay_schedule(cfg.learning_rate, cfg.steps, alpha=0.05)
    tx = optax.adam(schedule)
    opt_state = tx.init(params)

    def loss_fn(params, x, labels):
        logits = resnet.logits(graphdef, nnx.merge_state(params, rest), x)
        return loss_and_labels(logits, labels)

    @jax.jit
    def step(params, opt_state, key):
        k_data, k_aug = jax.random.split(key)
        images, labels = draw.sample(k_data, cfg.batch_size, cfg.image_size)
        x = pp.normalize(pp.to_unit_range(augment(k_aug, images, cfg.noise_std)), spec)
        loss, grads = jax.value_and_grad(loss_fn)(params, x, labels)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params, _, final, seconds = loop.train(step, params, opt_state, k_train, cfg.steps,
                                           cfg.log_every, log, "classifier")
    record = {"fit": dataclasses.asdict(cfg), "final_loss": final,
              "train_seconds": round(seconds, 1)}
    return rcfg, graphdef, nnx.merge_state(params, rest), record
