"""How much protection the stream carries, from what the receiver reports (RTCP): copies
of earlier packets in each one (RFC 2198), and the loss Opus's in-band FEC is tuned for.

A copy costs a packet's bytes again; FEC costs quality (bits taken from the audio). So on
a clean network the stream carries none of either, and when losses come it takes at once
as many copies as the receiver's bursts are long (one copy rebuilds a single loss, three
a burst of three), and FEC for about the loss seen. It gives them back one step at a
time once the network has been clean for a while: a Wi-Fi that loses now and then is
not trusted after one good second. Sans-I/O: `report` with each report and the time.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from airmic.common.red import MAX_DEPTH

log = logging.getLogger(__name__)

LOSSY = 0.005
"""A report with more loss than this calls for protection."""
CALM = 10.0
"""Seconds of reports without loss before a step down."""
FEC_FLOOR, FEC_CEILING = 1, 25
"""The expected loss FEC is tuned for (percent): on a clean network, at most."""


@dataclass(frozen=True)
class Level:
    copies: int | None  # None: fixed by the user, not adapted
    expected_loss: int | None

    def describe(self) -> str:
        parts = []
        if self.copies is not None:
            parts.append(f"{self.copies} cop{'y' if self.copies == 1 else 'ies'}")
        if self.expected_loss is not None:
            parts.append(f"FEC for {self.expected_loss} % loss")
        return ", ".join(parts)


class Protection:
    """Adapts whichever of the two is not fixed (`copies` or `expected_loss` None)."""

    def __init__(self, copies: int | None, expected_loss: int | None, now: float) -> None:
        self.adapt_copies = copies is None
        self.adapt_fec = expected_loss is None
        # Until the first report: a copy and FEC for 10 %, as a stream that knows nothing.
        self.level = Level(1 if copies is None else None, 10 if expected_loss is None else None)
        self._calm_since = now

    def report(self, lost: float, burst: float, now: float) -> Level | None:
        """A report: `lost` of the packets in its interval, in runs of `burst` on average.
        The new level, if it changed."""
        copies, fec = self.level.copies, self.level.expected_loss
        if lost > LOSSY:
            self._calm_since = now
            if copies is not None:
                copies = max(copies, min(MAX_DEPTH, max(1, math.ceil(burst))))
            if fec is not None:
                fec = max(fec, min(FEC_CEILING, math.ceil(lost * 100 * 1.5)))
        elif now - self._calm_since >= CALM:
            self._calm_since = now
            if copies is not None:
                copies = max(0, copies - 1)
            if fec is not None:
                fec = max(FEC_FLOOR, fec // 2)
        level = Level(copies, fec)
        if level == self.level:
            return None
        log.info(
            "protection: %s (the receiver lost %.1f %% lately%s)",
            level.describe(),
            lost * 100,
            f", in runs of {burst:.1f}" if burst else "",
        )
        self.level = level
        return level
