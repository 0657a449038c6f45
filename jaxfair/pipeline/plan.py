"""Work units of a bulk generation run: groups x quota -> deterministic units and steps.

A unit is (unit id, group, index within the group, number of identities). Its output is a
pure function of (config, checkpoint hashes, unit id): its keys are ``fold_in(root, unit
id)``. Unit ids interleave the groups (unit 0 of every group, then unit 1, ...), so every
compiled step (``units_per_step`` consecutive units, one fused call) covers many groups.
Steps, not units, are what a process computes: a step's composition is fixed by the plan,
so a resumed or multi-host run computes every unit in exactly the same batch as an
uninterrupted single-host run.

Example:
  plan = Plan.create(["tone=light,hair=short", ...], quota=50, per_unit=10, per_step=6)
  plan.units[7]                 # Unit(id=7, group=1, index=1, size=10)
  plan.steps_of(process=0, num_processes=2)    # [[units of step 0], [step 2], ...]
"""

from __future__ import annotations

import dataclasses
import math

# Units of one plan: each is a Python object here and a shard directory on disk, so 10^6
# (~0.15 GB of plan, 10^6 entries in shards/) is the most one job should hold; a larger
# dataset is several jobs, or larger units (identities_per_unit).
MAX_UNITS = 1_000_000


@dataclasses.dataclass(frozen=True)
class Unit:
    """One work unit.

    Attributes:
      id: global unit id (shard directory name, key fold-in).
      group: index into the plan's groups.
      index: the unit's position among its group's units.
      size: identities it produces.
    """

    id: int
    group: int
    index: int
    size: int

    @property
    def name(self) -> str:
        return f"{self.id:05d}"


@dataclasses.dataclass(frozen=True)
class Plan:
    """Every unit of a run and their grouping into compiled steps.

    Attributes:
      groups: canonical group texts ("tone=dark,hair=long").
      quota: identities per group.
      units: all units, ``units[i].id == i``.
      per_step: units evaluated together in one compiled call.
      segments: first unit id of every segment (the planned units, then each round of
        top-up units); steps never straddle segments, so adding units never changes the
        composition of an existing step.
    """

    groups: tuple[str, ...]
    quota: int
    units: tuple[Unit, ...]
    per_step: int
    segments: tuple[int, ...] = (0,)

    @classmethod
    def create(cls, groups: list[str], quota: int, per_unit: int, per_step: int) -> Plan:
        for name, v in (("identities_per_group", quota), ("identities_per_unit", per_unit),
                        ("units_per_step", per_step)):
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if not groups:
            raise ValueError("no groups to generate")
        per_group = math.ceil(quota / per_unit)
        if per_group * len(groups) > MAX_UNITS:
            raise ValueError(f"identities_per_group {quota} / identities_per_unit {per_unit} x "
                             f"{len(groups)} groups = {per_group * len(groups)} units, more "
                             f"than the limit of {MAX_UNITS}; raise identities_per_unit or "
                             f"split the job")
        units = []
        for index in range(per_group):
            size = min(per_unit, quota - index * per_unit)
            for g in range(len(groups)):
                units.append(Unit(len(units), g, index, size))
        return cls(tuple(groups), quota, tuple(units), per_step)

    def extend(self, sizes: dict[int, int]) -> Plan:
        """A plan with one more unit per group in ``sizes`` ({group: identities}), appended
        after the existing units (top-up units replace removed near-duplicates)."""
        units = list(self.units)
        counts = {g: sum(u.group == g for u in units) for g in sizes}
        start = len(units)
        for g in sorted(sizes):
            units.append(Unit(len(units), g, counts[g], sizes[g]))
        return dataclasses.replace(self, units=tuple(units),
                                   segments=(*self.segments, start))

    @property
    def steps(self) -> list[list[Unit]]:
        """Units in consecutive runs of ``per_step`` within each segment (a segment's last
        step may be shorter)."""
        bounds = (*self.segments, len(self.units))
        return [list(self.units[i:min(i + self.per_step, end)])
                for start, end in zip(bounds[:-1], bounds[1:])
                for i in range(start, end, self.per_step)]

    def steps_of(self, process: int, num_processes: int) -> list[list[Unit]]:
        """The steps a process computes: step k goes to process k mod num_processes."""
        return [s for k, s in enumerate(self.steps) if k % num_processes == process]
