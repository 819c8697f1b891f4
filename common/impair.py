"""A seeded model of a bad network, for tests and benchmarks: loss (random or bursty),
delay, jitter, reordering, duplication, and Wi-Fi power-save stalls.

Sans-I/O: `deliveries(sent_at)` says when (and how many times) a packet sent at `sent_at`
arrives. `apply()` runs a whole trace in-process; `scripts/impair_proxy.py` puts the same model
between two UDP sockets. Every run of a profile with the same seed gives the same trace.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar

Distribution = Literal["exponential", "normal", "uniform", "pareto"]
T = TypeVar("T")


@dataclass(frozen=True)
class Profile:
    """What the network does to packets. Times in seconds, probabilities in [0, 1]."""

    name: str = "clean"
    loss: float = 0.0  # independent random loss
    # Gilbert-Elliott bursty loss: good -> bad with p_bad, bad -> good with p_good; a packet
    # is lost with probability `bad_loss` in the bad state. Mean burst: 1 / p_good packets.
    p_bad: float = 0.0
    p_good: float = 1.0
    bad_loss: float = 1.0
    delay: float = 0.0  # fixed one-way delay
    jitter: float = 0.0  # scale of the random extra delay
    jitter_dist: Distribution = "exponential"
    reorder: float = 0.0  # chance a packet may overtake the one before it
    duplicate: float = 0.0  # chance a packet arrives twice
    # Wi-Fi power save: every `stall_every` (range) seconds the link holds packets for
    # `stall_for` (range) seconds, then releases them in a burst, `burst_gap` apart.
    stall_every: tuple[float, float] | None = None
    stall_for: tuple[float, float] = (0.05, 0.2)
    burst_gap: float = 0.0005

    def seeded(self, seed: int) -> Impairment:
        return Impairment(self, seed)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        Profile("clean"),
        # Jitter p99 of about 15 ms (exponential: p99 = 4.6 x scale) and rare loss.
        Profile("wifi-good", delay=0.002, jitter=0.0033, loss=0.002),
        Profile("wifi-powersave", delay=0.002, jitter=0.001, stall_every=(0.6, 1.5)),
        Profile("loss-5", loss=0.05),
        # 10 % average loss in bursts of 3 packets on average: p_bad / (p_bad + p_good) = 0.1.
        Profile("bursty-10", p_bad=1 / 27, p_good=1 / 3),
    ]
}


@dataclass
class Impairment:
    """The state of one seeded run of a profile."""

    profile: Profile
    seed: int = 0
    _rng: random.Random = field(init=False)
    _bad: bool = field(init=False, default=False)
    _last_arrival: float = field(init=False, default=-math.inf)
    _stall_start: float | None = field(init=False, default=None)
    _stall_end: float = field(init=False, default=-math.inf)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def deliveries(self, sent_at: float) -> list[float]:
        """Arrival times of a packet sent at `sent_at` (in send order): [] if lost, two if
        duplicated."""
        p = self.profile
        if self._lost():
            return []
        arrival = sent_at + p.delay + self._jitter()
        arrival = self._stall(sent_at, arrival)
        if self._rng.random() >= p.reorder:
            # Links are FIFO: a packet does not overtake the one before it.
            arrival = max(arrival, self._last_arrival + (p.burst_gap if p.stall_every else 0.0))
        self._last_arrival = max(self._last_arrival, arrival)
        if self._rng.random() < p.duplicate:
            return [arrival, arrival + self._rng.uniform(0.0, 0.005)]
        return [arrival]

    def _lost(self) -> bool:
        p = self.profile
        if p.p_bad:
            self._bad = (
                self._rng.random() >= p.p_good if self._bad else self._rng.random() < p.p_bad
            )
            if self._bad and self._rng.random() < p.bad_loss:
                return True
        return self._rng.random() < p.loss

    def _jitter(self) -> float:
        p = self.profile
        if not p.jitter:
            return 0.0
        if p.jitter_dist == "exponential":
            return self._rng.expovariate(1 / p.jitter)
        if p.jitter_dist == "normal":
            return abs(self._rng.gauss(0.0, p.jitter))
        if p.jitter_dist == "uniform":
            return self._rng.uniform(0.0, 2 * p.jitter)
        return p.jitter * (self._rng.paretovariate(3.0) - 1.0)  # heavy tail

    def _stall(self, sent_at: float, arrival: float) -> float:
        """Hold packets sent during a stall window until the window ends."""
        p = self.profile
        if p.stall_every is None:
            return arrival
        if self._stall_start is None:
            self._stall_start = sent_at + self._rng.uniform(*p.stall_every)
            self._stall_end = self._stall_start + self._rng.uniform(*p.stall_for)
        while sent_at >= self._stall_end:  # send times only grow: move to the next window
            self._stall_start = self._stall_end + self._rng.uniform(*p.stall_every)
            self._stall_end = self._stall_start + self._rng.uniform(*p.stall_for)
        if sent_at >= self._stall_start:
            return max(arrival, self._stall_end)
        return arrival


def apply(
    profile: Profile, sent: Iterable[tuple[float, T]], seed: int = 0
) -> list[tuple[float, T]]:
    """The trace `sent` (send time, packet), impaired: (arrival time, packet), by arrival."""
    impairment = profile.seeded(seed)
    arrived = [(t, item) for sent_at, item in sent for t in impairment.deliveries(sent_at)]
    arrived.sort(key=lambda a: a[0])
    return arrived


def profile(name: str, **changes: object) -> Profile:
    """A named profile, optionally changed: profile("loss-5", loss=0.1)."""
    try:
        base = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None
    return replace(base, **changes)  # type: ignore[arg-type]
