"""The sender's UDP socket: sends datagrams to one receiver, never blocks, never dies of an
ICMP error (the receiver may simply not be up yet); and the RTP link built on it.

A link takes Opus packets (`send(payload, samples)`) to a receiver: `RtpLink` here, or
`WhipLink` (sender/webrtc.py) over WebRTC. The RTP link also sends RTCP on the same port
(common/rtcp.py): a sender report a second, a BYE at the end; the receiver's reports
come back on it (sender/feedback.py)."""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time

from rich.text import Text

from airmic.common import rtcp
from airmic.common.errors import NetworkError
from airmic.common.handshake import is_handshake
from airmic.common.log import OnceLogger
from airmic.common.rtp import DroppedPacket, Packetizer
from airmic.sender.feedback import Feedback
from airmic.sender.protection import Protection
from airmic.sender.secure import SecureChannel

log = logging.getLogger(__name__)

Address = tuple[str, int]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.problems = OnceLogger(log)
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)  # handshake answers
        # The receiver's reports, with their arrival on the wall and monotonic clocks: read
        # by the link at its next packet (the newest kept if it falls behind).
        self.reports: collections.deque[tuple[bytes, float, float]] = collections.deque(maxlen=16)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if is_handshake(data):
            if not self.inbox.full():
                self.inbox.put_nowait(data)
        elif rtcp.is_rtcp(data):
            self.reports.append((data, time.time(), time.monotonic()))

    def error_received(self, exc: Exception) -> None:
        # ECONNREFUSED after an ICMP port-unreachable: nobody listens there (yet).
        self.problems.report(type(exc).__name__, "sending to the receiver failed: %s", exc)


class UdpTransport:
    """A connected UDP socket to `host:port`."""

    def __init__(self, transport: asyncio.DatagramTransport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self.sent = 0
        self.sent_bytes = 0

    @classmethod
    async def open(cls, host: str, port: int) -> UdpTransport:
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                _Protocol, remote_addr=(host, port)
            )
        except socket.gaierror as exc:
            raise NetworkError(f"cannot resolve {host!r}: {exc.strerror}") from None
        except OSError as exc:
            raise NetworkError(f"cannot send to {host}:{port}: {exc.strerror or exc}") from None
        return cls(transport, protocol)

    @property
    def inbox(self) -> asyncio.Queue[bytes]:
        """The receiver's handshake datagrams (a connected socket takes only its own)."""
        return self._protocol.inbox

    @property
    def reports(self) -> collections.deque[tuple[bytes, float, float]]:
        """The receiver's RTCP (a connected socket takes only its own)."""
        return self._protocol.reports

    @property
    def errors(self) -> int:
        return sum(self._protocol.problems.counts.values())

    def send(self, datagram: bytes) -> None:
        self._transport.sendto(datagram)
        self.sent += 1
        self.sent_bytes += len(datagram)

    def close(self) -> None:
        self._transport.close()


class RtpLink:
    """airmic's own RTP over UDP: each Opus packet in one datagram, with RFC 2198 copies of
    the ones before; and RTCP both ways."""

    dropped = 0  # a datagram is always sent

    def __init__(
        self,
        transport: UdpTransport,
        packetizer: Packetizer,
        description: str,
        channel: SecureChannel | None,
        name: str,
        behind: float,
        protection: Protection,
    ) -> None:
        self._transport = transport
        self._packetizer = packetizer
        self._channel = channel
        self.description = description
        self.name = name  # in the SDES of its reports: the room of a plain stream
        self.behind = behind  # seconds the audio sent lags its capture (look-ahead, DSP)
        self.protection = protection  # copies and FEC, from the receiver's reports
        self.feedback = Feedback(packetizer.ssrc, time.monotonic(), plain=channel is None)
        self.unreadable = OnceLogger(log)  # reports that did not parse or authenticate
        self._packets = 0
        self._octets = 0  # of payload, as an SR counts them
        self._next_report = 0.0

    @classmethod
    async def open(
        cls,
        to: Address,
        payload_type: int,
        redundancy: int | None,
        secure: bool = True,
        name: str = "",
        behind: float = 0.0,
        expected_loss: int | None = None,
        bitrate: int = 64_000,
        cap: int | None = None,
        rate: float = 100.0,
    ) -> RtpLink:
        """With `secure`, after a handshake with the receiver: SRTP to a paired receiver.
        `behind`: how far the audio sent lags its capture (the encoder's look-ahead, the
        DSP's delay), for the capture times in its reports. `redundancy` and FEC's
        `expected_loss`, if None, follow the receiver's reports; the Opus `bitrate` gives
        way to copies under `cap` bit/s on the wire, at `rate` packets a second."""
        protection = Protection(
            redundancy, expected_loss, time.monotonic(), bitrate=bitrate, cap=cap, rate=rate
        )
        adaptive = redundancy is None
        depth = protection.level.copies if redundancy is None else redundancy
        assert depth is not None
        packetizer = Packetizer(payload_type, redundancy=depth, red=adaptive or depth > 0)
        transport = await UdpTransport.open(*to)
        try:
            channel = await SecureChannel.open(transport, f"{to[0]}:{to[1]}") if secure else None
        except BaseException:
            transport.close()
            raise
        kind = f"SRTP to {channel.peer.name} at" if channel and channel.peer else "plain RTP to"
        copying = "copies as the network needs" if adaptive else f"{depth} redundant"
        description = f"{kind} {to[0]}:{to[1]} ({copying}, SSRC {packetizer.ssrc:08x})"
        name = name or socket.gethostname()
        return cls(transport, packetizer, description, channel, name, behind, protection)

    @property
    def sent_bytes(self) -> int:
        return self._transport.sent_bytes

    def send(self, payload: bytes, samples: int) -> None:
        rtp = self._packetizer.packetize(payload, samples)
        self._transport.send(self._channel.protect(rtp) if self._channel else rtp)
        self._packets += 1
        self._octets += len(payload)
        now = time.monotonic()
        self._read_reports()
        self.feedback.check(now)
        if now >= self._next_report:
            self._next_report = now + rtcp.INTERVAL
            # The RTP time of the sample just sent, and when it was captured.
            report = rtcp.sender_report(
                self._packetizer.ssrc,
                time.time() - self.behind,
                self._packetizer.timestamp,
                self._packets,
                self._octets,
                self.name,
                self.feedback.offset,
            )
            self._send_rtcp(report)

    def _send_rtcp(self, report: bytes) -> None:
        self._transport.send(self._channel.protect_rtcp(report) if self._channel else report)

    def _read_reports(self) -> None:
        reports = self._transport.reports
        while reports:
            data, wall, now = reports.popleft()
            try:
                plain = self._channel.unprotect_rtcp(data) if self._channel else data
                heard = self.feedback.received(rtcp.parse(plain), wall, now)
            except DroppedPacket as exc:
                self.unreadable.report(exc.reason, "ignored a report: %s", exc)
                continue
            if heard is not None:
                burst = heard.view.burst if heard.view is not None else 0.0
                level = self.protection.report(heard.fraction, burst, now)
                if level is not None and level.copies is not None and level.reach is not None:
                    self._packetizer.protect(level.copies, level.reach)

    @property
    def expected_loss(self) -> int | None:
        """The loss FEC should be tuned for now, if the reports decide it."""
        return self.protection.level.expected_loss

    @property
    def bitrate(self) -> int | None:
        """The Opus bitrate that fits the copies under the cap, if one was set."""
        return self.protection.level.bitrate or None

    def status(self) -> Text:
        """The receiver's view, as last reported (rich's thread: reports are read by the
        stream's, at each packet)."""
        alarm = self.feedback.alarming
        line = Text(self.feedback.status(time.monotonic()), "bold red" if alarm else "dim")
        if self._ignored():
            line.append(f"\n{self._ignored()}", style="dim")
        return line

    def _ignored(self) -> str:
        ignored = self._channel.ignored if self._channel else 0
        return (
            f"{ignored} handshake datagrams ignored (not signed for this sender)" if ignored else ""
        )

    def summary(self) -> str:
        """What the receiver last said it heard."""
        self._read_reports()
        return self.feedback.summary(time.monotonic())

    async def close(self) -> None:
        # The receiver ends the stream now, not after its silence timeout.
        self._send_rtcp(rtcp.goodbye(self._packetizer.ssrc, self.name))
        if self._channel is not None:
            await self._channel.close()
            if self._channel.ignored:
                log.warning("%s", self._ignored())
        self._transport.close()
