"""Sorts incoming datagrams into streams, one per (source address, SSRC).

A new stream is believed only after two packets in sequence (RFC 3550 section 6.2.1 and
appendix A.1): a flood of garbage or of random "RTP" cannot open streams. Plain streams
(--insecure: nothing proves where they come from) are bounded by their host: PER_HOST live
at once, and from then on a new one every 5 s; a new SSRC from an address replaces the
stream it had if that one went quiet (a sender that restarted its numbering). So SSRC
churn can neither lock others out nor open files without end. Every dropped datagram is
counted by reason and logged once per reason. RTCP from a stream's sender
(common/rtcp.py) is answered with a receiver report; its name (SDES) names a plain peer's
room; its BYE ends the stream. Sans-I/O, given `now`; one thread at a time (the receiver
holds a lock around it).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from aiortc.rtp import RtcpSenderInfo, RtpPacket

from airmic.common import rtcp
from airmic.common.audio import RATE
from airmic.common.log import OnceLogger
from airmic.common.rtp import Drop, DroppedPacket, MediaPacket, media_from_rtp, parse_media
from airmic.receiver.guard import Answer, Budget, Guard
from airmic.receiver.session import Inlet

log = logging.getLogger(__name__)

Address = tuple[str, int]
StreamKey = tuple[Address, int]
T = TypeVar("T", bytes, RtpPacket)

PROBATION_SLOTS = 64
"""Candidate streams remembered at once; the oldest is forgotten first."""
NAMES = 256
"""Names from RTCP remembered for streams not yet open."""
PER_HOST = 4
"""Plain streams from one host at once."""
QUIET = 0.2
"""Seconds a plain stream has been silent when a new SSRC from its address replaces it
(two streams from one socket that both play stay apart)."""
OPENINGS = 0.2, PER_HOST
"""Plain streams a host may open a second, and at once: a restart every 5 s, at most."""


class Demux:
    def __init__(
        self,
        open_session: Callable[[StreamKey, float], Inlet],
        max_streams: int = 16,
        guard: Guard | None = None,
        finish: Callable[[StreamKey, str], None] = lambda key, why: None,
        ahead: Callable[[], float] = lambda: time.time() - time.monotonic(),
    ) -> None:
        self._open_session = open_session
        self._finish = finish  # a stream is over (its BYE, or replaced): it plays out, ends
        self._openings: OrderedDict[str, Budget] = OrderedDict()  # plain streams, by host
        self._ahead = ahead  # how far the wall clock is ahead of the one `now` is on
        self.ssrc = secrets.randbits(32)  # this receiver's, in its reports
        self.names: OrderedDict[tuple[str, int], str] = OrderedDict()  # SDES by host, SSRC
        self.guard = guard  # handshakes and SRTP; None: plain RTP only
        self.max_streams = max_streams
        self.sessions: dict[StreamKey, Inlet] = {}
        self.opened = 0  # streams opened so far
        self.dropped = OnceLogger(log)
        # a candidate stream's first packet, and when it arrived
        self._probation: OrderedDict[StreamKey, tuple[MediaPacket, float]] = OrderedDict()

    def receive(self, data: bytes, addr: Address, now: float) -> bytes | None:
        """Take one datagram from `addr`; what to send back to it, if anything."""
        if self.guard is not None:
            try:
                plain = self.guard.admit(data, addr, now)
            except DroppedPacket as exc:
                self._drop(exc.reason, addr, str(exc), exc.ssrc)
                return exc.reply
            if isinstance(plain, Answer):
                return plain.data  # a handshake, answered
            data = plain
        if rtcp.is_rtcp(data):
            return self._control(data, addr, now)
        self._take(parse_media, data, addr, now)
        return None

    def _control(self, data: bytes, addr: Address, now: float) -> bytes | None:
        """RTCP from `addr`: an SR is answered with an RR (sealed for its sender)."""
        try:
            report = rtcp.parse(data)
        except DroppedPacket as exc:
            self._drop(exc.reason, addr, str(exc))
            return None
        if report.ssrc is None:
            self._drop(Drop.RTCP, addr, "RTCP with no report")
            return None
        if report.name:
            named = (addr[0], report.ssrc)
            self.names[named] = report.name
            self.names.move_to_end(named)
            if len(self.names) > NAMES:
                self.names.popitem(last=False)
        for ssrc in report.bye:
            if self._stream(addr, ssrc) in self.sessions:
                self._finish(self._stream(addr, ssrc), "sender")
        key = self._stream(addr, report.ssrc)
        session = self.sessions.get(key)
        if report.sender is None and not report.bye and report.name is None:
            self._drop(Drop.RTCP, addr, "RTCP that says nothing to a receiver")
            return None
        if session is None or report.sender is None:
            return None
        reply = session.report(report.ssrc, report, self.ssrc, now, self._ahead())
        return self.guard.seal(addr, reply) if self.guard is not None else reply

    def receive_rtp(self, rtp: RtpPacket, addr: Address, now: float) -> None:
        """Take one RTP packet that a WebRTC connection decrypted and parsed."""
        self._take(media_from_rtp, rtp, addr, now)

    def sender_clock(
        self, addr: Address, ssrc: int, info: RtcpSenderInfo, offset: float | None
    ) -> None:
        """A WebRTC sender's report (its connection answers it): the stream's capture times,
        on the sender's clock, `offset` seconds behind this host's wall clock."""
        session = self.sessions.get((addr, ssrc))
        if session is not None:
            session.sender_clock(info, offset, self._ahead())

    def _stream(self, addr: Address, ssrc: int) -> StreamKey:
        """The stream RTCP from `addr` is about: the one from the same address, or for a
        plain peer that sends its RTCP from another port (ffmpeg's is the next one), the
        plain stream of that SSRC from the same host."""
        key = (addr, ssrc)
        if key not in self.sessions:
            for (host, port), other in self.sessions:
                plain = not self.sessions[((host, port), other)].origin.encrypted
                if host == addr[0] and other == ssrc and plain:
                    return (host, port), other
        return key

    def _take(
        self, validate: Callable[[T], MediaPacket], raw: T, addr: Address, now: float
    ) -> None:
        try:
            packet = validate(raw)
        except DroppedPacket as exc:
            self._drop(exc.reason, addr, str(exc), exc.ssrc)
            return
        self._route(packet, addr, now)

    def _route(self, packet: MediaPacket, addr: Address, now: float) -> None:
        key = (addr, packet.ssrc)
        session = self.sessions.get(key)
        if session is None:
            session = self._admit(key, packet, now)
            if session is None:
                return
        session.push(packet, now)

    def _admit(self, key: StreamKey, packet: MediaPacket, now: float) -> Inlet | None:
        held = self._probation.pop(key, None)
        if held is None or (held[0].seq + 1) & 0xFFFF != packet.seq:
            if held is not None:
                self._drop("unconfirmed", key[0], "a new stream's packets were not in sequence")
            self._probation[key] = packet, now
            if len(self._probation) > PROBATION_SLOTS:
                (addr, _), _ = self._probation.popitem(last=False)
                self._drop("unconfirmed", addr, "a new stream never confirmed")
            return None
        if len(self.sessions) >= self.max_streams:
            self._drop("too_many_streams", key[0], f"more than {self.max_streams} streams")
            return None
        plain = self.guard is None or key[0] not in self.guard.keyed
        if plain and not self._plain_may_open(key, now):
            return None
        # The stream starts when its first packet came, not its second: placed a frame late,
        # every room's file slipped back in step 2 s in, leaving a frame out. A first packet
        # that came long before the second (a sender that stalled as it started) is placed
        # where its audio falls before the second's, or the file slipped back 0.7 s.
        first, arrived = held
        arrived = max(arrived, now - (packet.timestamp - first.timestamp) % 2**32 / RATE)
        session = self._open_session(key, arrived)
        self.sessions[key] = session
        self.opened += 1
        session.push(first, arrived)
        return session

    def _plain_may_open(self, key: StreamKey, now: float) -> bool:
        """Whether a plain stream may open: its host's budget and cap; a stream from the
        same address with another SSRC is replaced."""
        (host, port), _ = key
        budget = self._openings.pop(host, None) or Budget(*OPENINGS)
        self._openings[host] = budget  # the most recent last; a flood stays bounded
        if len(self._openings) > PROBATION_SLOTS:
            self._openings.popitem(last=False)
        if not budget.take(now):
            self._drop("stream_churn", key[0], "new streams from one host, too fast")
            return False
        for other in [k for k in self.sessions if k[0] == (host, port)]:
            session = self.sessions[other]
            if not session.origin.encrypted and now - session.last_packet >= QUIET:
                self._finish(other, "replaced")  # the sender restarted: a new SSRC
        plain = [k for k, s in self.sessions.items() if k[0][0] == host and not s.origin.encrypted]
        if len(plain) >= PER_HOST:
            self._drop("too_many_from_host", key[0], f"more than {PER_HOST} plain streams")
            return False
        return True

    def _drop(self, reason: str, addr: Address, detail: str, ssrc: int | None = None) -> None:
        session = self.sessions.get((addr, ssrc)) if ssrc is not None else None
        if session is not None:
            session.malformed += 1
        self.dropped.report(reason, "dropped a datagram from %s:%d (%s): %s", *addr, reason, detail)

    def close(self, key: StreamKey) -> Inlet:
        self.names.pop((key[0][0], key[1]), None)
        return self.sessions.pop(key)
