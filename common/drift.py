"""How fast the sender's clock runs against the sink's: the ratio the playout resamples by.

Both clocks are seen from the receiver's own: the sender's through the RTP timestamps of
arriving packets, the sink's through how many samples it has pulled. Each gives a line
(offset against time) blurred by jitter on one side only (packets and wake-ups come late,
never early), so the lowest point of each half second is kept and a straight line fitted
through the last `window` seconds of them. Sans-I/O.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from airmic.common.audio import RATE
from airmic.common.rtp import unwrap

BUCKET = 0.5  # seconds per lowest point
MIN_POINTS = 6  # 3 s of history before the estimate is used
SETTLE = 1.0
"""Seconds of a sink's first pulls left out: a device that (re)starts takes a burst to fill
its buffer, which would read as a sink running fast."""


class _Envelope:
    """The slope of the lower envelope of (time, value) points."""

    def __init__(self, window: float) -> None:
        self._points: deque[tuple[float, float]] = deque(maxlen=int(window / BUCKET))
        self._bucket: tuple[float, float] | None = None  # (start, lowest value)
        self._slope: float | None = None  # fitted once per new point, asked every block

    def add(self, now: float, value: float) -> None:
        if self._bucket is None or now - self._bucket[0] >= BUCKET:
            if self._bucket is not None:
                self._points.append((self._bucket[0] + BUCKET / 2, self._bucket[1]))
                self._slope = None
            self._bucket = (now, value)
        elif value < self._bucket[1]:
            self._bucket = (self._bucket[0], value)

    def slope(self) -> float:
        if len(self._points) < MIN_POINTS:
            return 0.0
        if self._slope is None:
            t, v = np.array(self._points).T
            self._slope = float(np.polyfit(t - t[0], v, 1)[0])
        return self._slope

    def reset(self) -> None:
        self._points.clear()
        self._bucket = None
        self._slope = None


class DriftEstimator:
    """Estimates the resampling ratio (output / input) that matches the sink's consumption
    to the sender's production."""

    def __init__(self, window: float = 20.0) -> None:
        self._sender = _Envelope(window)
        self._sink = _Envelope(window)
        self._ts: int | None = None
        self._pulled = 0
        self._sink_start: float | None = None  # the first pull since the sink (re)started

    def arrived(self, timestamp: int, now: float) -> None:
        """A packet with RTP `timestamp` arrived at `now`."""
        self._ts = timestamp if self._ts is None else unwrap(timestamp, self._ts, 32)
        self._sender.add(now, now - self._ts / RATE)  # transit: falls if the sender is fast

    def pulled(self, samples: int, plays_at: float) -> None:
        """The sink took `samples`, which it plays from `plays_at` on (the device's clock:
        a device that pulls in bursts or ahead of time still plays one sample after the
        other)."""
        if self._sink_start is None:
            self._sink_start = plays_at
        if plays_at - self._sink_start >= SETTLE:
            self._sink.add(plays_at, plays_at - self._pulled / RATE)  # falls if sink is fast
        self._pulled += samples

    def restart_sink(self) -> None:
        """The sink's timeline jumped (it ran dry, or was reopened): start its line afresh."""
        self._sink.reset()
        self._pulled = 0
        self._sink_start = None

    def restart(self) -> None:
        """The sender's timeline restarted: its old points no longer line up."""
        self._sender.reset()
        self._ts = None

    @property
    def sender_ppm(self) -> float:
        """How much faster than the receiver's clock the sender's runs (parts per million)."""
        return -self._sender.slope() * 1e6

    @property
    def sink_ppm(self) -> float:
        """How much faster than the receiver's clock the sink's runs."""
        return -self._sink.slope() * 1e6

    @property
    def ratio(self) -> float:
        """Output samples per input sample that keep the buffer level."""
        return (1 + self.sink_ppm * 1e-6) / (1 + self.sender_ppm * 1e-6)
