"""The sender's UDP socket: sends datagrams to one receiver, never blocks, never dies of an
ICMP error (the receiver may simply not be up yet); and the RTP link built on it.

A link takes Opus packets (`send(payload, samples)`) to a receiver: `RtpLink` here, or
`WhipLink` (sender/webrtc.py) over WebRTC."""

from __future__ import annotations

import asyncio
import logging
import socket

from airmic.common.errors import NetworkError
from airmic.common.handshake import is_handshake
from airmic.common.log import OnceLogger
from airmic.common.rtp import Packetizer
from airmic.sender.secure import SecureChannel

log = logging.getLogger(__name__)

Address = tuple[str, int]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.problems = OnceLogger(log)
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)  # handshake answers

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if is_handshake(data) and not self.inbox.full():  # nothing else is expected back
            self.inbox.put_nowait(data)

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

    def __init__(
        self,
        transport: UdpTransport,
        packetizer: Packetizer,
        description: str,
        channel: SecureChannel | None,
    ) -> None:
        self._transport = transport
        self._packetizer = packetizer
        self._channel = channel
        self.description = description

    @classmethod
    async def open(
        cls, to: Address, payload_type: int, redundancy: int, secure: bool = True
    ) -> RtpLink:
        """With `secure`, after a handshake with the receiver: SRTP to a paired receiver."""
        packetizer = Packetizer(payload_type, redundancy=redundancy)
        transport = await UdpTransport.open(*to)
        try:
            channel = await SecureChannel.open(transport, f"{to[0]}:{to[1]}") if secure else None
        except BaseException:
            transport.close()
            raise
        kind = f"SRTP to {channel.peer.name} at" if channel and channel.peer else "plain RTP to"
        description = f"{kind} {to[0]}:{to[1]} ({redundancy} redundant, SSRC {packetizer.ssrc:08x})"
        return cls(transport, packetizer, description, channel)

    @property
    def sent_bytes(self) -> int:
        return self._transport.sent_bytes

    def send(self, payload: bytes, samples: int) -> None:
        rtp = self._packetizer.packetize(payload, samples)
        self._transport.send(self._channel.protect(rtp) if self._channel else rtp)

    def status(self) -> str:
        ignored = self._channel.ignored if self._channel else 0
        return (
            f"{ignored} handshake datagrams ignored (not signed for this sender)" if ignored else ""
        )

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            if self._channel.ignored:
                log.warning("%s", self.status())
        self._transport.close()
