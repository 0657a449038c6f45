"""Loading models by path: a converted jaxfair directory, or a source file converted in memory."""

from __future__ import annotations

import os

import jax
from absl import logging
from flax import nnx

from jaxfair.io import checkpoints
from jaxfair.judge import attributes
from jaxfair.judge import preprocess as pp
from jaxfair.judge.classifier import Classifier, default_preprocess
from jaxfair.models import resnet, vggface
from jaxfair.models import stylegan2 as sg

# Classifier kinds: (config class, abstract-module builder).
_CLASSIFIERS = {
    "resnet": (resnet.ResNetConfig, resnet.abstract),
    "vggface": (vggface.VGGFaceConfig, vggface.abstract),
}


def warn_if_standin(path: str, meta: dict) -> None:
    """Logs one warning line when ``meta`` marks random stand-in weights (convert --random)."""
    if meta.get("random_standin"):
        info = meta.get("standin", {})
        logging.warning("%s holds RANDOM STAND-IN weights (%s, seed %s), not a trained model: "
                        "images and predictions are meaningless", path, info.get("name"),
                        info.get("seed"))


def generator_from_params(cfg: sg.StyleGAN2Config, params: dict, meta: dict | None = None
                          ) -> sg.Generator:
    """Builds a Generator from a nested dict of arrays shaped like the module state."""
    graphdef, state = sg.abstract(cfg)
    nnx.replace_by_pure_dict(state, jax.device_put(params))
    return sg.Generator(cfg, graphdef, state, meta)


def load_generator(path: str) -> sg.Generator:
    """Loads a StyleGAN2 generator.

    Args:
      path: a directory written by ``python -m jaxfair.convert`` (or ``checkpoints.save``), or
        an NVIDIA ``.pkl`` / rosinality ``.pt`` file, converted in memory (nothing written).

    Returns:
      A ``Generator`` with ``.mapping``, ``.synthesis`` and ``__call__``.
    """
    if os.path.isdir(path):
        meta = checkpoints.read_meta(path)
        if meta["kind"] != "stylegan2":
            raise checkpoints.CheckpointDirError(
                f"{path} holds a {meta['kind']!r} checkpoint, not a StyleGAN2 generator")
        warn_if_standin(path, meta)
        cfg = sg.StyleGAN2Config.from_dict(meta["config"])
        _, abstract = sg.abstract(cfg)
        _, params = checkpoints.load(path, nnx.to_pure_dict(abstract))
        return generator_from_params(cfg, params, meta)
    from jaxfair.convert import formats
    from jaxfair.convert.guard import CheckpointError

    try:
        conv = formats.read(path)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if conv.kind != "stylegan2":
        raise CheckpointError(f"{path}: holds a {conv.kind!r} classifier, not a StyleGAN2 "
                              "generator")
    return generator_from_params(conv.config, conv.params, conv.meta())


def _schema(kind: str, config, name: str | None) -> attributes.Schema:
    if kind == "vggface":
        return attributes.deepface_schema(config.heads)
    return attributes.resnet_schema(name or "auto", config.num_outputs)


def classifier_from_params(kind: str, config, params: dict, schema: str | None = None,
                           meta: dict | None = None, preprocess: pp.Preprocess | None = None
                           ) -> Classifier:
    """Builds a Classifier from a nested dict of arrays shaped like the module state.

    Args:
      kind: 'resnet' or 'vggface'.
      config: ResNetConfig or VGGFaceConfig.
      schema: schema name recorded at conversion ('fairface7', 'fairface4'); ResNets only.
      preprocess: overrides the family's default (``classifier.default_preprocess``).
    """
    if kind not in _CLASSIFIERS:
        raise ValueError(f"unknown classifier kind {kind!r}; known: {', '.join(_CLASSIFIERS)}")
    graphdef, state = _CLASSIFIERS[kind][1](config)
    nnx.replace_by_pure_dict(state, jax.device_put(params))
    return Classifier(kind, config, graphdef, state, _schema(kind, config, schema),
                      preprocess or default_preprocess(kind, config), meta)


def load_classifier(path: str, preprocess: pp.Preprocess | None = None,
                    schema: str = "auto") -> Classifier:
    """Loads an attribute classifier (FairFace ResNet or DeepFace VGG-Face).

    Args:
      path: a directory written by ``python -m jaxfair.convert``, or source files converted
        in memory (nothing written): a FairFace torchvision ``.pt``, or one to three DeepFace
        ``.h5`` files as a comma-separated string.
      preprocess: crop box / size / normalisation for ``predict``; default: the family's own
        (``Preprocess.fairface()`` or ``Preprocess.deepface()``) for FFHQ-aligned images.
      schema: for a source ``.pt`` only: 'auto', 'fairface7' or 'fairface4' (as
        ``--schema`` of the converter); a directory records its schema.

    Returns:
      A ``Classifier`` with ``.logits``, ``.predict`` and ``.schema``.
    """
    if os.path.isdir(path):
        meta = checkpoints.read_meta(path)
        if meta["kind"] not in _CLASSIFIERS:
            raise checkpoints.CheckpointDirError(
                f"{path} holds a {meta['kind']!r} checkpoint, not a classifier")
        warn_if_standin(path, meta)
        config_cls, build = _CLASSIFIERS[meta["kind"]]
        config = config_cls.from_dict(meta["config"])
        _, abstract = build(config)
        _, params = checkpoints.load(path, nnx.to_pure_dict(abstract))
        if preprocess is None and "preprocess" in meta:  # e.g. the demo classifier
            preprocess = pp.Preprocess.from_dict(meta["preprocess"])
        try:
            return classifier_from_params(meta["kind"], config, params, meta.get("schema"),
                                          meta, preprocess)
        except ValueError as e:
            raise checkpoints.CheckpointDirError(f"{path}: {e}") from None
    from jaxfair.convert import formats
    from jaxfair.convert.guard import CheckpointError

    try:
        conv = formats.read(path, schema=schema)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if conv.kind not in _CLASSIFIERS:
        raise CheckpointError(f"{path}: holds a {conv.kind!r} model, not a classifier")
    return classifier_from_params(conv.kind, conv.config, conv.params, conv.schema,
                                  conv.meta(), preprocess)
