"""Dataset images read back from disk, classified again and compared with their records.

What the pipeline stored (predicted class per attribute) was computed on the float render;
the files hold uint8 pixels (and JPEG loses more). Re-classifying the decoded files checks
that the labels survive encoding, that files match their records, and that the group of
each image still holds for the image a user will actually train on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxfair.judge import attributes, render
from jaxfair.judge.classifier import Classifier
from jaxfair.report import stats


def from_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, C] -> float32 generator range: ``(x - 128) / 127.5``.

    The inverse of ``jaxfair.io.images.to_uint8`` up to its rounding (which floors and clips).
    """
    return (np.asarray(images, np.float32) - 128.0) / 127.5


def predict(C: Classifier, images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """uint8 images [N, H, W, 3] -> {attribute: probabilities [N, K]} (float32)."""
    return render.batched(lambda x: C.predict(from_uint8(x)), images, batch_size)


def features(C: Classifier, images: np.ndarray, batch_size: int) -> np.ndarray:
    """uint8 images [N, H, W, 3] -> the classifier's penultimate features [N, F]."""
    return render.batched(lambda x: C.features(from_uint8(x)), images, batch_size)


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
