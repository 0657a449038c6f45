"""Classifier schemas (attributes, classes, output slices) and the target language.

A classifier returns one logit vector ``[N, num_outputs]``; its ``Schema`` says which slice
of it belongs to which attribute (softmax per slice). A target such as
``race=black,gender=female`` or ``race=white|black`` is parsed against a schema into a
``Target``: one boolean class mask per attribute, where an unconstrained attribute ("any")
has every class set. Targets are pytrees of arrays, so one compiled search step serves any
target; stack several with ``stack_targets`` to run many groups at once.

Example:
  schema = FAIRFACE7
  t = parse_target("race=black,gender=woman", schema)
  probs = probabilities(logits, schema)        # {'race': [N, 7], 'gender': [N, 2], ...}
  ok = in_target(probs, t)                     # [N] bool, argmax of every attribute in t
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import types

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxfair.errors import JaxfairError

ANY = ("any", "*")


class TargetError(JaxfairError, ValueError):
    """A target names an attribute or class that the classifier's schema does not have."""


@dataclasses.dataclass(frozen=True)
class Attribute:
    """One softmax group of a classifier's outputs.

    Attributes:
      name: 'race', 'gender', 'age'.
      classes: canonical lower-case class keys used in targets (``east_asian``).
      labels: the source model's own class names, same order (``East Asian``).
      start: index of the first logit of this attribute; it owns ``start:start+len(classes)``.
      aliases: extra target words, each naming one or more classes
        (``('asian', ('east_asian', 'southeast_asian'))``).
      ranges: for ordinal classes (age), the inclusive integer range of each class,
        ``None`` as upper bound for an open class (``70+``); enables targets like ``20-39``.
    """

    name: str
    classes: tuple[str, ...]
    labels: tuple[str, ...]
    start: int
    aliases: tuple[tuple[str, tuple[str, ...]], ...] = ()
    ranges: tuple[tuple[int, int | None], ...] | None = None

    def __post_init__(self):
        if len(self.classes) != len(self.labels):
            raise ValueError(f"{self.name}: classes and labels differ in length")
        if self.ranges is not None and len(self.ranges) != len(self.classes):
            raise ValueError(f"{self.name}: one range per class needed")

    @property
    def size(self) -> int:
        return len(self.classes)

    @property
    def stop(self) -> int:
        return self.start + self.size


@dataclasses.dataclass(frozen=True)
class Schema:
    """What a classifier's output vector means (hashable: a static jit argument).

    Attributes:
      name: 'fairface7', 'fairface4', 'deepface'.
      num_outputs: length of the logit vector the model must produce (outputs not covered
        by an attribute are ignored, e.g. 4..17 of the 4-race FairFace model).
      attributes: the softmax groups, in output order.
    """

    name: str
    num_outputs: int
    attributes: tuple[Attribute, ...]

    def __post_init__(self):
        for a in self.attributes:
            if a.stop > self.num_outputs:
                raise ValueError(f"{self.name}: attribute {a.name} exceeds {self.num_outputs} "
                                 "outputs")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attributes)

    def attribute(self, name: str) -> Attribute:
        for a in self.attributes:
            if a.name == name:
                return a
        raise TargetError(f"unknown attribute {name!r} for {self.name}; valid: "
                          f"{', '.join(self.names)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def schema_from_classes(name: str, classes: dict[str, tuple[str, ...]]) -> Schema:
    """A schema whose attributes take consecutive logit slices in the given order.

    Example: ``schema_from_classes('demo', {'tone': ('light', 'dark'), 'hair': ('short',
    'long')})`` has 4 outputs, tone 0:2 and hair 2:4. Class names become the keys (normalised)
    and the labels.
    """
    attrs, start = [], 0
    for attr, labels in classes.items():
        attrs.append(Attribute(attr, tuple(_norm(c) for c in labels), tuple(labels), start))
        start += len(labels)
    return Schema(name, start, tuple(attrs))


# Source label orders (dchen236/FairFace predict.py; serengil/deepface models/demography).
_AGE9 = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
_AGE9_RANGES = ((0, 2), (3, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69),
                (70, None))

FAIRFACE7 = Schema("fairface7", 18, (
    Attribute("race",
              ("white", "black", "latino_hispanic", "east_asian", "southeast_asian", "indian",
               "middle_eastern"),
              ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
               "Middle Eastern"),
              0, aliases=(("asian", ("east_asian", "southeast_asian")),)),
    Attribute("gender", ("male", "female"), ("Male", "Female"), 7),
    Attribute("age", _AGE9, _AGE9, 9, ranges=_AGE9_RANGES),
))

# The 4-race FairFace model has the same 18-way head; only outputs 0-3 were trained for
# race4 (predict.py reads nothing else from it), so the schema has race only.
FAIRFACE4 = Schema("fairface4", 18, (
    Attribute("race", ("white", "black", "asian", "indian"),
              ("White", "Black", "Asian", "Indian"), 0),
))

_DEEPFACE_HEADS = {
    "race": (("asian", "indian", "black", "white", "middle_eastern", "latino_hispanic"),
             ("asian", "indian", "black", "white", "middle eastern", "latino hispanic"), None),
    "gender": (("woman", "man"), ("Woman", "Man"), None),
    "age": (tuple(str(i) for i in range(101)), tuple(str(i) for i in range(101)),
            tuple((i, i) for i in range(101))),
}
DEEPFACE_HEAD_SIZES = types.MappingProxyType(
    {name: len(spec[0]) for name, spec in _DEEPFACE_HEADS.items()})


def deepface_schema(heads: tuple[str, ...]) -> Schema:
    """Schema of a DeepFace classifier with the given heads, logits concatenated in order."""
    attrs, start = [], 0
    for h in heads:
        if h not in _DEEPFACE_HEADS:
            raise ValueError(f"unknown DeepFace head {h!r}; valid: {', '.join(_DEEPFACE_HEADS)}")
        classes, labels, ranges = _DEEPFACE_HEADS[h]
        attrs.append(Attribute(h, classes, labels, start, ranges=ranges))
        start += len(classes)
    return Schema("deepface", start, tuple(attrs))




def resnet_schema(name: str, num_outputs: int) -> Schema:
    """Schema for a ResNet head of ``num_outputs`` logits.

    Args:
      name: 'auto' (18 outputs -> fairface7), 'fairface7' or 'fairface4'.
      num_outputs: size of the checkpoint's ``fc`` layer.

    Raises:
      ValueError: unknown name, or a head size the schema does not fit.
    """
    if name == "auto":
        # Both FairFace schemas have 18 outputs; the 7-race model is the default.
        if num_outputs != FAIRFACE7.num_outputs:
            known = ", ".join(f"{k} ({v.num_outputs})" for k, v in SCHEMAS.items())
            raise ValueError(f"no classifier schema for a head of {num_outputs} outputs "
                             f"(known: {known})")
        name = FAIRFACE7.name
    if name not in SCHEMAS:
        raise ValueError(f"unknown schema {name!r}; valid: auto, {', '.join(SCHEMAS)}")
    schema = SCHEMAS[name]
    if schema.num_outputs != num_outputs:
        raise ValueError(f"head has {num_outputs} outputs but schema {name} needs "
                         f"{schema.num_outputs}")
    return schema


# Target language ---------------------------------------------------------------------------

# Words that mean the same class whichever schema uses them; a word resolves to the one class
# of the attribute that shares its synonym set.
_SYNONYMS = (
    frozenset({"male", "man", "men"}),
    frozenset({"female", "woman", "women"}),
    frozenset({"latino_hispanic", "latino", "hispanic"}),
    frozenset({"middle_eastern", "middle_east"}),
)

_RANGE = re.compile(r"^(\d+)(?:-(\d+)|(\+))?$")


def _norm(word: str) -> str:
    """Lower case; spaces, underscores and hyphens between letters become '_'."""
    word = re.sub(r"\s*-\s*", "-", word.strip().lower())
    return re.sub(r"[\s_]+|(?<=[a-z])-(?=[a-z])", "_", word)


# The demo world's classifier (checkpoints/demo; jaxfair.demo.world.SCHEMA, same order).
DEMO = schema_from_classes("demo", {"tone": ("light", "medium", "dark"),
                                    "hair": ("short", "long"), "glasses": ("no", "yes")})

SCHEMAS = types.MappingProxyType({"fairface7": FAIRFACE7, "fairface4": FAIRFACE4,
                                  "demo": DEMO})


@flax.struct.dataclass
class Target:
    """A demographic group as arrays: ``masks[attr]`` is a bool class mask.

    Shapes: ``[K_attr]`` for one target, ``[S, K_attr]`` for ``S`` stacked targets. An
    attribute left unconstrained has every class set. Every attribute of the schema is
    present, so targets of one schema share one pytree structure.
    """

    masks: dict[str, jax.Array]


def any_target(schema: Schema) -> Target:
    """The target that every image satisfies."""
    return Target({a.name: jnp.ones((a.size,), bool) for a in schema.attributes})


def _valid_words(a: Attribute) -> str:
    words = list(a.classes) + [k for k, _ in a.aliases]
    extra = " (or any; ranges such as 20-39 or 70+)" if a.ranges else " (or any)"
    return ", ".join(words) + extra


def _range_classes(a: Attribute, m: re.Match) -> list[int]:
    lo = int(m.group(1))
    hi = None if m.group(3) else int(m.group(2) or m.group(1))
    chosen = [i for i, (clo, chi) in enumerate(a.ranges)
              if clo >= lo and (hi is None or (chi is not None and chi <= hi))]
    covered = bool(chosen) and a.ranges[chosen[0]][0] == lo and a.ranges[chosen[-1]][1] == hi
    contiguous = chosen == list(range(chosen[0], chosen[-1] + 1)) if chosen else False
    if not (covered and contiguous):
        bounds = ", ".join(a.labels)
        raise TargetError(f"{a.name}={m.group(0)} does not fall on class boundaries "
                          f"({bounds})")
    return chosen


def _resolve(a: Attribute, word: str) -> list[int]:
    w = _norm(word)
    if w in ANY:
        return list(range(a.size))
    if w in a.classes:
        return [a.classes.index(w)]
    for alias, classes in a.aliases:
        if w == alias:
            return [a.classes.index(c) for c in classes]
    for syn in _SYNONYMS:
        hits = [i for i, c in enumerate(a.classes) if w in syn and c in syn]
        if len(hits) == 1:
            return hits
    if a.ranges is not None and (m := _RANGE.match(w)):
        return _range_classes(a, m)
    raise TargetError(f"unknown class {word.strip()!r} for attribute {a.name!r}; valid: "
                      f"{_valid_words(a)}")


def parse_target(text: str, schema: Schema) -> Target:
    """Parses ``attr=class[|class...][,attr=...]`` (case-insensitive) into a Target.

    ``race=black,gender=female``; ``race=white|black`` (either); ``gender=woman`` (alias);
    ``age=20-39`` (ordinal range that falls on class boundaries); ``race=any`` or leaving an
    attribute out leaves it unconstrained; an empty string or ``any`` is the whole population.

    Raises:
      TargetError: one line naming the unknown attribute or class and the valid ones.
    """
    masks = {a.name: np.ones((a.size,), bool) for a in schema.attributes}
    text = text.strip()
    if text == "" or _norm(text) in ANY:
        return Target({k: jnp.asarray(v) for k, v in masks.items()})
    seen = set()
    for part in text.split(","):
        if "=" not in part:
            raise TargetError(f"bad target term {part.strip()!r}: expected attribute=class "
                              f"(attributes: {', '.join(schema.names)})")
        name, value = part.split("=", 1)
        attr = schema.attribute(_norm(name))
        if attr.name in seen:
            raise TargetError(f"attribute {attr.name!r} appears twice in target {text!r}")
        seen.add(attr.name)
        words = [w for w in value.split("|")]
        if any(not w.strip() for w in words):
            raise TargetError(f"empty class name in {part.strip()!r}")
        mask = np.zeros((attr.size,), bool)
        for w in words:
            mask[_resolve(attr, w)] = True
        masks[attr.name] = mask
    return Target({k: jnp.asarray(v) for k, v in masks.items()})


def format_target(target: Target, schema: Schema) -> str:
    """Canonical text of a single target (host side); ``parse_target`` reads it back."""
    parts = []
    for a in schema.attributes:
        mask = np.asarray(target.masks[a.name])
        if mask.shape != (a.size,):
            raise ValueError(f"format_target needs one target, got mask shape {mask.shape}")
        if mask.all():
            continue
        if not mask.any():
            raise ValueError(f"attribute {a.name} has no class selected")
        parts.append(f"{a.name}=" + "|".join(c for c, m in zip(a.classes, mask) if m))
    return ",".join(parts) or "any"


def stack_targets(targets: list[Target]) -> Target:
    """S targets of one schema -> one Target with masks ``[S, K_attr]``."""
    return jax.tree.map(lambda *m: jnp.stack(m), *targets)


def enumerate_groups(schema: Schema, attributes: tuple[str, ...] = ("race", "gender")
                     ) -> list[tuple[str, Target]]:
    """All combinations of single classes of ``attributes`` (others unconstrained).

    For FairFace ``('race', 'gender')`` gives 7 x 2 = 14 groups, race-major.

    Returns:
      ``[(canonical_text, Target), ...]``.
    """
    attrs = [schema.attribute(_norm(n)) for n in attributes]
    groups = []
    for combo in itertools.product(*(a.classes for a in attrs)):
        text = ",".join(f"{a.name}={c}" for a, c in zip(attrs, combo))
        groups.append((text, parse_target(text, schema)))
    return groups


# Jit-able use of logits and targets ----------------------------------------------------------

def probabilities(logits: jax.Array, schema: Schema) -> dict[str, jax.Array]:
    """logits [N, num_outputs] -> {attribute: softmax probabilities [N, K_attr]}."""
    if logits.shape[-1] != schema.num_outputs:
        raise ValueError(f"logits have {logits.shape[-1]} outputs, schema {schema.name} "
                         f"needs {schema.num_outputs}")
    return {a.name: jax.nn.softmax(logits[..., a.start:a.stop].astype(jnp.float32), axis=-1)
            for a in schema.attributes}


def target_mass(probs: dict[str, jax.Array], target: Target) -> dict[str, jax.Array]:
    """Probability mass inside the target, per attribute: {attr: [N]} (1 if unconstrained).

    ``target`` masks are ``[K]`` (one target for the batch) or ``[N, K]`` (one per row).
    """
    return {k: jnp.sum(jnp.where(target.masks[k], p, 0.0), axis=-1) for k, p in probs.items()}


def target_log_prob(probs: dict[str, jax.Array], target: Target, eps: float = 1e-12
                    ) -> jax.Array:
    """Sum over attributes of log(mass in target) [N] (attributes taken as independent)."""
    mass = target_mass(probs, target)
    return sum(jnp.log(m + eps) for m in mass.values())


def in_target(probs: dict[str, jax.Array], target: Target) -> jax.Array:
    """[N] bool: every attribute's most likely class is in the target's mask."""
    ok = None
    for k, p in probs.items():
        mask = jnp.broadcast_to(target.masks[k], p.shape)
        hit = jnp.take_along_axis(mask, jnp.argmax(p, axis=-1)[..., None], axis=-1)[..., 0]
        ok = hit if ok is None else ok & hit
    return ok
