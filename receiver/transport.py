"""The receiver's UDP socket, read by a thread of its own.

The event loop also runs the web server, WebRTC, mDNS and the status line; a stall there
(a slow handshake, a garbage collection) must not hold a packet back, or every stream
hears it as network jitter. The thread waits in `poll` (the GIL is released there)
and hands each datagram to `handler(data, addr, now)`, what the handler returns is sent
back; once it has read every datagram that came, it says so (`drained`: the receiver's
workers get what it queued for them in one write). `now` is when the datagram reached
the host: on Linux the kernel's stamp of its arrival (SO_TIMESTAMPNS), so that this
process being slow to read it (a busy core, the GIL) is not taken for the network's
jitter; on the monotonic clock that `loop.time()` also reads.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable

from airmic.common.errors import NetworkError
from airmic.common.log import OnceLogger

log = logging.getLogger(__name__)

RECEIVE_BUFFER = 1 << 20
"""Kernel buffer for incoming datagrams: a second of bursts at any sane bitrate."""
MAX_DATAGRAM = 65_535
POLL = 0.5
"""Seconds between two looks at whether the listener was closed."""

SO_TIMESTAMPNS = 35
"""Linux's (asm-generic/socket.h; Python's socket module does not name it): each datagram
comes with the kernel's CLOCK_REALTIME stamp of its arrival, a struct timespec."""
STAMPED = sys.platform == "linux"

Handler = Callable[[bytes, tuple[str, int], float], bytes | None]
"""Takes a datagram, its source and arrival time; returns what to answer, if anything."""


class UdpListener:
    """Delivers each datagram to `handler` on the listener's thread; `sendto` from any."""

    def __init__(
        self, sock: socket.socket, handler: Handler, drained: Callable[[], None] | None = None
    ) -> None:
        self._sock = sock
        self._handler = handler
        self._drained = drained or (lambda: None)
        self._closed = False
        self._failures = OnceLogger(log, logging.ERROR)
        sock.setblocking(False)  # it waits in poll: a burst's end is seen
        self._thread = threading.Thread(target=self._run, name="udp", daemon=True)
        self._thread.start()

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._sock.sendto(data, addr)
        except OSError as exc:  # the answer is lost; the sender asks again
            log.debug("cannot answer %s:%d: %s", *addr, exc)

    def close(self) -> None:
        self._closed = True
        self._thread.join()
        self._sock.close()

    def _run(self) -> None:
        room = socket.CMSG_SPACE(16)
        ready = select.poll()  # not select(): no limit on the descriptor's number
        ready.register(self._sock, select.POLLIN)
        while not self._closed:
            try:
                data, ancillary, _, addr = self._sock.recvmsg(MAX_DATAGRAM, room)
            except BlockingIOError:  # all read: say so, then wait for more
                self._drained()
                ready.poll(POLL * 1000)
                continue
            except OSError:  # an ICMP error for an answer we sent: nothing to do
                continue
            try:
                reply = self._handler(data, addr[:2], arrival(ancillary))
            except Exception as exc:  # a bug must not stop every stream: log it, read on
                self._failures.report(
                    type(exc).__name__, "a datagram from %s:%d: %r", *addr[:2], exc
                )
                continue
            if reply is not None:
                self.sendto(reply, addr)


def arrival(ancillary: list[tuple[int, int, bytes]]) -> float:
    """When a datagram reached the host, on the monotonic clock: the kernel's stamp, moved
    by the offset between the two clocks now (a stamp from a clock step is not trusted
    beyond a second); without one, now."""
    now = time.monotonic()
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            stamp = seconds + nanoseconds * 1e-9 - (time.time() - now)
            return min(now, max(now - 1.0, stamp))
    return now


def listen(
    host: str, port: int, handler: Handler, drained: Callable[[], None] | None = None
) -> UdpListener:
    """Bind `host:port` and deliver datagrams to `handler(data, addr, now)`; `drained()`
    each time every datagram that had come is handled (a burst's end)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise NetworkError(f"cannot listen on {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    if STAMPED:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
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
    return UdpListener(sock, handler, drained)
