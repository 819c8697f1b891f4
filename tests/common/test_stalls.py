"""The stall detector of the delay control (common/delay.py), on arrival traces."""

from __future__ import annotations

import random

import numpy as np
import pytest

from airmic.common.delay import MODES, STALL_HEADROOM, STALL_RELEASE, DelayEstimator, Stalls


def arrivals(seconds: float, stalls: dict[float, float], jitter: float = 0.0, seed: int = 1):
    """(arrival, RTP time) of 10 ms packets; a stall of `stalls[t]` at second t holds the
    packets sent in it, then lets them through 0.5 ms apart."""
    rng = random.Random(seed)
    out, last = [], 0.0
    for i in range(round(seconds * 100)):
        sent = i * 0.01
        arrival = sent + rng.uniform(0, jitter)
        for start, length in stalls.items():
            if start <= sent < start + length:
                arrival = max(arrival, start + length)
        arrival = max(arrival, last + 0.0005)
        last = arrival
        out.append((arrival, (i * 480) % 2**32))
    return out


def test_a_second_stall_makes_a_pattern_held_until_stalls_stop():
    stalls = Stalls()
    pattern = {1.0: 0.08, 2.5: 0.12, 4.0: 0.06}
    held = {}
    for now, timestamp in arrivals(4.0 + STALL_RELEASE + 1, pattern):
        stalls.arrived(now, timestamp)
        held[round(now, 2)] = stalls.hold(now)
    assert held[2.0] == 0.0  # one stall is not a pattern
    assert held[3.0] == pytest.approx(STALL_HEADROOM * 0.12, abs=0.002)
    assert held[10.0] == pytest.approx(STALL_HEADROOM * 0.12, abs=0.002)  # the longest
    assert max(h for t, h in held.items() if t > 4.1 + STALL_RELEASE) == 0.0  # released


def test_wifi_jitter_is_not_a_stall():
    stalls = Stalls()
    for now, timestamp in arrivals(20.0, {}, jitter=0.03):
        stalls.arrived(now, timestamp)
    assert stalls.hold(20.0) == 0.0


def test_the_windows_give_numpys_quantiles_as_they_slide():
    """The windows kept in order as waits come and go give numpy's quantiles exactly: the
    target's spread over its 10 s, and the current delay (the median of the last second)."""
    rng = np.random.default_rng(7)
    estimator = DelayEstimator(MODES["balanced"])
    added = []
    for k in range(3000):  # 30 s at 100 packets a second: the windows slide
        wait = float(rng.normal(0.02, 0.005))
        estimator.add(k * 0.01, wait)
        added.append((k * 0.01, wait))
        if k % 250 == 0 and k:
            waits = np.array(estimator.waits)
            expected = np.quantile(waits, 0.5) - np.quantile(waits, MODES["balanced"].quantile)
            assert estimator._spread() == pytest.approx(expected, abs=1e-15)
            recent = [w for t, w in added if t >= k * 0.01 - 1.0]
            assert estimator.current == pytest.approx(float(np.median(recent)), abs=1e-15)
