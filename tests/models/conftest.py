"""Fixtures of the model tests."""

import pytest

from jaxfair.models import winograd


@pytest.fixture
def winograd_everywhere(monkeypatch):
    """Winograd's threshold at 1 channel, so every eligible 3x3 conv traced in the test runs
    as ``winograd.conv3x3``; returns the list of input shapes it was called with."""
    calls = []
    conv3x3 = winograd.conv3x3
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "conv3x3", lambda x, w: calls.append(x.shape) or conv3x3(x, w))
    return calls
