"""Fixtures of the receiver's tests against real sound servers."""

from __future__ import annotations

import pytest


@pytest.fixture
def tolerance(request) -> float:
    """How far, in ms, a measured loss may be from the one heard: 1 on PulseAudio; on
    PipeWire, whose reports move by whole quanta (5.3 ms here), one quantum either way (a
    quantum is measured that was not heard, or a silence heard a quantum longer)."""
    return 1.0 if request.node.callspec.params["pulse"] == "pulseaudio" else 6.0


@pytest.fixture
def length_tolerance(request, tolerance) -> float:
    """How far, in ms, a tone's length as recorded may be from the one written: as
    `tolerance`, but on PipeWire two quanta either way, as its recorder misses a quantum of
    its own now and then in place of the tone (CI heard 989.25 ms of a 1000 ms tone)."""
    return tolerance * (2 if request.node.callspec.params["pulse"] == "pipewire" else 1)
