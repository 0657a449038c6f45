"""Memory-aware batch sizes: the compiled step's own memory analysis, not guesses.

A batched step (the planner's stream and gated steps, the full-resolution render, audit
and labelling batches) is compiled for a candidate batch size with abstract arguments
(``jax.ShapeDtypeStruct``: nothing is allocated), and XLA's ``memory_analysis()`` says what
one call needs: argument + output + temporary bytes (minus outputs aliased to arguments).
``choose_batch`` returns the largest candidate whose step fits a byte budget.

Backends that return no memory analysis fall back to the cost analysis's
``bytes accessed``, an upper bound of the live bytes (every byte read or written is counted
once, live or not); ``StepMemory.source`` says which one was used.

The default budget is a fraction of the device's memory (``DEVICE_FRACTION``)
(``memory_stats()['bytes_limit']`` on GPU/TPU) or, on CPU, of the host's RAM (``MemTotal``
in /proc/meminfo; ``HOST_FRACTION``, smaller: the process itself lives there): other
processes and the host-side buffers (images waiting to be encoded and written) need the
rest. Fixed quantities, not what happens to be free: a batch size
changes float roundings (XLA tiles a batch of 16 differently from one of 256), so a resumed
run must choose the sizes the first run chose, and does on the same machine.

Example (the planner's stream step, jaxfair.sampling.stream):

  def factory(b):
      step = stream.make_stream_step(judge, b)
      return step, (abstract(G.state), abstract(C.state), abstract_key(), targets)

  batch, mem = choose_batch(factory, budget_bytes(), candidates=(8, 16, 32, 64, 128, 256),
                            name="stream")
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax

DEVICE_FRACTION = 0.5
HOST_FRACTION = 0.4
DEFAULT_CANDIDATES = tuple(2 ** i for i in range(11))  # 1 .. 1024
GIB = 1024 ** 3


class BudgetError(ValueError):
    """Not even the smallest candidate batch of a step fits the memory budget."""


@dataclasses.dataclass(frozen=True)
class StepMemory:
    """Compiled memory of one call of a step at one batch size (bytes).

    Attributes:
      batch: the batch size compiled.
      argument, output, temp: XLA's argument / output / temporary buffer sizes; with
        source 'cost_analysis' argument = output = 0 and temp = bytes accessed.
      alias: output bytes that reuse argument buffers (not counted twice).
      source: 'memory_analysis' or 'cost_analysis' (the fallback, an upper bound).
    """

    batch: int
    argument: int
    output: int
    temp: int
    alias: int
    source: str

    @property
    def total(self) -> int:
        return self.argument + self.output + self.temp - self.alias


def abstract(tree: Any) -> Any:
    """Every array leaf of ``tree`` as a ``jax.ShapeDtypeStruct`` (nothing allocated)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def compiled_memory(fn: Callable, args: Sequence[Any], batch: int = 0) -> StepMemory:
    """Compiles ``fn`` (a ``jax.jit`` function, or any function: it is jitted) for ``args``
    (arrays or ``jax.ShapeDtypeStruct`` leaves) and reads the compiled memory.

    Args:
      fn: the step.
      args: positional arguments (pytrees) of one call.
      batch: recorded in the result.
    """
    return _compile(fn, args, batch)[0]


def _compile(fn: Callable, args: Sequence[Any], batch: int) -> tuple[StepMemory, Any]:
    """(StepMemory, the compiled executable) of ``fn`` at ``args``."""
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    compiled = jitted.lower(*args).compile()
    return _memory(compiled, batch), compiled


def _memory(compiled, batch: int) -> StepMemory:
    mem = compiled.memory_analysis()
    if mem is not None:
        return StepMemory(batch, int(mem.argument_size_in_bytes),
                          int(mem.output_size_in_bytes), int(mem.temp_size_in_bytes),
                          int(mem.alias_size_in_bytes), "memory_analysis")
    cost = compiled.cost_analysis()
    if isinstance(cost, list):  # older jax: one dict per computation
        cost = cost[0] if cost else {}
    accessed = int((cost or {}).get("bytes accessed", 0))
    if accessed <= 0:
        raise RuntimeError("the backend reports neither memory_analysis() nor cost_analysis() "
                           "bytes accessed: pass explicit batch sizes")
    return StepMemory(batch, 0, 0, accessed, 0, "cost_analysis")


def choose_batch(step_factory: Callable[[int], tuple[Callable, Sequence[Any]]],
                 budget_bytes: int, candidates: Sequence[int] = DEFAULT_CANDIDATES,
                 name: str = "step") -> tuple[int, StepMemory]:
    """The largest candidate batch whose compiled step fits ``budget_bytes``.

    Memory grows with the batch, so the candidates are bisected: the largest is compiled
    first (one compile when it fits, the common case), then about log2(len(candidates))
    more; none more when the smallest batch's arguments alone (the weights) exceed the
    budget.

    Args:
      step_factory: ``batch -> (fn, args)``: the step compiled for that batch and example
        arguments of one call (``jax.ShapeDtypeStruct`` leaves: see ``abstract``).
      budget_bytes: the most one call may need.
      candidates: batch sizes to choose from (any order, positive).
      name: the step's name in the error message.

    Returns:
      (batch, its StepMemory).

    Raises:
      BudgetError: the smallest candidate needs more than the budget.
    """
    batch, mem, _ = _choose(step_factory, budget_bytes, candidates, name)
    return batch, mem


def _choose(step_factory, budget_bytes: int, candidates: Sequence[int], name: str
            ) -> tuple[int, StepMemory, tuple[Callable, Sequence[Any], Any]]:
    """``choose_batch`` that also returns (fn, args, compiled executable) of the choice."""
    cands = sorted(set(int(c) for c in candidates))
    if not cands or cands[0] < 1:
        raise ValueError(f"candidates must be positive batch sizes, got {candidates}")
    kept = {}

    def measure(b: int) -> tuple[StepMemory, Sequence[Any]]:
        fn, args = step_factory(b)
        mem, compiled = _compile(fn, args, b)
        if mem.total <= budget_bytes:  # only a fitting one can be the answer
            kept.clear()
            kept[b] = (fn, args, compiled)
        return mem, args

    top, top_args = measure(cands[-1])
    if top.total <= budget_bytes:
        return cands[-1], top, kept[cands[-1]]
    # A call needs at least its arguments. The smallest batch's are the top's less what the
    # batched arguments shrink by (XLA drops unused arguments from both alike, so the
    # abstract sizes bound the shrinkage from above): when even that exceeds the budget
    # (the weights alone do), no candidate fits, and no other size needs compiling.
    if top.source == "memory_analysis" and len(cands) > 1:
        floor = top.argument - (argument_bytes(top_args)
                                - argument_bytes(step_factory(cands[0])[1]))
        if floor > budget_bytes:
            raise BudgetError(_over(name, floor, "for its arguments alone ", cands[0],
                                    budget_bytes))
    lo, hi, best, smallest = 0, len(cands) - 2, None, top  # cands[hi + 1:] do not fit
    while lo <= hi:
        mid = (lo + hi) // 2
        m, _ = measure(cands[mid])
        if m.total <= budget_bytes:
            best, lo = m, mid + 1
        else:
            hi = mid - 1
            if mid == 0:
                smallest = m
    if best is None:
        raise BudgetError(_over(name, smallest.total, "", cands[0], budget_bytes))
    return best.batch, best, kept[best.batch]


def _over(name: str, need: int, what: str, batch: int, budget: int) -> str:
    return (f"step '{name}' needs {need:,} bytes ({need / GIB:.2f} GiB) {what}at its "
            f"smallest batch {batch}, over the memory budget of {budget:,} bytes "
            f"({budget / GIB:.2f} GiB); raise --config.memory_budget_gb or use a smaller "
            f"model")


def argument_bytes(args: Sequence[Any]) -> int:
    """Bytes of the array leaves of ``args`` (arrays or ``jax.ShapeDtypeStruct``; a PRNG
    key counts its key data's bytes)."""
    return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(args)
               if hasattr(x, "shape"))


def host_memory_bytes(meminfo: str = "/proc/meminfo") -> int | None:
    """MemTotal of the host in bytes, or None where /proc/meminfo has none."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024  # the file says kB (KiB)
    except OSError:
        return None
    return None


def budget_bytes(memory_budget_gb: float = 0.0, fraction: float | None = None,
                 device: jax.Device | None = None) -> tuple[int, str]:
    """The memory budget of one step and how it was chosen.

    Args:
      memory_budget_gb: > 0: exactly this many GiB (``--config.memory_budget_gb``).
      fraction: otherwise this fraction (default DEVICE_FRACTION / HOST_FRACTION) of the
        device's memory limit, or on CPU (no ``bytes_limit``) of the host's RAM (MemTotal:
        the same on every run on a machine).
      device: default ``jax.devices()[0]``.

    Returns:
      (bytes, a phrase for logs, e.g. '0.4 x 23.1 GiB host RAM').
    """
    if memory_budget_gb > 0:
        return int(memory_budget_gb * GIB), f"--config.memory_budget_gb={memory_budget_gb:g}"
    if fraction is not None and not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    device = device or jax.devices()[0]
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # backends without allocator statistics raise (or return None)
        stats = None
    if stats and stats.get("bytes_limit"):
        limit = int(stats["bytes_limit"])
        fraction = DEVICE_FRACTION if fraction is None else fraction
        return int(fraction * limit), (f"{fraction:g} x {limit / GIB:.1f} GiB of "
                                       f"{device.platform}:{device.id} memory")
    total = host_memory_bytes()
    if total is None:
        raise ValueError("cannot tell the host's memory (no MemTotal in /proc/meminfo): set "
                         "--config.memory_budget_gb")
    fraction = HOST_FRACTION if fraction is None else fraction
    return int(fraction * total), f"{fraction:g} x {total / GIB:.1f} GiB host RAM"


def describe(mem: StepMemory) -> str:
    """'1.23 GiB (args 0.12, out 0.01, temp 1.10)' for logs and the dry run."""
    if mem.source == "cost_analysis":
        return f"<= {mem.total / GIB:.2f} GiB (bytes accessed: no memory analysis here)"
    return (f"{mem.total / GIB:.2f} GiB (arguments {mem.argument / GIB:.2f}, outputs "
            f"{mem.output / GIB:.2f}, temporaries {mem.temp / GIB:.2f})")



def candidates(configured: int) -> tuple[int, ...]:
    """The configured batch and every power of two below it (what a step may run at)."""
    return tuple(sorted({configured} | {2 ** i for i in range(configured.bit_length())
                                        if 2 ** i < configured}))


def _signature(args: Sequence[Any]) -> tuple:
    leaves, treedef = jax.tree.flatten(args)
    return treedef, tuple((tuple(x.shape), x.dtype) for x in leaves)


@dataclasses.dataclass(frozen=True, eq=False)
class Sized:
    """A step at the batch chosen for the memory budget, compiled once.

    Calls with the arguments' shapes of the sizing run the executable compiled while
    sizing (no second compile); other shapes (e.g. the planner's narrower gated calls) go
    through the jitted step.

    Attributes:
      name: the step's name in logs, the dry run and the manifest.
      configured: the configured batch (the upper bound).
      batch: the chosen batch (or micro-batch), <= configured.
      memory: compiled memory at ``batch``.
      jitted: the step at ``batch``; compiled: its executable for the sizing arguments.
    """

    name: str
    configured: int
    batch: int
    memory: StepMemory
    jitted: Callable
    compiled: Any
    signature: tuple

    def __call__(self, *args):
        if _signature(args) == self.signature:
            return self.compiled(*args)
        return self.jitted(*args)

    def record(self) -> dict:
        """{'configured', 'batch', 'compiled_bytes'} for logs and manifest.json."""
        return {"configured": self.configured, "batch": self.batch,
                "compiled_bytes": self.memory.total}


def size_step(step_factory: Callable[[int], tuple[Callable, Sequence[Any]]],
              budget_bytes: int, configured: int, name: str,
              allowed: Sequence[int] | None = None) -> Sized:
    """The step at the largest of ``candidates(configured)`` (or ``allowed``) that fits
    ``budget_bytes``, compiled once (see ``choose_batch``; raises its BudgetError)."""
    batch, mem, (fn, args, compiled) = _choose(
        step_factory, budget_bytes, allowed or candidates(configured), name)
    return Sized(name, configured, batch, mem, fn, compiled, _signature(args))


class Steps:
    """The batched steps of one command, each sized within one budget as it is first built.

    Example (the dataset report's re-classification):
      steps = Steps(budget_bytes(config.memory_budget_gb)[0], log)
      classify, batch = steps.step(factory, rc.batch_size, "reclassify")
      ...
      report["batch_sizes"] = steps.reduced()

    Attributes:
      budget_bytes: memory budget of one call; None: every step at its configured batch,
        as the factory makes it (nothing sized).
      sized: the steps sized so far (``Sized``), in order.
    """

    def __init__(self, budget_bytes: int | None,
                 log: Callable[[str], None] | None = None):
        self.budget_bytes = budget_bytes
        self.log = log
        self.sized: list[Sized] = []

    def step(self, step_factory: Callable[[int], tuple[Callable, Sequence[Any]]],
             configured: int, name: str, allowed: Sequence[int] | None = None
             ) -> tuple[Callable, int]:
        """(the step, its batch): ``size_step`` within the budget (logged), or the step at
        ``configured`` without one. Raises ``BudgetError`` as ``size_step``."""
        if self.budget_bytes is None:
            return step_factory(configured)[0], configured
        s = size_step(step_factory, self.budget_bytes, configured, name, allowed)
        self.sized.append(s)
        if self.log is not None:
            self.log(f"step {name}: batch {s.batch} (configured {configured}), compiled "
                     f"memory {describe(s.memory)}")
        return s, s.batch

    def reduced(self) -> dict:
        """{name: Sized.record()} of the steps that run below their configured batch."""
        return {s.name: s.record() for s in self.sized if s.batch < s.configured}
