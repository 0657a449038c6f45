"""Memory-aware sizing: compiled memory grows with the batch, a smaller budget picks a
smaller batch, a budget below the smallest candidate is one BudgetError naming the step."""

import jax
import jax.numpy as jnp
import pytest

from jaxfair.judge import sizing

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


def test_budget_override_and_host(tmp_path):
    b, why = sizing.budget_bytes(2.5)
    assert b == int(2.5 * sizing.GIB) and "memory_budget_gb" in why
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 100 kB\nMemAvailable:    2048 kB\n")
    assert sizing.host_available_bytes(str(meminfo)) == 2048 * 1024
    auto, why = sizing.budget_bytes(0.0, fraction=0.5)
    assert auto > 0 and "0.5 x" in why
