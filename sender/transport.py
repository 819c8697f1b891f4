"""The sender's UDP socket: sends datagrams to one receiver, never blocks, never dies of an
ICMP error (the receiver may simply not be up yet); and the RTP link built on it.

A link takes Opus packets (`send(payload, samples)`) to a receiver: `RtpLink` here, or
`WhipLink` (sender/webrtc.py) over WebRTC."""

from __future__ import annotations

import asyncio
import logging
import socket

from airmic.common.errors import NetworkError
from airmic.common.log import OnceLogger
from airmic.common.rtp import Packetizer

log = logging.getLogger(__name__)

Address = tuple[str, int]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.problems = OnceLogger(log)

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
    the ones before."""

    dropped = 0  # a datagram is always sent

    def __init__(self, transport: UdpTransport, packetizer: Packetizer, description: str) -> None:
        self._transport = transport
        self._packetizer = packetizer
        self.description = description

    @classmethod
    async def open(cls, to: Address, payload_type: int, redundancy: int) -> RtpLink:
        packetizer = Packetizer(payload_type, redundancy=redundancy)
        description = (
            f"RTP/UDP to {to[0]}:{to[1]} ({redundancy} redundant, SSRC {packetizer.ssrc:08x})"
        )
        return cls(await UdpTransport.open(*to), packetizer, description)

    @property
    def sent_bytes(self) -> int:
        return self._transport.sent_bytes

    def send(self, payload: bytes, samples: int) -> None:
        self._transport.send(self._packetizer.packetize(payload, samples))

    def status(self) -> str:
        return ""  # plain RTP hears nothing back

    async def close(self) -> None:
        self._transport.close()
