"""A loaded attribute classifier: module weights + output schema + input preprocessing.

The pure functions ``logits`` and ``predict`` take the module's graphdef (static) and state
(the weights, an argument) so one compiled program serves any weights of an architecture;
``Classifier`` is a thin wrapper holding them with jitted methods, as ``Generator`` does.

Example:
  C = jaxfair.load_classifier("checkpoints/fairface")
  probs = C.predict(G.synthesis(ws))      # {'race': [N, 7], 'gender': [N, 2], 'age': [N, 9]}
  z = C.logits(x)                         # x already preprocessed: [N, 224, 224, 3]
  C.schema.attribute("race").labels       # ('White', 'Black', ...)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxfair import attributes
from jaxfair import preprocess as pp


def logits(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array) -> jax.Array:
    """Preprocessed x [N, S, S, 3] -> logits [N, num_outputs] (pure; any classifier module)."""
    return nnx.merge(graphdef, state)(x)


def predict(graphdef: nnx.GraphDef, state: nnx.State, images: jax.Array,
            spec: pp.Preprocess, schema: attributes.Schema) -> dict[str, jax.Array]:
    """Generator images [N, H, W, 3] in [-1, 1] -> {attribute: probabilities [N, K]} (pure).

    Args:
      spec: preprocessing (static).
      schema: output schema (static).
    """
    return attributes.probabilities(logits(graphdef, state, pp.preprocess(images, spec)),
                                    schema)


def features(graphdef: nnx.GraphDef, state: nnx.State, images: jax.Array,
             spec: pp.Preprocess) -> jax.Array:
    """Generator images [N, H, W, 3] -> penultimate features [N, F] (pure).

    ResNet: the global-average-pooled last stage (F = 512 for ResNet-34); DeepFace: fc7 of
    the first backbone (F = 4096). A generic image-similarity space, not a face-identity one.
    """
    return nnx.merge(graphdef, state).features(pp.preprocess(images, spec))


_logits_jit = jax.jit(logits, static_argnums=0)
_predict_jit = jax.jit(predict, static_argnums=(0, 3, 4))
_features_jit = jax.jit(features, static_argnums=(0, 3))


class Classifier:
    """A loaded classifier with jitted ``logits`` and ``predict``.

    Attributes:
      kind: 'resnet' (FairFace) or 'vggface' (DeepFace).
      config: the architecture dataclass.
      graphdef, state: the split module; ``state`` holds the weights.
      schema: which logits belong to which attribute and class.
      preprocess: crop box, input size and normalisation used by ``predict``.
      meta: checkpoint metadata (source file, sha256, ...).
    """

    def __init__(self, kind: str, config, graphdef: nnx.GraphDef, state: nnx.State,
                 schema: attributes.Schema, preprocess: pp.Preprocess, meta: dict | None = None):
        self.kind = kind
        self.config = config
        self.graphdef = graphdef
        self.state = state
        self.schema = schema
        self.preprocess = preprocess
        self.meta = meta or {}

    def logits(self, x) -> jax.Array:
        """Preprocessed NHWC input [N, S, S, 3] -> logits [N, schema.num_outputs]."""
        return _logits_jit(self.graphdef, self.state, jnp.asarray(x, jnp.float32))

    def probabilities(self, x) -> dict[str, jax.Array]:
        """Preprocessed input -> {attribute: softmax over its classes [N, K]}."""
        return attributes.probabilities(self.logits(x), self.schema)

    def predict(self, images) -> dict[str, jax.Array]:
        """Generator-range images [N, H, W, 3] in [-1, 1] -> {attribute: probabilities [N, K]}.

        Crops ``self.preprocess.box``, resizes (antialiased) and normalises inside the same
        compiled function as the network.
        """
        return _predict_jit(self.graphdef, self.state, jnp.asarray(images, jnp.float32),
                            self.preprocess, self.schema)


    def features(self, images) -> jax.Array:
        """Generator-range images [N, H, W, 3] -> penultimate features [N, F]."""
        return _features_jit(self.graphdef, self.state, jnp.asarray(images, jnp.float32),
                             self.preprocess)


def default_preprocess(kind: str, config) -> pp.Preprocess:
    """The preprocessing each classifier family was trained with, for FFHQ-aligned images."""
    if kind == "resnet":
        return pp.Preprocess.fairface()
    if kind == "vggface":
        return pp.Preprocess.deepface(size=config.input_size)
    raise ValueError(f"unknown classifier kind {kind!r}")
