"""Fixtures of the model tests."""

import pytest

from jaxfair.models import winograd

# Every size and channel threshold of the Winograd rules (``use_winograd``, ``use_winograd_up``).
THRESHOLDS = ("MIN_CHANNELS", "MIN_CHANNELS_LARGE", "LARGE_SIZE", "UP_MIN_SIZE", "UP_MIN_IN",
              "UP_MIN_OUT")


@pytest.fixture
def winograd_everywhere(monkeypatch):
    """Winograd's thresholds at 1, so every eligible 3x3 conv traced in the test runs as
    ``winograd.conv3x3`` and every 3x3 up conv as ``winograd.conv_transpose3x3_stride2``;
    returns the list of input shapes ``conv3x3`` was called with; its ``up`` attribute
    lists those of the up conv."""
    calls, up_calls = _Calls(), []
    calls.up = up_calls
    conv3x3, up = winograd.conv3x3, winograd.conv_transpose3x3_stride2
    for name in THRESHOLDS:
        monkeypatch.setattr(winograd, name, 1)
    monkeypatch.setattr(winograd, "conv3x3",
                        lambda x, w, v=None: calls.append(x.shape) or conv3x3(x, w, v))
    monkeypatch.setattr(winograd, "conv_transpose3x3_stride2",
                        lambda x, w, v=None: up_calls.append(x.shape) or up(x, w, v))
    return calls


class _Calls(list):
    """A list of call shapes with an ``up`` list beside it."""


@pytest.fixture
def direct_convs(monkeypatch):
    """Winograd's thresholds out of reach: every conv traced in the test takes the direct
    form (what GPUs, TPUs and bfloat16 always run)."""
    for name in THRESHOLDS:
        monkeypatch.setattr(winograd, name, 1 << 30)
