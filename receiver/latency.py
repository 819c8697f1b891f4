"""A stream's end-to-end latency: from the sender's capture to the mic, live.

The sender's reports (common/rtcp.py) map its RTP timestamps to its wall clock, and give
the offset of the receiver's wall clock from its own; so each packet's capture can be
placed on the receiver's monotonic clock, and its transit measured as it arrives. The
latency is then the transit of the stream's recent packets (their median), plus how long
they wait in the buffer (the playout's delay), plus how long the output holds a block
before it is heard, plus the receiver's DSP. Sans-I/O; `packet` on the network side, the
rest on the stream's driver.
"""

from __future__ import annotations

import collections
import statistics

from aiortc.rtp import RtcpSenderInfo

from airmic.common.rtcp import RATE, seconds
from airmic.common.rtp import difference

RECENT = 100
"""Packets whose transit is remembered: a second of 10 ms frames."""


class EndToEnd:
    def __init__(self) -> None:
        self._origin: tuple[float, int] | None = None  # (a capture time here, its RTP time)
        self._transits: collections.deque[float] = collections.deque(maxlen=RECENT)

    def sender_report(self, info: RtcpSenderInfo, offset: float | None, ahead: float) -> None:
        """An SR, with the sender's estimate of how far this host's wall clock is ahead of
        its own (`offset`; None until it knows) and how far this host's wall clock is ahead
        of its monotonic one (`ahead`)."""
        if offset is None:
            return
        self._origin = seconds(info.ntp_timestamp) + offset - ahead, info.rtp_timestamp

    def packet(self, timestamp: int, now: float) -> None:
        """A packet whose first sample has RTP time `timestamp` arrived at `now`."""
        if self._origin is None:
            return
        at, origin = self._origin
        elapsed = difference(timestamp, origin, 32) / RATE
        self._transits.append(now - (at + elapsed))

    def estimate(self, wait: float | None, output: float, dsp: float) -> float | None:
        """Seconds from capture to the mic, if the clocks are known (the driver's thread)."""
        transits = list(self._transits)  # a copy: the network side appends meanwhile
        if not transits or wait is None:
            return None
        # A transit under 0 is the sender's clock, not the network: a browser stamps its
        # reports after it captured their audio (by up to 40 ms seen), so the latency is
        # then at least what this receiver holds the audio, never less.
        return max(0.0, statistics.median(transits)) + wait + output + dsp
