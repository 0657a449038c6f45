"""Work units and steps: exact quotas, interleaved groups, fixed step composition."""

import pytest

from jaxfair.pipeline.plan import Plan

GROUPS = ["a", "b", "c"]


def test_units_cover_every_quota_exactly_and_interleave_groups():
    plan = Plan.create(GROUPS, quota=25, per_unit=10, per_step=4)
    assert [u.id for u in plan.units] == list(range(9))
    for g in range(3):
        assert sorted(u.size for u in plan.units if u.group == g) == [5, 10, 10]
    assert [u.group for u in plan.units] == [0, 1, 2] * 3
    assert [u.index for u in plan.units[:6]] == [0, 0, 0, 1, 1, 1]
    assert [[u.id for u in s] for s in plan.steps] == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]


def test_processes_split_steps_round_robin_and_cover_all():
    plan = Plan.create(GROUPS, quota=40, per_unit=10, per_step=2)
    parts = [plan.steps_of(p, 3) for p in range(3)]
    ids = sorted(u.id for part in parts for s in part for u in s)
    assert ids == list(range(len(plan.units)))
    assert [s[0].id for s in parts[1]] == [2, 8]


def test_top_up_units_form_new_steps_and_keep_old_ones():
    plan = Plan.create(GROUPS, quota=10, per_unit=10, per_step=2)
    before = [[u.id for u in s] for s in plan.steps]
    more = plan.extend({2: 1, 0: 3})
    assert [[u.id for u in s] for s in more.steps][:len(before)] == before
    new = more.units[len(plan.units):]
    assert [(u.group, u.index, u.size) for u in new] == [(0, 1, 3), (2, 1, 1)]
    assert [[u.id for u in s] for s in more.steps][len(before):] == [[3, 4]]


@pytest.mark.parametrize("kw, name", [({"quota": 0}, "identities_per_group"),
                                      ({"per_unit": 0}, "identities_per_unit"),
                                      ({"per_step": -1}, "units_per_step")])
def test_bad_sizes_are_refused(kw, name):
    args = {"quota": 5, "per_unit": 2, "per_step": 2} | kw
    with pytest.raises(ValueError, match=name):
        Plan.create(GROUPS, **args)
