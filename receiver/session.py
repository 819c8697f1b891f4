"""One received stream: its inbox, its playout (jitter buffer, decoder, delay and drift
control, DSP) and the figures it publishes.

Two threads meet here, and only through a queue: the network side `push`es packets (a
deque append, safe from any thread), and the thread of the clock that drives the stream
(its output's) `read`s the next block, which first moves the inbox into the playout. The
playout is touched by that one thread only; everyone else reads the frozen `Metrics` it
publishes a few times a second.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from aiortc.rtp import RtcpSenderInfo

from airmic.common import rtcp
from airmic.common.audio import RATE, Block, dbfs, level_dbfs
from airmic.common.dsp.chain import Chain
from airmic.common.playout import Playout
from airmic.common.rtp import MediaPacket
from airmic.receiver.latency import EndToEnd
from airmic.receiver.rooms import Room

log = logging.getLogger(__name__)

INBOX = 1000
"""Packets held for a driver that stopped pulling (10 s of 10 ms frames); older ones go."""
HEARD = 1.0
"""Seconds the level the page shows is averaged over."""
PUBLISH = 0.25
"""Seconds between two metrics snapshots."""


@dataclass(frozen=True)
class Origin:
    """Where a stream comes from, as the receiver learned it when the stream opened."""

    name: str
    encrypted: bool  # SRTP from a paired sender, or DTLS-SRTP (WebRTC)
    transport: str = "udp"  # or "webrtc"
    room: str = ""  # the sender's name (or, for plain RTP, its host): its streams' room


@dataclass(frozen=True)
class Metrics:
    """A stream's figures at one moment: what the status line, the page and the stats
    file show. `gaps` are the blocks a listener missed at the stream's outputs."""

    stream: str
    encrypted: bool
    transport: str
    sinks: tuple[str, ...] = ()
    dsp: str | None = None
    payload_type: int | None = None
    jitter: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    drops: int = 0
    inserts: int = 0
    drift_ppm: float = 0.0
    delay_ms: float | None = None
    target_ms: float = 0.0
    latency: str = ""
    seconds: float = 0.0
    level_db: float = -120.0  # the last block's
    heard_db: float | None = None  # over the last whole second (a speaker's level, not an
    # instant); None before the first
    gaps: int = 0  # underruns and dropped blocks at the outputs (the mic, a device)
    gap_ms: float = 0.0  # their length
    overflow: int = 0  # packets the inbox dropped while its driver was stuck
    reports: int = 0  # sender reports (RTCP) received, each answered
    end_to_end_ms: float | None = None  # capture to the output, once the sender's reports tell
    ended: str = ""  # why it ended: sender, replaced, silent, ... (pipeline.ENDINGS)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("jitter"))
        data["sinks"] = list(self.sinks)
        return data


class Inlet:
    """A stream's network side: where it comes from, its reception (RTCP's loss and
    jitter), its sender's clock, and the last `Metrics` its playout published. The
    playout is a `Session` in this process, or one in a worker process
    (`airmic.receiver.workers.Remote`)."""

    def __init__(
        self,
        origin: Origin,
        now: float,
        tap: Callable[[MediaPacket, float], None] | None = None,
        room: Room | None = None,
    ) -> None:
        self.origin = origin
        self.room = room or Room(origin.room or origin.name)  # its gain and mute, live
        self.tap = tap  # also gets each packet as it arrives (the room's recording)
        self.last_packet = now  # written by the network side
        self.malformed = 0  # datagrams of this stream refused before the inbox (network side)
        self.reception = rtcp.Reception()  # loss and jitter for RTCP (network side)
        self.latency = EndToEnd()  # capture to the output, from the sender's reports
        self.closing = False  # the sender said BYE: play what is buffered, then end
        self.ended = ""  # why it ended (Metrics.ended), set by whoever ended it
        self.reports = 0  # sender reports answered (network side)
        self.metrics = Metrics(origin.name, origin.encrypted, origin.transport)

    @property
    def name(self) -> str:
        return self.origin.name

    def push(self, packet: MediaPacket, now: float) -> None:
        """A packet arrived at `now` (any thread; never blocks)."""
        self.last_packet = now
        self.reception.packet(packet.seq, packet.timestamp, now)
        if self.tap is not None:
            self.tap(packet, now)
        self.deliver(packet, now)

    def deliver(self, packet: MediaPacket, now: float) -> None:
        """Hand the packet to the playout."""
        raise NotImplementedError

    def play_out(self) -> None:
        """The sender said BYE: play what is buffered, then end."""
        self.closing = True

    def sender_clock(self, info: RtcpSenderInfo, offset: float | None, ahead: float) -> None:
        """The sender's report of its clock (`EndToEnd.sender_report`)."""
        self.latency.sender_report(info, offset, ahead)

    def report(self, source: int, sent: rtcp.Report, ssrc: int, now: float, ahead: float) -> bytes:
        """The answer to the sender report `sent` from SSRC `source` (network side): an RR
        from `ssrc`, and the stream as this receiver last published it. `ahead`: how far
        the wall clock is ahead of the monotonic one, now."""
        assert sent.sender is not None
        self.reception.sender_report(sent.sender, now)
        self.sender_clock(sent.sender, sent.offset, ahead)
        self.reports += 1
        block = self.reception.block(source, now)
        m = self.metrics
        view = rtcp.View(
            delay_ms=m.delay_ms or 0.0,
            recovered=m.jitter.get("recovered", 0),
            repaired=m.jitter.get("repaired", 0),
            concealed=m.jitter.get("concealed", 0),
            gaps=m.gaps,
            gap_ms=m.gap_ms,
            end_to_end_ms=m.end_to_end_ms,
            sent=rtcp.middle(rtcp.ntp(now + ahead)),
            burst=self.reception.burst,
        )
        return rtcp.receiver_report(ssrc, block, view)


class Session(Inlet):
    """Plays one stream (one SSRC from one address)."""

    def __init__(
        self,
        origin: Origin,
        playout: Playout,
        now: float,
        dsp: Chain | None = None,
        sinks: tuple[str, ...] = (),
        tap: Callable[[MediaPacket, float], None] | None = None,
        room: Room | None = None,
    ) -> None:
        super().__init__(origin, now, tap, room)
        self.sinks = sinks  # their descriptions
        self.playout = playout
        self.dsp = dsp  # for senders that cannot run it themselves (browsers, ffmpeg)
        self.gaps = 0  # counted by the outputs, on the driver's thread
        self.gap_ms = 0.0
        self._output = 0.0  # seconds from a pull to its being heard, as the output last said
        self._inbox: collections.deque[tuple[MediaPacket, float]] = collections.deque()
        self._overflow = 0
        self._payload_type: int | None = None
        self._samples = 0
        self._last: Block | None = None  # the last block played, for its level
        self._energy, self._counted = 0.0, 0  # sum of squares, samples, this HEARD spell
        self._heard: float | None = None  # the level of the last whole spell
        self._published = -PUBLISH
        self.metrics = self._snapshot(now)

    def deliver(self, packet: MediaPacket, now: float) -> None:
        self.latency.packet(packet.timestamp, now)  # reckoned where the stream plays
        self._inbox.append((packet, now))
        if len(self._inbox) > INBOX:  # the driver is stuck: keep the newest
            self._inbox.popleft()
            self._overflow += 1

    @property
    def played_out(self) -> bool:
        """Nothing left to play but the last fraction of a block (the driver's thread)."""
        return not self._inbox and not self.playout.jitter.buffered

    def read(self, samples: int, now: float, plays_at: float | None = None) -> Block | None:
        """The `samples` the driving output takes at `now` (and plays from `plays_at`, on
        its device's clock); None while the stream has nothing to play (before it starts,
        in a pause). The driver's thread only."""
        self._take_inbox()
        self._output = 0.0 if plays_at is None else plays_at - now
        block = self.playout.pull(samples, now, plays_at)
        if block is not None and self.playout.waiting and not block.any():
            block = None  # silence while the network is late: not part of the stream
        if block is not None:
            if self.dsp is not None:
                block = self.dsp.process(block)
            self._samples += len(block)
            self._last = block
            self._energy += float(np.dot(block, block))
            self._counted += len(block)
            if self._counted >= RATE * HEARD:
                self._heard = dbfs(self._energy / self._counted)
                self._energy, self._counted = 0.0, 0
        if now - self._published >= PUBLISH:
            self.metrics = self._snapshot(now)
        return block

    def gap(self, seconds: float) -> None:
        """An output missed `seconds` of this stream."""
        self.gaps += 1
        self.gap_ms += seconds * 1000

    def clock_moved(self, seconds: float) -> None:
        """The driving output's timeline jumped `seconds` later (an underrun, a reopen;
        negative: earlier), on the driver's thread. The playout runs that much later: a
        step, not the network's jitter, so the delay control is told (it then comes back
        down by dropping quiet frames), and the drift against the output is measured
        afresh."""
        self.playout.delay.shift(seconds)
        self.playout.drift.restart_sink()

    def drain(self, now: float) -> Block:
        """Everything still buffered, decoded at once (the end: lose nothing), and the
        final metrics published. The driver's thread, or the one it handed the stream to."""
        self._take_inbox()
        rest = self.playout.drain()
        if self.dsp is not None and len(rest):
            rest = self.dsp.process(rest)
        self._samples += len(rest)
        self.metrics = self._snapshot(now)
        return rest

    def _take_inbox(self) -> None:
        inbox = self._inbox
        while inbox:
            packet, at = inbox.popleft()
            self._payload_type = packet.payload_type
            self.playout.push(packet, at)

    def _snapshot(self, now: float) -> Metrics:
        self._published = now
        view = self.playout.view(now)
        dsp = self.dsp.latency_ms / 1000 if self.dsp is not None else 0.0
        latency = self.latency.estimate(view.delay, self._output, dsp)
        if log.isEnabledFor(logging.DEBUG) and view.delay is not None:
            log.debug("%s: delay %.1f ms, target %.1f ms, ratio %.6f, drift %.0f ppm",
                      self.name, view.delay * 1000, view.target * 1000, view.ratio,
                      view.drift_ppm)  # fmt: skip
        return Metrics(
            stream=self.origin.name,
            encrypted=self.origin.encrypted,
            transport=self.origin.transport,
            sinks=self.sinks,
            dsp=self.dsp.describe() if self.dsp is not None else None,
            payload_type=self._payload_type,
            jitter=view.jitter,
            malformed=self.malformed + view.malformed,
            drops=view.drops,
            inserts=view.inserts,
            drift_ppm=round(view.drift_ppm, 1),
            delay_ms=None if view.delay is None else round(view.delay * 1000, 1),
            target_ms=round(view.target * 1000, 1),
            latency=view.latency,
            seconds=round(self._samples / RATE, 3),
            level_db=round(level_dbfs(self._last), 1) if self._last is not None else -120.0,
            heard_db=None if self._heard is None else round(self._heard, 1),
            gaps=self.gaps,
            gap_ms=round(self.gap_ms, 1),
            overflow=self._overflow,
            reports=self.reports,
            end_to_end_ms=None if latency is None else round(latency * 1000, 1),
            ended=self.ended,
        )
