"""How long packets should wait in the jitter buffer: measured, targeted, and clamped to
the latency range the user chose.

Every packet's wait is recorded when it plays: the time from its arrival to the moment its
first sample goes out (negative for a packet that came after its turn). The target keeps
the lowest waits (a low quantile over a long window) just above a small margin, so the
buffer holds only as much as the network's jitter needs: fast attack (a late packet counts
at once), slow release (it leaves the window after `window` seconds).

Stalls are remembered apart (`Stalls`): a network that holds every packet for a while, then
lets them through in a burst (Wi-Fi power save), does it again. From the second stall
within STALL_PATTERN seconds, the target holds the longest stall seen lately, so the next
one is absorbed instead of learned anew, window after window; once stalls stop for
STALL_RELEASE seconds, the hold goes and the window's slow release takes over. Sans-I/O.
"""

from __future__ import annotations

import bisect
import re
from collections import deque
from dataclasses import dataclass

from airmic.common.audio import RATE
from airmic.common.rtp import unwrap


@dataclass(frozen=True)
class LatencyRange:
    """Bounds of the buffer's target delay (seconds), and how much lateness it accepts."""

    low: float
    high: float
    quantile: float = 0.01  # share of packets allowed to be late before the target grows
    window: float = 10.0  # seconds of history behind the target (the release time)
    name: str = ""
    # share of the packets lost in bursts that the buffer waits long enough to get back
    # from the redundant copies after the burst (each frame of burst it covers costs a frame)
    repair: float = 0.9

    def __str__(self) -> str:
        if self.name:
            return self.name
        if self.low == self.high:
            return f"{self.low * 1000:g}ms"
        return f"{self.low * 1000:g}ms..{self.high * 1000:g}ms"


MODES = {
    "low": LatencyRange(0.0, 0.06, quantile=0.02, window=5.0, name="low", repair=0.7),
    "balanced": LatencyRange(0.0, 0.2, quantile=0.005, window=10.0, name="balanced"),
    "robust": LatencyRange(0.02, 0.3, quantile=0.001, window=20.0, name="robust", repair=0.95),
}


MIN_DELAY = 0.015
"""The least a fixed delay (or a range's top) may be: a 10 ms frame and a 5 ms block."""


def parse_latency(text: str) -> LatencyRange:
    """'low', 'balanced', 'robust', '40ms' (fixed) or '20ms..200ms' (a range). ValueError."""
    if text in MODES:
        return MODES[text]
    ms = r"\s*(\d+(?:\.\d+)?)\s*(?:ms)?\s*"
    match = re.fullmatch(f"{ms}(?:\\.\\.{ms})?", text)
    if not match:
        raise ValueError(
            f"latency {text!r}: use low, balanced, robust, a delay like 40ms, or 20ms..200ms"
        )
    low = float(match[1]) / 1000
    high = float(match[2]) / 1000 if match[2] else low
    if high < low or high > 1.0:
        raise ValueError(f"latency {text!r}: the range must go up, and stay under 1000ms")
    if high < MIN_DELAY:  # below a frame and a block, every packet would come too late
        raise ValueError(f"latency {text!r}: at least {MIN_DELAY * 1000:g}ms")
    return LatencyRange(low, high)


MARGIN = 0.002
"""Headroom kept above the lowest waits (seconds)."""
SHORT = 1.0
"""Seconds of recent waits whose median is the buffer's current delay."""
RECOMPUTE_AFTER = 0.1
"""Seconds a target is kept for."""
RECOMPUTE_LATE = 0.01
"""The same after a late packet came."""
STALL = 0.04
"""A packet this much later than the one before it (beyond their media time apart) came
after a stall."""
STALL_PATTERN = 10.0
"""Seconds within which a second stall makes stalls a pattern to hold the target over."""
STALL_RELEASE = 20.0
"""Seconds without a stall after which the hold is released."""
STALL_HEADROOM = 1.15
"""The hold is this much longer than the longest stall seen: stall lengths vary (on the
wifi-powersave trace, 60 s: 2 glitches with it, 4 without, 9 with no hold at all)."""


class Stalls:
    """The stalls of a stream's arrivals: when, and how long."""

    def __init__(self) -> None:
        self._seen: deque[tuple[float, float]] = deque()  # (when, how long)
        self._last: tuple[float, int] | None = None  # the newest arrival: (now, timestamp)

    def arrived(self, now: float, timestamp: int) -> None:
        """A packet of RTP time `timestamp` arrived."""
        if self._last is None:
            self._last = (now, timestamp)
            return
        ahead = unwrap(timestamp, self._last[1], 32) - self._last[1]
        if ahead <= 0:  # reordered, or a copy: not the newest
            return
        lateness = (now - self._last[0]) - ahead / RATE
        if lateness >= STALL:
            self._seen.append((now, lateness))
            while self._seen[0][0] < now - STALL_RELEASE:
                self._seen.popleft()
        self._last = (now, unwrap(timestamp, self._last[1], 32))

    def restart(self) -> None:
        """A new timeline (the stream restarted): arrivals before it say nothing."""
        self._last = None

    def hold(self, now: float) -> float:
        """The delay to hold for stalls (0 when they are not a pattern)."""
        recent = [(at, length) for at, length in self._seen if at >= now - STALL_RELEASE]
        if len(recent) < 2 or recent[-1][0] - recent[-2][0] > STALL_PATTERN:
            return 0.0
        return STALL_HEADROOM * max(length for _, length in recent)


class Window:
    """Values of the last `span` seconds, as they came and in order (a bisect as each
    comes and goes, so a quantile is read off, not sorted for)."""

    def __init__(self, span: float) -> None:
        self.span = span
        self._times: deque[float] = deque()  # when each value came
        self.values: deque[float] = deque()  # as they came
        self.ordered: list[float] = []  # the same, in order

    def __len__(self) -> int:
        return len(self.values)

    def add(self, now: float, value: float) -> None:
        self._times.append(now)
        self.values.append(value)
        bisect.insort(self.ordered, value)
        while self._times[0] < now - self.span:
            self._times.popleft()
            del self.ordered[bisect.bisect_left(self.ordered, self.values.popleft())]

    def quantile(self, q: float) -> float:
        return _quantile(self.ordered, q)


class DelayEstimator:
    """Recent packet waits, and the target delay they call for."""

    def __init__(self, latency: LatencyRange) -> None:
        self.latency = latency
        # Each wait less the shift at that time: over the target's window, and the last
        # second's (its median is the delay the buffer adds now, asked every frame).
        self._long = Window(latency.window)
        self._short = Window(SHORT)
        self._losses: deque[float] = deque()  # when packets were found lost
        self._shift = 0.0  # how much later playout runs than when the window began
        self._cache: tuple[float, float] | None = None  # (when, target)
        self._late = False  # a late packet came since: the target is due at once
        self.stalls = Stalls()

    def add(self, now: float, wait: float) -> None:
        """Record that a packet played `wait` seconds after it arrived (negative: late)."""
        self._long.add(now, wait - self._shift)
        self._short.add(now, wait - self._shift)
        if wait < 0:
            self._late = True  # fast attack: a late packet changes the target at once

    def lose(self, now: float, count: int = 1) -> None:
        """Record that `count` packets were lost (their turn came, they had not)."""
        self._losses.extend([now] * count)
        while self._losses and self._losses[0] < now - self.latency.window:
            self._losses.popleft()

    @property
    def loss_rate(self) -> float:
        """The share of packets lost over the window."""
        return len(self._losses) / max(1, len(self._losses) + len(self._long))

    def shift(self, seconds: float) -> None:
        """Playout moved `seconds` later (audio inserted) or earlier (negative: dropped)."""
        self._shift += seconds

    @property
    def current(self) -> float | None:
        """The median wait of the last second: the delay the buffer adds now."""
        if not self._short:
            return None
        return self._short.quantile(0.5) + self._shift

    def target(self, now: float, floor: float = 0.0) -> float:
        """The median wait that keeps all but `quantile` of the packets on time.

        `floor` is the least wait that is never late when the jitter is zero: the sink's
        block, since a packet must be there when the block that plays it is pulled.
        """
        # Taken anew every 0.1 s, and at once after a late packet, but not more often than
        # every 10 ms: on a machine out of time late packets come by the dozen, and a
        # target for each one would only make it later.
        age = RECOMPUTE_LATE if self._late else RECOMPUTE_AFTER
        if self._cache is None or now - self._cache[0] > age:
            self._cache = (now, max(self._spread(), self.stalls.hold(now)))
            self._late = False
        wanted = floor + MARGIN + self._cache[1]
        return min(max(wanted, self.latency.low), max(self.latency.high, self.latency.low))

    def _spread(self) -> float:
        """How far the lowest waits fall below the median: the jitter to absorb."""
        if len(self._long) < 10:
            return 0.0
        return self._long.quantile(0.5) - self._long.quantile(self.latency.quantile)

    @property
    def waits(self) -> list[float]:
        """The waits in the window, as they would be at the current shift."""
        return [w + self._shift for w in self._long.values]


def _quantile(ordered: list[float], q: float) -> float:
    """numpy's default ("linear") quantile of values already in order, to the last bit:
    the window is kept sorted as waits come and go (a bisect each), where sorting it anew
    for each target cost a tenth of a millisecond, ten times a second per stream."""
    at = q * (len(ordered) - 1)
    below = int(at)
    t = at - below
    a = ordered[below]
    b = ordered[min(below + 1, len(ordered) - 1)]
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t
