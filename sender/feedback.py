"""What the receiver says it hears (its RTCP reports, common/rtcp.py), as the sender shows
it: on the status line, once as a warning when the reports stop, and in the summary.

Sans-I/O: `sent` when a sender report goes out, `received` with each report that comes
back, both with the time.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass

from airmic.common.rtcp import RATE, Report, View, middle, ntp, short_diff

log = logging.getLogger(__name__)

NO_ANSWER = 3.0
"""Seconds without a report after which the receiver is said not to answer: three sender
reports unanswered (a lost report or two is normal on Wi-Fi)."""
EXCHANGES = 8
"""Recent exchanges the clocks' offset is taken from: the one with the shortest round trip
(NTP's choice: the least delayed has the least error, at most half its round trip)."""


@dataclass(frozen=True)
class Heard:
    """The receiver's last report."""

    at: float  # when it came (the sender's monotonic clock)
    lost: int  # packets, since the stream started (RR)
    fraction: float  # of the packets in the last interval (RR)
    jitter_ms: float  # interarrival jitter (RR)
    round_trip_ms: float | None  # from the RR's LSR and DLSR (None before it echoes an SR)
    view: View | None  # airmic's own view, if the receiver is airmic


class Feedback:
    def __init__(self, ssrc: int, now: float, plain: bool = False) -> None:
        self.ssrc = ssrc
        self.plain = plain  # plain RTP: perhaps a peer that sends no reports (ffmpeg)
        self.heard: Heard | None = None
        self.reports = 0
        self._exchanges: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=EXCHANGES
        )  # (round trip, offset)
        self._since = now  # the stream's start, or the last report
        self.silent = False  # said that the receiver does not answer

    def received(self, report: Report, wall: float, now: float) -> Heard | None:
        """A report from the receiver came (at `wall` on the wall clock, `now` on ours);
        what it said of this stream, if anything."""
        block = next((b for b in report.blocks if b.ssrc == self.ssrc), None)
        if block is None:
            return None
        trip = None
        if block.lsr:  # RFC 3550 section 6.4.1: A - LSR - DLSR
            arrived = middle(ntp(wall))
            trip = max(0.0, short_diff(arrived, block.lsr) - block.dlsr / 65536) * 1000
            if report.view is not None and report.view.sent:  # NTP's offset (RFC 5905)
                answered = report.view.sent
                received = (answered - block.dlsr) & 0xFFFF_FFFF
                there = short_diff(received, block.lsr) + short_diff(answered, arrived)
                self._exchanges.append((trip, there / 2))
        self.heard = Heard(
            now,
            block.packets_lost,
            block.fraction_lost / 256,
            block.jitter / RATE * 1000,
            trip,
            report.view,
        )
        if not self.reports:
            log.info("the receiver hears this stream: %s", self.describe())
        self.reports += 1
        self._since = now
        if self.silent:
            self.silent = False
            log.info("the receiver answers again")
        return self.heard

    @property
    def offset(self) -> float | None:
        """How far the receiver's wall clock is ahead of this one's (seconds), if known."""
        if not self._exchanges:
            return None
        return min(self._exchanges)[1]

    @property
    def alarming(self) -> bool:
        """Whether the silence is news: an airmic receiver stopped answering."""
        return self.silent and not (self.heard is None and self.plain)

    def check(self, now: float) -> None:
        """Say it once when the receiver stops answering (the stream's thread, each packet)."""
        if self.silent or now - self._since < NO_ANSWER:
            return
        self.silent = True
        if not self.alarming:
            log.info(
                "no report from the receiver in %.0f s: it does not hear this stream, or it "
                "does not send RTCP (ffmpeg, GStreamer)",
                now - self._since,
            )
        else:
            log.warning(
                "the receiver does not answer: no report for %.0f s (is airmic-receive still "
                "running there? the network down?)",
                now - self._since,
            )

    def status(self, now: float) -> str:
        if self.silent and not self.alarming:
            return "no report from the receiver (a plain RTP peer may send none)"
        if self.silent:
            return f"the receiver does not answer: no report for {now - self._since:.0f} s"
        if self.heard is None:
            return "waiting for the receiver's first report"
        return f"receiver heard {now - self.heard.at:.1f} s ago: {self.describe()}"

    def summary(self, now: float) -> str:
        """The receiver's last word on the stream, for the sender's summary."""
        if self.heard is None:
            return ""
        if self.silent:
            return (
                f"the receiver stopped answering {now - self.heard.at:.0f} s before the end; "
                f"its last report: {self.describe()}"
            )
        return f"the receiver reported: {self.describe()}"

    def describe(self) -> str:
        """What the receiver last said, in a line (the summary)."""
        heard = self.heard
        if heard is None:
            return ""
        parts = [f"lost {heard.lost} ({heard.fraction:.1%} lately)"]
        view = heard.view
        if view is not None:
            parts.append(f"copies {view.repaired}, FEC {view.recovered}")
            parts.append(f"concealed {view.concealed}")
            parts.append(f"mic gaps {view.gaps}")
            parts.append(f"buffer {view.delay_ms:.0f} ms")
            if view.end_to_end_ms is not None:
                parts.append(f"end to end {view.end_to_end_ms:.0f} ms")
        parts.append(f"jitter {heard.jitter_ms:.1f} ms")
        if heard.round_trip_ms is not None:
            parts.append(f"round trip {heard.round_trip_ms:.1f} ms")
        return ", ".join(parts)
