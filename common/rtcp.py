"""RTCP on airmic's UDP streams (RFC 3550 section 6), multiplexed on the media port
(RFC 5761): what each side tells the other.

sender ─► receiver, about once a second: a sender report (SR: the wall-clock and RTP times
    of the same instant, packets and bytes sent) with an SDES naming the sender, and in an
    APP packet ("AIRM", subtype 1) how far the receiver's wall clock is ahead of its own;
    a BYE when it stops, so the stream ends at once instead of after a silence.
receiver ─► sender, in answer to each SR: a receiver report (RR: loss, interarrival jitter,
    the last SR's time and how long ago it came, for the round trip) and airmic's view of
    the stream (APP subtype 0: its buffer delay, repairs, gaps at the mic, the end-to-end
    latency, and its wall clock as it sent this).

The clocks' offset is NTP's (RFC 5905 section 8), from the four times of one exchange: the
SR sent (T1, the sender's clock), received (T2 = T3 - DLSR) and answered (T3, the
receiver's), and the answer received (T4). With it, the receiver places each packet's
capture on its own clock, which gives the end-to-end latency: capture to the mic.

Packets are aiortc's RTCP classes; APP, which aiortc skips, is packed here. Sans-I/O:
every time is given. Encrypted streams carry these as SRTCP (common/srtp.py).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

from aiortc.rtp import (
    RtcpByePacket,
    RtcpPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    is_rtcp,
    pack_rtcp_packet,
)

from airmic.common.rtp import Drop, DroppedPacket, difference

__all__ = ["is_rtcp"]

RATE = 48_000  # the RTP clock of Opus (RFC 7587)
INTERVAL = 1.0
"""Seconds between two sender reports: a point-to-point stream of 64 kbit/s and more can
afford it (RFC 3550 section 6.2 allows 5 % of the session's bandwidth; this is under 1 %),
and the sender learns within seconds that nobody listens."""
APP = 204
APP_NAME = b"AIRM"
VIEW, OFFSET = 0, 1  # APP subtypes: the receiver's view, the sender's clock offset
SDES_CNAME, SDES_NAME = 1, 2
NTP_EPOCH = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)


def ntp(wall: float) -> int:
    """A Unix time as a 64-bit NTP timestamp."""
    return int((wall + NTP_EPOCH) * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF


def middle(ntp_time: int) -> int:
    """The middle 32 bits of an NTP timestamp, as RR's LSR carries them (1/65536 s)."""
    return (ntp_time >> 16) & 0xFFFF_FFFF


def seconds(ntp_time: int) -> float:
    """A 64-bit NTP timestamp as a Unix time."""
    return ntp_time / (1 << 32) - NTP_EPOCH


def short_diff(a: int, b: int) -> float:
    """a - b in seconds, for two middle-32-bit NTP times less than 9 hours apart."""
    return difference(a, b, 32) / 65536


@dataclass(frozen=True)
class View:
    """The receiver's view of one stream, beyond what an RR says (its APP packet)."""

    delay_ms: float  # buffered ahead of the output, now
    recovered: int  # lost packets rebuilt from FEC
    repaired: int  # lost packets replaced by a redundant copy
    concealed: int  # lost packets concealed (heard as a smear)
    gaps: int  # gaps at the outputs (the mic): heard as holes
    gap_ms: float
    end_to_end_ms: float | None = None  # capture to the mic, once the clocks' offset is known
    sent: int = 0  # the receiver's wall clock as it sent this (middle 32 bits of NTP)
    burst: float = 0.0  # packets lost in a row, on average, since the last report

    _FORMAT = struct.Struct("!IIIIIffIf")  # a whole number of 32-bit words, as RTCP needs

    def pack(self) -> bytes:
        delay = min(0xFFFF_FFFF, max(0, round(self.delay_ms * 10)))
        values = self.recovered, self.repaired, self.concealed, self.gaps
        latency = math.nan if self.end_to_end_ms is None else self.end_to_end_ms
        counts = (v & 0xFFFF_FFFF for v in values)
        return self._FORMAT.pack(delay, *counts, self.gap_ms, latency, self.sent, self.burst)

    @classmethod
    def unpack(cls, data: bytes) -> View:
        delay, *counts, gap_ms, latency, sent, burst = cls._FORMAT.unpack_from(data)
        recovered, repaired, concealed, gaps = counts
        latency = None if math.isnan(latency) else latency
        return cls(delay / 10, recovered, repaired, concealed, gaps, gap_ms, latency, sent, burst)


@dataclass
class Report:
    """What one compound RTCP datagram said."""

    ssrc: int | None = None  # of whoever sent it
    sender: RtcpSenderInfo | None = None  # an SR's
    blocks: list[RtcpReceiverInfo] = field(default_factory=list)  # reception report blocks
    name: str | None = None  # SDES NAME, else CNAME
    bye: list[int] = field(default_factory=list)  # sources that left
    view: View | None = None
    offset: float | None = None  # the receiver's wall clock less the sender's (seconds)


def parse(data: bytes) -> Report:
    """One compound RTCP datagram. Raises DroppedPacket."""
    try:
        packets = RtcpPacket.parse(data)
        apps = _apps(data)
        view = View.unpack(apps[VIEW]) if VIEW in apps else None
        offset = struct.unpack_from("!d", apps[OFFSET])[0] if OFFSET in apps else None
    except (ValueError, IndexError, struct.error) as exc:
        raise DroppedPacket(Drop.RTCP, f"malformed RTCP: {exc}") from None
    if offset is not None and not math.isfinite(offset):
        offset = None
    report = Report(view=view, offset=offset)
    for packet in packets:
        if isinstance(packet, RtcpSrPacket):
            report.ssrc, report.sender = packet.ssrc, packet.sender_info
            report.blocks += packet.reports
        elif isinstance(packet, RtcpRrPacket):
            report.ssrc = packet.ssrc
            report.blocks += packet.reports
        elif isinstance(packet, RtcpSdesPacket):
            for chunk in packet.chunks:
                items = dict(chunk.items)
                name = items.get(SDES_NAME) or items.get(SDES_CNAME)
                if name:
                    report.name = name.decode("utf-8", "replace")[:64]
        elif isinstance(packet, RtcpByePacket):
            report.bye += packet.sources
    return report


def _apps(data: bytes) -> dict[int, bytes]:
    """airmic's APP packets in a compound, by subtype (aiortc's parser skips APP)."""
    apps = {}
    pos = 0
    while pos + 4 <= len(data):
        kind, words = data[pos + 1], struct.unpack_from("!H", data, pos + 2)[0]
        body = data[pos + 4 : pos + 4 + 4 * words]
        if kind == APP and body[4:8] == APP_NAME:
            apps[data[pos] & 0x1F] = body[8:]
        pos += 4 + 4 * words
    return apps


def _app(ssrc: int, subtype: int, data: bytes) -> bytes:
    return pack_rtcp_packet(APP, subtype, ssrc.to_bytes(4, "big") + APP_NAME + data)


def sender_report(
    ssrc: int,
    wall: float,
    timestamp: int,
    packets: int,
    octets: int,
    name: str,
    offset: float | None = None,
) -> bytes:
    """An SR (`timestamp` is the RTP time of the instant `wall`), the sender's name, and
    the clocks' offset once it is known."""
    info = RtcpSenderInfo(ntp(wall), timestamp, packets & 0xFFFF_FFFF, octets & 0xFFFF_FFFF)
    report = bytes(RtcpSrPacket(ssrc, info)) + _sdes(ssrc, name)
    if offset is not None:
        report += _app(ssrc, OFFSET, struct.pack("!d", offset))
    return report


def goodbye(ssrc: int, name: str) -> bytes:
    """The sender stops: an empty RR (a compound starts with a report), SDES, BYE."""
    return bytes(RtcpRrPacket(ssrc)) + _sdes(ssrc, name) + bytes(RtcpByePacket([ssrc]))


def receiver_report(ssrc: int, block: RtcpReceiverInfo, view: View) -> bytes:
    """An RR about one stream, with airmic's view of it."""
    return bytes(RtcpRrPacket(ssrc, [block])) + _app(ssrc, VIEW, view.pack())


def _sdes(ssrc: int, name: str) -> bytes:
    value = name.encode()[:255]
    return bytes(RtcpSdesPacket([RtcpSourceInfo(ssrc, [(SDES_CNAME, value)])]))


class Reception:
    """RFC 3550's reception statistics of one stream (appendix A.3 and A.8), fed on the
    network side with each packet's arrival time. (aiortc's StreamStatistics reads the wall
    clock itself at each call; here the arrival is the kernel's stamp, and time is given.)"""

    def __init__(self) -> None:
        self.received = 0
        self._base: int | None = None  # the first sequence number, extended
        self._highest = 0  # extended
        self._jitter = 0.0  # in RTP timestamp units
        self._transit: float | None = None
        self._expected_prior = self._received_prior = 0
        self.last_sr: int = 0  # the middle 32 bits of the last SR's NTP time
        self.last_sr_at: float | None = None  # when it came
        self.burst = 0.0  # the mean run of lost packets in the last block's interval
        self._runs = self._run_lost = 0  # runs of lost packets since the last block, and
        # the packets in them (a hole in the sequence as packets arrive)

    def packet(self, seq: int, timestamp: int, now: float) -> None:
        if self._base is None:
            self._base = self._highest = seq
        else:
            delta = (seq - self._highest) & 0xFFFF
            if delta < 0x8000:  # newer (a small step back is a reordered packet)
                self._highest += delta
                if delta > 1:
                    self._runs += 1
                    self._run_lost += delta - 1
        self.received += 1
        transit = now * RATE - timestamp
        if self._transit is not None:
            change = abs(transit - self._transit)
            if change < RATE:  # a timestamp jump (a restart) is not jitter
                self._jitter += (change - self._jitter) / 16
        self._transit = transit

    def sender_report(self, info: RtcpSenderInfo, now: float) -> None:
        self.last_sr, self.last_sr_at = middle(info.ntp_timestamp), now

    def block(self, ssrc: int, now: float) -> RtcpReceiverInfo:
        """The report block about the stream `ssrc` as of now (the interval since the
        last block for the fraction lost)."""
        expected = 0 if self._base is None else self._highest - self._base + 1
        lost = expected - self.received
        interval = expected - self._expected_prior
        interval_lost = interval - (self.received - self._received_prior)
        self._expected_prior, self._received_prior = expected, self.received
        self.burst = self._run_lost / self._runs if self._runs else 0.0  # for the APP
        self._runs = self._run_lost = 0
        fraction = (interval_lost << 8) // interval if interval > 0 and interval_lost > 0 else 0
        delay = 0 if self.last_sr_at is None else round((now - self.last_sr_at) * 65536)
        return RtcpReceiverInfo(
            ssrc=ssrc,
            fraction_lost=min(fraction, 255),
            packets_lost=max(-(1 << 23), min(lost, (1 << 23) - 1)),
            highest_sequence=self._highest & 0xFFFF_FFFF,
            jitter=round(self._jitter),
            lsr=self.last_sr,
            dlsr=delay & 0xFFFF_FFFF,
        )
