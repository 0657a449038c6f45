"""Schemas, the target language, and jit-able use of targets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfair.judge import attributes as A


def masks(t: A.Target) -> dict:
    return {k: np.asarray(v).astype(int).tolist() for k, v in t.masks.items()}


def test_fairface_schema_layout():
    s = A.FAIRFACE7
    assert s.num_outputs == 18 and s.names == ("race", "gender", "age")
    race, gender, age = s.attributes
    assert (race.start, race.stop, gender.start, gender.stop, age.start, age.stop) == (
        0, 7, 7, 9, 9, 18)
    assert race.labels[2] == "Latino_Hispanic" and race.labels[6] == "Middle Eastern"
    assert age.labels == ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69",
                          "70+")
    assert A.FAIRFACE4.attributes[0].labels == ("White", "Black", "Asian", "Indian")


def test_deepface_schema_follows_heads():
    s = A.deepface_schema(("race", "gender", "age"))
    assert s.num_outputs == 6 + 2 + 101
    assert s.attribute("race").labels == ("asian", "indian", "black", "white", "middle eastern",
                                          "latino hispanic")
    assert s.attribute("gender").labels == ("Woman", "Man")
    assert (s.attribute("age").start, s.attribute("age").stop) == (8, 109)
    assert A.deepface_schema(("gender",)).num_outputs == 2
    hash(s)  # static jit argument


def test_resnet_schema_choice_and_head_size():
    assert A.resnet_schema("auto", 18) is A.FAIRFACE7
    assert A.resnet_schema("fairface4", 18) is A.FAIRFACE4
    with pytest.raises(ValueError, match="head has 9 outputs but schema fairface7 needs 18"):
        A.resnet_schema("fairface7", 9)
    with pytest.raises(ValueError, match="no classifier schema for a head of 5 outputs"):
        A.resnet_schema("auto", 5)
    with pytest.raises(ValueError, match="unknown schema"):
        A.resnet_schema("fairface9", 18)


def test_parse_single_and_sets():
    s = A.FAIRFACE7
    t = A.parse_target("race=black,gender=female", s)
    assert masks(t) == {"race": [0, 1, 0, 0, 0, 0, 0], "gender": [0, 1], "age": [1] * 9}
    t = A.parse_target("race=white|black", s)
    assert masks(t)["race"] == [1, 1, 0, 0, 0, 0, 0] and masks(t)["gender"] == [1, 1]


@pytest.mark.parametrize("text,race,gender", [
    ("RACE=Black, Gender=WOMAN", [0, 1, 0, 0, 0, 0, 0], [0, 1]),
    ("race=east asian,gender=man", [0, 0, 0, 1, 0, 0, 0], [1, 0]),
    ("race=East_Asian", [0, 0, 0, 1, 0, 0, 0], [1, 1]),
    ("race=latino", [0, 0, 1, 0, 0, 0, 0], [1, 1]),
    ("race=hispanic|latino-hispanic", [0, 0, 1, 0, 0, 0, 0], [1, 1]),
    ("race=Middle Eastern", [0, 0, 0, 0, 0, 0, 1], [1, 1]),
    ("race=asian", [0, 0, 0, 1, 1, 0, 0], [1, 1]),
    ("race=any,gender=male", [1] * 7, [1, 0]),
    ("", [1] * 7, [1, 1]),
    ("any", [1] * 7, [1, 1]),
])
def test_aliases_case_and_spacing(text, race, gender):
    m = masks(A.parse_target(text, A.FAIRFACE7))
    assert m["race"] == race and m["gender"] == gender


def test_aliases_resolve_per_schema():
    d = A.deepface_schema(("race", "gender"))
    assert masks(A.parse_target("gender=female", d))["gender"] == [1, 0]  # Woman first
    assert masks(A.parse_target("gender=Man", d))["gender"] == [0, 1]
    assert masks(A.parse_target("race=latino", d))["race"] == [0, 0, 0, 0, 0, 1]
    assert masks(A.parse_target("race=asian", A.FAIRFACE4))["race"] == [0, 0, 1, 0]


def test_ordinal_ranges():
    s = A.FAIRFACE7
    assert masks(A.parse_target("age=20-29", s))["age"] == [0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert masks(A.parse_target("age=20-39", s))["age"] == [0, 0, 0, 1, 1, 0, 0, 0, 0]
    assert masks(A.parse_target("age=60+", s))["age"] == [0, 0, 0, 0, 0, 0, 0, 1, 1]
    with pytest.raises(A.TargetError, match="does not fall on class boundaries"):
        A.parse_target("age=25-35", s)
    d = A.deepface_schema(("age",))
    m = np.asarray(A.parse_target("age=30-34", d).masks["age"])
    assert np.flatnonzero(m).tolist() == [30, 31, 32, 33, 34]
    assert np.flatnonzero(np.asarray(A.parse_target("age=7", d).masks["age"])).tolist() == [7]


@pytest.mark.parametrize("text,needle", [
    ("race=martian", "unknown class 'martian' for attribute 'race'; valid: white, black, "
                     "latino_hispanic, east_asian, southeast_asian, indian, middle_eastern, "
                     "asian (or any)"),
    ("ethnicity=white", "unknown attribute 'ethnicity' for fairface7; valid: race, gender, age"),
    ("race=white,race=black", "appears twice"),
    ("race", "expected attribute=class"),
    ("race=white|", "empty class name"),
    ("age=200", "does not fall on class boundaries"),
])
def test_unknown_names_raise_one_line_listing_valid(text, needle):
    with pytest.raises(A.TargetError) as e:
        A.parse_target(text, A.FAIRFACE7)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_fairface4_has_no_gender_and_no_east_asian():
    with pytest.raises(A.TargetError, match="valid: race"):
        A.parse_target("gender=male", A.FAIRFACE4)
    with pytest.raises(A.TargetError, match="valid: white, black, asian, indian"):
        A.parse_target("race=east_asian", A.FAIRFACE4)


def test_format_round_trip():
    s = A.FAIRFACE7
    for text in ["race=black,gender=female", "race=white|indian,age=20-29|30-39", "any"]:
        t = A.parse_target(text, s)
        again = A.parse_target(A.format_target(t, s), s)
        assert masks(again) == masks(t)
    assert A.format_target(A.parse_target("gender=woman,race=Black", s), s) == \
        "race=black,gender=female"


def test_enumerate_race_gender_groups():
    groups = A.enumerate_groups(A.FAIRFACE7, ("race", "gender"))
    assert len(groups) == 14
    names = [n for n, _ in groups]
    assert names[0] == "race=white,gender=male" and names[-1] == "race=middle_eastern,gender=female"
    assert len(set(names)) == 14
    stacked = A.stack_targets([t for _, t in groups])
    assert stacked.masks["race"].shape == (14, 7) and stacked.masks["age"].shape == (14, 9)
    # Each (race, gender) pair is selected exactly once; age is free everywhere.
    pairs = np.einsum("sr,sg->rg", np.asarray(stacked.masks["race"], int),
                      np.asarray(stacked.masks["gender"], int))
    assert (pairs == 1).all() and np.asarray(stacked.masks["age"]).all()
    assert len(A.enumerate_groups(A.deepface_schema(("race", "gender")))) == 12


def test_probabilities_softmax_per_slice():
    logits = jax.random.normal(jax.random.key(0), (5, 18)) * 3
    p = A.probabilities(logits, A.FAIRFACE7)
    for name, k in [("race", 7), ("gender", 2), ("age", 9)]:
        assert p[name].shape == (5, k)
        np.testing.assert_allclose(np.asarray(p[name]).sum(-1), 1.0, rtol=1e-6)
    ref = np.exp(np.asarray(logits)[:, 7:9])
    np.testing.assert_allclose(p["gender"], ref / ref.sum(-1, keepdims=True), rtol=1e-5)
    p4 = A.probabilities(logits, A.FAIRFACE4)
    assert set(p4) == {"race"} and p4["race"].shape == (5, 4)
    with pytest.raises(ValueError, match="logits have 9 outputs"):
        A.probabilities(logits[:, :9], A.FAIRFACE7)


def test_targets_are_traced_arrays_one_compile():
    s = A.FAIRFACE7
    traces = []

    @jax.jit
    def score(logits, target):
        traces.append(1)
        probs = A.probabilities(logits, s)
        return A.in_target(probs, target), A.target_log_prob(probs, target)

    # Row 0: black female; row 1: white male (by large logits).
    logits = np.zeros((2, 18), np.float32)
    logits[0, 1] = logits[0, 8] = 10.0
    logits[1, 0] = logits[1, 7] = 10.0
    ok, lp = score(logits, A.parse_target("race=black,gender=female", s))
    assert np.asarray(ok).tolist() == [True, False]
    assert float(lp[0]) > -1e-3 and float(lp[1]) < -10
    ok, _ = score(logits, A.parse_target("race=white|black", s))
    assert np.asarray(ok).tolist() == [True, True]
    ok, lp = score(logits, A.parse_target("any", s))
    assert np.asarray(ok).tolist() == [True, True] and np.allclose(lp, 0.0, atol=1e-6)
    assert len(traces) == 1


def test_per_row_targets_under_vmap():
    s = A.FAIRFACE7
    groups = A.enumerate_groups(s, ("race", "gender"))
    stacked = A.stack_targets([t for _, t in groups])
    logits = jax.random.normal(jax.random.key(1), (14, 18))
    probs = A.probabilities(logits, s)
    # One target per row (masks [S, K]) equals evaluating each row with its own target.
    mass = A.target_mass(probs, stacked)
    per_row = jax.vmap(lambda p, t: A.target_mass(p, t))(probs, stacked)
    for k in mass:
        np.testing.assert_allclose(mass[k], per_row[k], rtol=1e-6)
    np.testing.assert_allclose(mass["age"], 1.0, rtol=1e-6)
    r = np.asarray(probs["race"])[np.arange(14), np.arange(14) // 2]
    np.testing.assert_allclose(mass["race"], r, rtol=1e-6)
    assert A.any_target(s).masks["race"].all()
    assert jnp.issubdtype(stacked.masks["race"].dtype, jnp.bool_)


def test_schema_from_classes():
    s = A.schema_from_classes("demo", {"tone": ("light", "medium", "dark"),
                                       "hair": ("short", "long")})
    assert s.num_outputs == 5 and s.attribute("hair").start == 3
    assert masks(A.parse_target("tone=dark|light,hair=long", s)) == {
        "tone": [1, 0, 1], "hair": [0, 1]}
    assert len(A.enumerate_groups(s, ("tone", "hair"))) == 6
