"""How much protection the stream carries, from what the receiver reports (RTCP): copies
of earlier packets in each one (RFC 2198), and the loss Opus's in-band FEC is tuned for.

A copy costs a packet's bytes again; FEC costs quality (bits taken from the audio). So on
a clean network the stream carries no copy, and when losses come it takes at once copies
that reach as far back as the receiver's bursts are long. A burst's packets come back
from the copies in the first packet after it, so the copies reach back past most of a
burst: spaced out (`airmic.common.red.spaced`), two or three copies reach as far as eight
in a row would. It gives them back one step at a time once the network has been clean
for a while: a Wi-Fi that loses now and then is not trusted after one good second. Under
a bandwidth cap the copies take their bytes from the audio: the Opus bitrate comes down so
that the packets, copies and headers fit.

FEC rebuilds a lost packet from the next one, which carries its copy too: with copies
it adds nothing, and tuned for a high loss it took 0.1 PESQ from every packet (bursty-10,
virtual time). So while the copies adapt, FEC stays at its floor; it follows the loss
only when the user fixed the copies. Sans-I/O: `report` with each report and the time.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from airmic.common.red import MAX_DEPTH, MAX_REACH

log = logging.getLogger(__name__)

LOSSY = 0.005
"""A report with more loss than this calls for protection."""
CALM = 10.0
"""Seconds of reports without loss before a step down."""
FIRST_CALM = 3.0
"""Seconds of reports without loss before the start's copy is given back: a stream starts
knowing nothing of the network, and a clean LAN should not pay for that for long."""
SMOOTHING = 0.3
"""The weight of each lossy report's burst length in the one the copies reach for: a
second holds a few bursts, and one long one should not set the reach for the stream."""
FEC_FLOOR, FEC_CEILING = 1, 25
"""The expected loss FEC is tuned for (percent): on a clean network, at most."""
REPAIR = 0.9
"""The share of a burst's packets the copies should reach: what the receiver's balanced
latency waits for (`airmic.common.delay.LatencyRange.repair`); reaching every packet of
the rare long burst would cost its delay to every packet."""
LEAST_BITRATE = 16_000
"""The Opus bitrate copies may bring the audio down to (wide-band speech still): below it,
fewer copies."""
HEADERS = 28 + 12 + 1
"""Bytes each packet costs besides its Opus: IP and UDP, RTP, RED's primary header (and 4
more for each redundant block)."""


def reach_for(burst: float, share: float = REPAIR) -> int:
    """How far back copies must reach to bring back `share` of the packets lost in runs
    of `burst` on average. A network's bursts are taken as geometric (the Gilbert-Elliott
    model's): a run goes on with probability q = 1 - 1/burst, so the last n packets of
    each run are 1 - q^n of all that runs lose."""
    if burst <= 1.0:
        return 1
    go_on = 1.0 - 1.0 / burst
    return min(MAX_REACH, max(1, math.ceil(math.log(1.0 - share) / math.log(go_on) - 1e-9)))


def copies_for(reach: int) -> int:
    """Copies to carry for that reach: the one just before (a lone loss), the one `reach`
    back (every packet of a burst that long), and a third between for the long reaches
    (a second loss in the same span)."""
    return min(MAX_DEPTH, reach, 1 if reach <= 1 else 2 if reach <= 4 else 3)


def fitted(copies: int, reach: int, bitrate: int, cap: int | None, rate: float) -> tuple[int, int]:
    """(copies, bitrate): the most of the wanted bitrate, and then of the copies, that fit
    `cap` bit/s on the wire at `rate` packets a second."""
    if cap is None:
        return copies, bitrate
    while True:
        headers = 8 * rate * (HEADERS + 4 * (reach if copies else 0))
        fits = int((cap - headers) / (1 + copies)) // 1000 * 1000
        if fits >= LEAST_BITRATE or copies == 0:
            return copies, max(LEAST_BITRATE, min(bitrate, fits))
        copies -= 1


@dataclass(frozen=True)
class Level:
    copies: int | None  # None: fixed by the user, not adapted
    reach: int | None  # how many packets back the oldest copy is
    expected_loss: int | None
    bitrate: int = 0  # Opus's, under the cap

    def describe(self) -> str:
        parts = []
        if self.copies is not None:
            parts.append(f"{self.copies} cop{'y' if self.copies == 1 else 'ies'}")
            if self.reach and self.reach > self.copies:
                parts[-1] += f" reaching {self.reach} packets back"
        if self.expected_loss is not None:
            parts.append(f"FEC for {self.expected_loss} % loss")
        if self.bitrate:
            parts.append(f"Opus at {self.bitrate // 1000} kbit/s")
        return ", ".join(parts)


class Protection:
    """Adapts whichever of the two is not fixed (`copies` or `expected_loss` None), and the
    Opus bitrate (`bitrate` at most) to fit the copies under `cap` bit/s, at `rate` packets
    a second."""

    def __init__(
        self,
        copies: int | None,
        expected_loss: int | None,
        now: float,
        *,
        bitrate: int = 64_000,
        cap: int | None = None,
        rate: float = 100.0,
    ) -> None:
        # Until the first report: a copy, as a stream that knows nothing.
        adapt = copies is None
        fec = None if expected_loss is not None else FEC_FLOOR if adapt else 10
        self._bitrate, self._cap, self._rate = bitrate, cap, rate
        self.level = self._level(1 if adapt else None, 1 if adapt else None, fec)
        self._adapt_fec = fec is not None and not adapt
        self._calm_since = now
        self._calm_for = FIRST_CALM
        self._burst: float | None = None  # the bursts' length, smoothed over reports

    def report(self, lost: float, burst: float, now: float) -> Level | None:
        """A report: `lost` of the packets in its interval, in runs of `burst` on average.
        The new level, if it changed."""
        reach, fec = self.level.reach, self.level.expected_loss
        if lost > LOSSY:
            self._calm_since, self._calm_for = now, CALM
            burst = max(1.0, burst)
            smooth = self._burst = (
                burst if self._burst is None else self._burst + SMOOTHING * (burst - self._burst)
            )
            if reach is not None:
                reach = max(reach, reach_for(smooth))
            if fec is not None and self._adapt_fec:
                fec = max(fec, min(FEC_CEILING, math.ceil(lost * 100 * 1.5)))
        elif now - self._calm_since >= self._calm_for:
            self._calm_since, self._calm_for = now, CALM
            if reach is not None:
                reach //= 2
            if fec is not None and self._adapt_fec:
                fec = max(FEC_FLOOR, fec // 2)
        level = self._level(None if reach is None else copies_for(reach), reach, fec)
        if level == self.level:
            return None
        log.info(
            "protection: %s (the receiver lost %.1f %% lately%s)",
            level.describe() or "no copies",
            lost * 100,
            f", in runs of {burst:.1f}" if burst else "",
        )
        self.level = level
        return level

    def _level(self, copies: int | None, reach: int | None, fec: int | None) -> Level:
        if copies is None or reach is None:  # fixed by the user: so is the bitrate
            return Level(copies, reach, fec)
        copies, bitrate = fitted(copies, reach, self._bitrate, self._cap, self._rate)
        return Level(copies, reach, fec, bitrate if self._cap is not None else 0)
