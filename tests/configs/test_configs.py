"""Every shipped config parses (as config_flags loads it), has exactly demo.py's keys, and
builds its job objects without weights: validate() against its classifier's schema, the
plan, the planner settings; the settings each real job is defined by are checked."""

import importlib.util
import os

import pytest

from jaxfair.judge import attributes
from jaxfair.pipeline import plan as plan_lib
from jaxfair.pipeline import pool
from jaxfair.pipeline import run as pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# config -> the schema of the classifier it is written for
CONFIGS = {"demo": None, "ffhq1024_fairface": attributes.FAIRFACE7,
           "ffhq256_fairface": attributes.FAIRFACE7,
           "youneednodataset": attributes.deepface_schema(("race",)),
           "rahimi": attributes.FAIRFACE7}


def load(name, arg=None):
    spec = importlib.util.spec_from_file_location(f"cfg_{name}",
                                                  os.path.join(ROOT, "configs", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with open(os.path.join(ROOT, "configs", f"{name}.py")) as f:
        first = f.readline()
    assert first.startswith("# python -m jaxfair."), first  # the command comes first
    assert mod.__doc__ and "Sizing" in mod.__doc__ or name == "demo"
    return mod.get_config(arg)


def keys(c, prefix=""):
    out = set()
    for k, v in c.items():
        out |= keys(v, f"{prefix}{k}.") if hasattr(v, "items") else {prefix + k}
    return out


@pytest.mark.parametrize("name", [n for n in CONFIGS if n != "demo"])
@pytest.mark.parametrize("arg", [None, "smoke"])
def test_config_builds_its_job(name, arg):
    c = load(name, arg)
    assert keys(c) == keys(load("demo"))  # the pipeline validates keys
    schema = CONFIGS[name]
    pipeline.validate(c, schema)
    groups = [attributes.format_target(t, schema) for _, t in
              attributes.enumerate_groups(schema, tuple(c.attributes))]
    plan = plan_lib.Plan.create(groups, c.identities_per_group, c.identities_per_unit,
                                c.units_per_step)
    assert len(plan.units) * c.identities_per_unit >= len(groups) * c.identities_per_group
    if c.method == "planner":
        s = pool.settings(c, len(groups))
        assert s.quota == c.identities_per_group and s.max_evaluations > 0
    with pytest.raises(ValueError, match="unknown variant"):
        load(name, "nope")


def test_real_job_settings():
    ff = load("ffhq1024_fairface")
    assert ff.truncation_psi == 0.7 and ff.method == "planner"
    assert tuple(ff.attributes) == ("race", "gender")
    assert ff.search.score_resolution == ff.planner.score_resolution == 256
    assert ff.memory_budget_gb == 0
    assert load("ffhq256_fairface").planner.score_resolution == 0
    yn = load("youneednodataset")
    assert (yn.method, yn.search.strategy, yn.search.accept_mode) == ("search", "branching",
                                                                      "argmax")
    assert yn.identities_per_group == 50_000 and yn.truncation_psi == 0.7
    ra = load("rahimi")
    assert ra.method == "distribution" and tuple(ra.distribution.hidden) == (256, 128, 64)
    assert ra.distribution.code_dim == 32 and ra.distribution.covariance == "diag"


def test_config_for_a_schema_the_classifier_lacks():
    c = load("ffhq1024_fairface")  # race x gender; DeepFace race-only has no gender
    with pytest.raises(attributes.TargetError, match="gender"):
        pipeline.validate(c, attributes.deepface_schema(("race",)))


def test_demo_rare_world_is_twelve_groups():
    c = load("demo", "rare")
    assert keys(c) == keys(load("demo")) and c.threshold == 0.9
    pipeline.validate(c, attributes.DEMO)
    groups = attributes.enumerate_groups(attributes.DEMO, tuple(c.attributes))
    assert len(groups) == 12 and pool.settings(c, len(groups)).quota == c.identities_per_group
