"""A loaded attribute classifier: module weights + output schema + input preprocessing.

The pure functions ``logits`` and ``predict`` take the module's graphdef (static) and state
(the weights, an argument) so one compiled program serves any weights of an architecture;
``Classifier`` is a thin wrapper holding them with jitted methods, as ``Generator`` does.

``predict_with_features`` returns the probabilities and the penultimate features of one
network pass (the search archive's feature-space duplicate test needs both), optionally
computing the network in bfloat16.

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

from jaxfair.judge import attributes
from jaxfair.judge import preprocess as pp
from jaxfair.models import resnet, vggface

COMPUTE_DTYPES = ("float32", "bfloat16")


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


def logits_and_features(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array,
                        dtype: str = "float32") -> tuple[jax.Array, jax.Array]:
    """Preprocessed x [N, S, S, 3] -> (logits [N, num_outputs], features [N, F]), one pass.

    ResNet: features are the pooled last stage and logits ``fc(features)``; DeepFace: fc7 of
    the first backbone and every head on its own backbone (as ``DeepFace.__call__``).

    Args:
      dtype: 'float32' or 'bfloat16' (static): the network's compute dtype (ResNet only;
        see jaxfair.models.resnet for what stays float32). Outputs are float32.
    """
    if dtype not in COMPUTE_DTYPES:
        raise ValueError(f"classifier dtype must be one of {', '.join(COMPUTE_DTYPES)}, "
                         f"got {dtype!r}")
    model = nnx.merge(graphdef, state)
    if isinstance(model, resnet.ResNet):
        f = model.features(x.astype(dtype))
        return model.fc(f), f
    if isinstance(model, vggface.DeepFace):
        if dtype != "float32":
            # DeepFace.__call__ casts its input to float32 and its convs do not cast their
            # kernels: a bf16 request would silently run in float32.
            raise ValueError("bfloat16 compute is implemented for the ResNet (FairFace) "
                             "classifiers only; use dtype='float32' with DeepFace")
        model._check(x)
        n = x.shape[0]
        feats = [bb(x.astype(jnp.float32)) for bb in model.backbones]  # [N, 1, 1, F] each
        out = [getattr(model, h)(feats[i]).reshape(n, -1)
               for h, i in zip(model.heads, model.head_backbone)]
        return jnp.concatenate(out, axis=-1), feats[0].reshape(n, -1)
    raise ValueError(f"unknown classifier module {type(model).__name__}")


def predict_with_features(graphdef: nnx.GraphDef, state: nnx.State, images: jax.Array,
                          spec: pp.Preprocess, schema: attributes.Schema,
                          dtype: str = "float32") -> tuple[dict[str, jax.Array], jax.Array]:
    """Generator images [N, H, W, 3] -> ({attribute: probabilities [N, K]}, features [N, F]).

    One network pass; preprocessing and softmax in float32 whatever ``dtype`` (static).
    """
    lg, f = logits_and_features(graphdef, state, pp.preprocess(images, spec), dtype)
    return attributes.probabilities(lg, schema), f


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
