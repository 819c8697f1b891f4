"""The receiver's UDP socket: hands each datagram to a callback with its arrival time."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable

from airmic.common.errors import NetworkError

RECEIVE_BUFFER = 1 << 20
"""Kernel buffer for incoming datagrams: a second of bursts at any sane bitrate."""

Handler = Callable[[bytes, tuple[str, int], float], None]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, handler: Handler, clock: Callable[[], float]) -> None:
        self._handler = handler
        self._clock = clock

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._handler(data, addr[:2], self._clock())

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors for datagrams we never sent: nothing to do


async def listen(host: str, port: int, handler: Handler) -> asyncio.DatagramTransport:
    """Bind `host:port` and deliver datagrams to `handler(data, addr, now)`."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise NetworkError(f"cannot listen on {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise NetworkError(
                f"UDP port {port} on {host} is in use (another airmic-receive?); "
                "choose another with --listen HOST:PORT"
            ) from None
        raise NetworkError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Protocol(handler, loop.time), sock=sock
    )
    return transport
