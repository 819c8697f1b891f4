"""The sender's UDP socket: sends datagrams to one receiver, never blocks, never dies of an
ICMP error (the receiver may simply not be up yet)."""

from __future__ import annotations

import asyncio
import logging
import socket

from airmic.common.errors import NetworkError
from airmic.common.log import OnceLogger

log = logging.getLogger(__name__)


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
