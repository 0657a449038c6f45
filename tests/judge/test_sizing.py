"""Memory-aware sizing: compiled memory grows with the batch, a smaller budget picks a
smaller batch, a budget below the smallest candidate is one BudgetError naming the step."""

import jax
import jax.numpy as jnp
import pytest

from jaxfair.judge import render, sizing

D = 128


def factory(b):
    """A tiny MLP step whose temporaries scale with the batch: x [b, D] -> [b]."""
    def step(w, x):
        h = jnp.tanh(x @ w)
        return jnp.sum(jnp.tanh(h @ w) * h, axis=-1)

    return jax.jit(step), (jax.ShapeDtypeStruct((D, D), jnp.float32),
                           jax.ShapeDtypeStruct((b, D), jnp.float32))


def test_memory_grows_with_batch():
    m8 = sizing.compiled_memory(*factory(8), batch=8)
    m64 = sizing.compiled_memory(*factory(64), batch=64)
    assert m8.source in ("memory_analysis", "cost_analysis")
    assert m64.total > m8.total > D * D * 4  # at least the weights


def test_smaller_budget_smaller_batch():
    cands = (1, 2, 4, 8, 16, 32, 64)
    big, m_big = sizing.choose_batch(factory, 1 << 30, cands)
    assert big == 64 and m_big.batch == 64
    # A budget between the memory of batch 8 and batch 16.
    m8 = sizing.compiled_memory(*factory(8), batch=8)
    m16 = sizing.compiled_memory(*factory(16), batch=16)
    assert m8.total < m16.total
    small, m_small = sizing.choose_batch(factory, (m8.total + m16.total) // 2, cands)
    assert small == 8 and m_small.total == m8.total


def test_too_small_budget_is_one_error():
    with pytest.raises(sizing.BudgetError, match=r"step 'mlp' needs [\d,]+ bytes .* batch 1"):
        sizing.choose_batch(factory, 1000, (1, 2, 4), name="mlp")
    assert issubclass(sizing.BudgetError, ValueError)


def test_weights_over_the_budget_fail_after_one_compile(monkeypatch):
    """Below the smallest batch's arguments (here the weights) nothing fits: the error
    comes after the top candidate's compile, not after a bisection. The bound is sound when
    XLA drops an unused argument, and a budget between it and the smallest batch's real
    need still bisects to the compiled answer."""
    compiled = []
    real = sizing._compile
    monkeypatch.setattr(sizing, "_compile", lambda fn, args, b: compiled.append(b) or
                        real(fn, args, b))

    def unused_too(b):  # a second weight matrix the step never reads
        fn, (w, x) = factory(b)
        return jax.jit(lambda w, v, x: fn(w, x)), (w, w, x)

    cands = (1, 2, 4, 8, 16, 32, 64)
    with pytest.raises(sizing.BudgetError, match=r"step 'mlp' needs [\d,]+ bytes .*for its "
                       r"arguments alone at its smallest batch 1"):
        sizing.choose_batch(unused_too, D * D * 4 - 1, cands, name="mlp")
    assert compiled == [64]
    small = sizing.compiled_memory(*unused_too(1), batch=1)
    assert D * D * 4 <= small.argument < 2 * D * D * 4  # the unused matrix was dropped
    compiled.clear()
    with pytest.raises(sizing.BudgetError, match=r"needs [\d,]+ bytes \(.*\) at its smallest"):
        sizing.choose_batch(unused_too, small.total - 1, cands, name="mlp")
    assert compiled[0] == 64 and compiled[-1] == 1 and len(compiled) > 2


def test_budget_override_and_host(tmp_path):
    b, why = sizing.budget_bytes(2.5)
    assert b == int(2.5 * sizing.GIB) and "memory_budget_gb" in why
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:    2048 kB\nMemAvailable: 100 kB\n")
    assert sizing.host_memory_bytes(str(meminfo)) == 2048 * 1024
    auto, why = sizing.budget_bytes(0.0, fraction=0.5)
    assert auto > 0 and "0.5 x" in why


def rowwise(w, x):
    """x [n, D] -> [n]: a sort keeps a [n, H] buffer live (XLA cannot fuse it away)."""
    return jnp.sort(jnp.tanh(x @ w), axis=-1)[:, ::2].sum(-1)


def test_size_step_runs_the_executable_compiled_while_sizing():
    traces = []

    def micro_factory(m):
        """A fixed logical batch of 256 rows computed m rows at a time (render.chunked)."""
        def step(w, x):
            traces.append(m)
            return render.chunked(lambda r: rowwise(w, r), x, m)

        return jax.jit(step), (jax.ShapeDtypeStruct((D, 1024), jnp.float32),
                               jax.ShapeDtypeStruct((256, D), jnp.float32))

    whole = sizing.compiled_memory(*micro_factory(256), batch=256)
    part = sizing.compiled_memory(*micro_factory(8), batch=8)
    assert part.total < whole.total  # the micro-batch is what the memory pays for
    traces.clear()
    sized = sizing.size_step(micro_factory, (part.total + whole.total) // 2, 256, "sort")
    assert sized.configured == 256 and 8 <= sized.batch < 256
    assert sized.record()["batch"] == sized.batch
    n = len(traces)
    w = jax.random.normal(jax.random.key(0), (D, 1024)) / D ** 0.5
    x = jax.random.normal(jax.random.key(1), (256, D))
    out = sized(w, x)
    assert len(traces) == n  # no second trace or compile
    assert out.shape == (256,)
    assert jnp.allclose(out, rowwise(w, x), atol=1e-4)
    sized(w, x[:16])  # another shape goes through the jitted step
    assert len(traces) == n + 1


def test_chunked_equals_one_call_and_drops_the_padding():
    rows = (jnp.arange(10.0), jnp.arange(20).reshape(10, 2))

    def fn(r):
        return {"a": r[0] * 2.0, "b": r[1].sum(-1)}

    want = fn(rows)
    for micro in (0, 1, 3, 4, 10, 16):
        got = jax.jit(lambda r, m=micro: render.chunked(fn, r, m))(rows)
        assert all(jnp.array_equal(got[k], want[k]) for k in want), micro
