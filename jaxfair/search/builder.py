"""Search settings -> ``Engine``: the one place where a config's ``search`` section becomes an
engine.

``Settings`` holds what an engine is built from (frozen; the job-level knobs ``target``,
``max_generations``, ``num_accepted`` and ``seed`` stay in the config). Callers that need a
variant (the bulk job's search count and acceptance threshold, a benchmark's one-generation
chunks, the lab's record-everything archives) replace fields of the settings instead of
cloning and editing a ConfigDict.

Example:
  settings = Settings.from_config(config, num_searches=12)
  engine = build(settings, G, C)
  one_gen = build(dataclasses.replace(settings, generations_per_chunk=1), G, C)
"""

from __future__ import annotations

import dataclasses

import ml_collections

from jaxfair.search import engine as eng_lib
from jaxfair.search import objective as obj
from jaxfair.search import spaces, strategies


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything ``build`` needs (units and meaning: configs/demo.py, ``search``)."""

    space: str
    strategy: str
    population_size: int
    num_searches: int
    generations_per_chunk: int
    accept_mode: str
    prior_weight: float
    novelty_weight: float
    novelty_radius: float
    sigma_init: float
    learning_rate: float
    archive_capacity: int
    score_resolution: int
    feature_radius: float
    dtype: str
    eval_batch: int
    threshold: float = 0.9
    duplicate_radius: float = 0.05
    psi: float = 1.0
    noise_mode: str = "const"

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, **overrides) -> Settings:
        """The settings of ``config.search`` (validated), with fields replaced by
        ``overrides``. From the config's top level: the acceptance ``threshold``, the
        archive's ``duplicate_radius`` (``identity_radius``: the one identity rule), and
        truncation and noise."""
        validate(config.search)
        if config.identity_radius < 0:
            raise ValueError(f"identity_radius must be >= 0, got {config.identity_radius}")
        sc = config.search
        top = ("threshold", "duplicate_radius", "psi", "noise_mode")
        kw = {f.name: sc[f.name] for f in dataclasses.fields(cls) if f.name not in top}
        kw.update(threshold=config.threshold, duplicate_radius=config.identity_radius,
                  psi=config.truncation_psi, noise_mode=config.noise_mode)
        return dataclasses.replace(cls(**kw), **overrides)


def validate(sc: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the first bad ``config.search`` setting."""
    if sc.space not in spaces.SPACES:
        raise ValueError(f"unknown space {sc.space!r}; choose from {', '.join(spaces.SPACES)}")
    for name in ("population_size", "num_searches", "generations_per_chunk",
                 "max_generations", "num_accepted", "archive_capacity"):
        if sc[name] < 1:
            raise ValueError(f"search.{name} must be >= 1, got {sc[name]}")
    if sc.feature_radius < 0:
        raise ValueError(f"search.feature_radius must be >= 0, got {sc.feature_radius}")
    if sc.dtype not in ("float32", "bfloat16"):
        raise ValueError(f"search.dtype must be float32 or bfloat16, got {sc.dtype!r}")
    if sc.sigma_init <= 0:
        raise ValueError(f"search.sigma_init must be > 0, got {sc.sigma_init}")


def build(s: Settings, G, C) -> eng_lib.Engine:
    """The engine of settings ``s`` for loaded models."""
    space = spaces.Space.create(s.space, G.config)
    objective = obj.Objective(threshold=s.threshold, mode=s.accept_mode,
                              prior_weight=s.prior_weight, novelty_weight=s.novelty_weight,
                              novelty_radius=s.novelty_radius)
    strategy = strategies.build(s.strategy, space, s.population_size, s.sigma_init,
                                s.learning_rate)
    return eng_lib.Engine.create(
        G, C, space, strategy, objective, num_searches=s.num_searches,
        generations=s.generations_per_chunk, psi=s.psi, noise_mode=s.noise_mode,
        score_resolution=s.score_resolution or None, archive_capacity=s.archive_capacity,
        duplicate_radius=s.duplicate_radius, feature_radius=s.feature_radius, dtype=s.dtype,
        eval_batch=s.eval_batch)
