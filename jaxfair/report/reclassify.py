"""Dataset images read back from disk, classified again and compared with their records.

What the pipeline stored (predicted class per attribute) was computed on the float render;
the files hold uint8 pixels (and JPEG loses more). Re-classifying the decoded files checks
that the labels survive encoding, that files match their records, and that the group of
each image still holds for the image a user will actually train on.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxfair.judge import attributes, classifier, render, sizing
from jaxfair.judge.classifier import Classifier
from jaxfair.report import stats


def from_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, C] -> float32 generator range: ``(x - 128) / 127.5``.

    The inverse of ``jaxfair.io.images.to_uint8`` up to its rounding (which floors and clips).
    """
    return (np.asarray(images, np.float32) - 128.0) / 127.5


def classify_factory(C: Classifier, hw: tuple[int, int], what: str = "predict"):
    """``batch -> (jitted (c_state, images [batch, H, W, 3] float32 in [-1, 1]) ->
    output, abstract arguments)`` for ``sizing.size_step``: ``what`` 'predict' gives
    {attribute: probabilities [B, K]} (``classifier.predict``, as ``C.predict``), 'features'
    the penultimate features [B, F] (as ``C.features``)."""
    if what == "predict":
        fn = jax.jit(lambda c_state, x: classifier.predict(C.graphdef, c_state, x,
                                                           C.preprocess, C.schema))
    elif what == "features":
        fn = jax.jit(lambda c_state, x: classifier.features(C.graphdef, c_state, x,
                                                            C.preprocess))
    else:
        raise ValueError(f"what must be 'predict' or 'features', got {what!r}")

    def factory(b: int):
        return fn, (sizing.abstract(C.state),
                    jax.ShapeDtypeStruct((b, *hw, 3), jnp.float32))

    return factory


def _classified(C: Classifier, images: np.ndarray, batch_size: int, what: str,
                steps: sizing.Steps | None):
    steps = steps or sizing.Steps(None)
    step, batch = steps.step(classify_factory(C, images.shape[1:3], what), batch_size,
                             "reclassify" if what == "predict" else "features")
    return render.batched(lambda x: step(C.state, from_uint8(x)), images, batch)


def predict(C: Classifier, images: np.ndarray, batch_size: int,
            steps: sizing.Steps | None = None) -> dict[str, np.ndarray]:
    """uint8 images [N, H, W, 3] -> {attribute: probabilities [N, K]} (float32), in batches
    of ``batch_size`` or of the largest size below it that ``steps``'s budget allows (step
    'reclassify')."""
    return _classified(C, images, batch_size, "predict", steps)


def features(C: Classifier, images: np.ndarray, batch_size: int,
             steps: sizing.Steps | None = None) -> np.ndarray:
    """uint8 images [N, H, W, 3] -> the classifier's penultimate features [N, F], in batches
    as ``predict`` (step 'features')."""
    return _classified(C, images, batch_size, "features", steps)


def agreement(records: Sequence[dict], probs: dict[str, np.ndarray],
              schema: attributes.Schema) -> dict:
    """Compares re-classified probabilities with what the records say.

    Args:
      records: N records (each with 'group' and 'attributes': {attr: {'class', 'prob'}}).
      probs: {attribute: [N, K]} probabilities of the decoded images, same order.
      schema: the dataset's schema (class order of ``probs``).

    Returns:
      {'n', 'attributes': {attr: proportion of images whose argmax equals the stored class},
       'in_group': {group: proportion whose argmax is in the group's classes on every
       attribute the group constrains}, 'in_group_all': the same over every image,
       'prob_abs_diff': {attr: {'mean', 'max'}} of |stored prob - new prob of that class|}.
    """
    n = len(records)
    per_attr, diffs = {}, {}
    for a in schema.attributes:
        stored = np.array([a.classes.index(r["attributes"][a.name]["class"]) for r in records])
        pred = np.argmax(probs[a.name], axis=-1)
        per_attr[a.name] = stats.share_of(pred == stored)
        new_p = probs[a.name][np.arange(n), stored]
        d = np.abs(np.array([r["attributes"][a.name]["prob"] for r in records]) - new_p)
        diffs[a.name] = {"mean": float(d.mean()), "max": float(d.max())}
    ok = np.zeros(n, bool)
    by_group: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_group.setdefault(r["group"], []).append(i)
    in_group = {}
    for group, idx in by_group.items():
        target = attributes.parse_target(group, schema)
        hit = np.ones(len(idx), bool)
        for a in schema.attributes:
            mask = np.asarray(target.masks[a.name])
            hit &= mask[np.argmax(probs[a.name][idx], axis=-1)]
        ok[idx] = hit
        in_group[group] = stats.share_of(hit)
    return {"n": n, "attributes": per_attr, "in_group": in_group,
            "in_group_all": stats.share_of(ok), "prob_abs_diff": diffs}
