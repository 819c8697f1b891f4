"""Opus over RTP (RFC 3550, RFC 7587): packetizing, validating and wrap-around arithmetic.

Packet parsing and serialisation are aiortc's `RtpPacket`; this module adds what a media
receiver needs on top: a verdict on each datagram, redundant copies unpacked (RFC 2198),
and sequence numbers and timestamps extended past their 16- and 32-bit wrap.
"""

from __future__ import annotations

import enum
import secrets
import struct
from dataclasses import dataclass, replace

from aiortc.rtp import RtpPacket, is_rtcp

from airmic.common.opus import packet_samples
from airmic.common.red import RED_PAYLOAD_TYPE, RedBlock, RedEncoder, RedPayload

DEFAULT_PAYLOAD_TYPE = 96
MAX_DATAGRAM = 8192
"""Larger datagrams are refused: even 120 ms of Opus at 510 kbit/s fits in 7.7 kB."""


class Drop(enum.StrEnum):
    """Why a datagram was dropped before it reached a stream."""

    NOT_RTP = "not_rtp"
    RTCP = "rtcp"
    OVERSIZED = "oversized"
    PAYLOAD_TYPE = "payload_type"
    BAD_OPUS = "bad_opus"
    BAD_RED = "bad_red"
    # encrypted streams (common/srtp.py, receiver/guard.py)
    FORGED = "forged"  # SRTP that does not authenticate: modified, or not from the sender
    REPLAYED = "replayed"  # SRTP seen before
    UNPAIRED = "unpaired"  # a handshake from a sender this receiver is not paired with
    NO_SESSION = "no_session"  # SRTP from an address that did no handshake (or revoked)
    PLAIN = "plain"  # unencrypted RTP, refused without --insecure
    BAD_HANDSHAKE = "bad_handshake"
    HANDSHAKE_FLOOD = "handshake_flood"  # more hellos than the guard checks a second


class DroppedPacket(ValueError):
    """A datagram that is not an RTP packet carrying Opus; `reason` says why."""

    def __init__(
        self, reason: Drop, detail: str, ssrc: int | None = None, reply: bytes | None = None
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.ssrc = ssrc  # the stream it claims to belong to, once the RTP header parsed
        self.reply = reply  # a datagram for the source (why it was refused, or a request)


@dataclass(frozen=True, slots=True)
class MediaPacket:
    """An RTP packet that carries a valid Opus payload of `samples` samples."""

    ssrc: int
    seq: int
    timestamp: int
    payload: bytes
    samples: int
    payload_type: int = DEFAULT_PAYLOAD_TYPE
    marker: bool = False
    redundant: tuple[MediaPacket, ...] = ()  # copies of the packets before it, oldest first


def parse_media(data: bytes) -> MediaPacket:
    """Validate a datagram as RTP with an Opus payload. Raises DroppedPacket."""
    if len(data) > MAX_DATAGRAM:
        raise DroppedPacket(Drop.OVERSIZED, f"datagram of {len(data)} bytes")
    if len(data) >= 2 and data[0] >> 6 == 2 and is_rtcp(data):
        raise DroppedPacket(Drop.RTCP, "RTCP packet on the media port")
    try:
        rtp = RtpPacket.parse(data)
    except (ValueError, IndexError, struct.error) as exc:
        raise DroppedPacket(Drop.NOT_RTP, str(exc)) from None
    return media_from_rtp(rtp)


def media_from_rtp(rtp: RtpPacket) -> MediaPacket:
    """Validate a parsed RTP packet (from a UDP datagram, or WebRTC's decrypted media) as
    carrying Opus. Raises DroppedPacket."""
    if rtp.payload_type != RED_PAYLOAD_TYPE:
        return _media(rtp, RedBlock(rtp.payload_type, 0, rtp.payload), back=0)
    try:
        *redundant, primary = RedPayload.parse(rtp.payload).blocks
    except ValueError as exc:
        raise DroppedPacket(Drop.BAD_RED, str(exc), rtp.ssrc) from None
    # Copies are of the packets just before, in order (RFC 2198 leaves numbering out); an
    # empty block stands for nothing.
    copies = [_media(rtp, b, len(redundant) - i) for i, b in enumerate(redundant) if b.data]
    return replace(_media(rtp, primary, back=0), redundant=tuple(copies))


def _media(rtp: RtpPacket, block: RedBlock, back: int) -> MediaPacket:
    """The Opus packet in `block`, sent `back` packets before `rtp`."""
    # Opus always has a dynamic payload type (RFC 7587 section 6.1).
    if not 96 <= block.payload_type <= 127:
        raise DroppedPacket(
            Drop.PAYLOAD_TYPE, f"static payload type {block.payload_type}", rtp.ssrc
        )
    try:
        samples = packet_samples(block.data)
    except ValueError as exc:
        raise DroppedPacket(Drop.BAD_OPUS, str(exc), rtp.ssrc) from None
    return MediaPacket(
        ssrc=rtp.ssrc,
        seq=(rtp.sequence_number - back) & 0xFFFF,
        timestamp=(rtp.timestamp - block.offset) & 0xFFFFFFFF,
        payload=block.data,
        samples=samples,
        payload_type=block.payload_type,
        marker=bool(rtp.marker) and not back,
    )


def difference(a: int, b: int, bits: int) -> int:
    """a - b for two `bits`-wide counters (sequence numbers, timestamps, NTP times) less
    than half their span apart, across a wrap: difference(2, 65534, 16) == 4."""
    span = 1 << bits
    delta = (a - b) % span
    return delta - span if delta >= span // 2 else delta


def unwrap(value: int, reference: int, bits: int) -> int:
    """Extend a `bits`-wide counter to the integer nearest to `reference` (an extended value).

    unwrap(2, 65534, 16) == 65538: sequence number 2 just after the wrap.
    """
    return reference + difference(value, reference, bits)


class Packetizer:
    """Turns Opus packets into RTP datagrams of one stream (RFC 3550 section 5.1).

    Sequence number and timestamp start at random values, as RFC 3550 asks, unless given.
    With `redundancy`, each packet also carries that many packets before it (RFC 2198);
    with `red`, packets are RFC 2198's even when they carry no copy, so that `depth` can
    change as the stream goes on (default: when there is redundancy).
    """

    def __init__(
        self,
        payload_type: int = DEFAULT_PAYLOAD_TYPE,
        ssrc: int | None = None,
        seq: int | None = None,
        timestamp: int | None = None,
        redundancy: int = 0,
        red: bool | None = None,
    ) -> None:
        self.payload_type = payload_type
        red = bool(redundancy) if red is None else red
        self._red = RedEncoder(payload_type, redundancy) if red else None
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.seq = secrets.randbits(16) if seq is None else seq
        self.timestamp = secrets.randbits(32) if timestamp is None else timestamp
        self._first = True

    @property
    def depth(self) -> int:
        """Copies of earlier packets in each packet."""
        return self._red.depth if self._red is not None else 0

    def protect(self, copies: int, reach: int) -> None:
        """Carry `copies` copies of earlier packets, the oldest `reach` packets back."""
        assert self._red is not None, "a stream without RFC 2198 cannot carry copies"
        self._red.protect(copies, reach)

    def packetize(self, payload: bytes, samples: int) -> bytes:
        """One RTP datagram for `payload`, which lasts `samples` samples at 48 kHz."""
        if self._red is not None:
            payload = self._red.encode(payload, self.timestamp)
        packet = RtpPacket(
            payload_type=self.payload_type if self._red is None else RED_PAYLOAD_TYPE,
            # The marker flags the first packet of a talkspurt (RFC 3551 section 4.1).
            marker=int(self._first),
            sequence_number=self.seq,
            timestamp=self.timestamp,
            ssrc=self.ssrc,
            payload=payload,
        )
        self._first = False
        self.seq = (self.seq + 1) & 0xFFFF
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        return packet.serialize()
