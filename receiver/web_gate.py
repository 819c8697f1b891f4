"""The web server's door: bounded connections, so that a device on the network cannot take
the files, memory or core the receiver needs.

- TLS must be done within TLS_TIMEOUT (asyncio's default is 60 s);
- a connection must start a request within FIRST_BYTE seconds, and one left idle between
  requests is closed after KEEPALIVE;
- at most PER_ADDRESS connections from one address and TOTAL in all (counted once TLS is
  done: before, the handshake timeout bounds them);
- the file limit is raised to what the system allows, and the accept loop's errors (out of
  files) are logged once each, with a count, instead of a traceback each time.

aiohttp has no connection caps or first-byte timeout of its own: its request handler is
wrapped here, as asyncio sees it (a Protocol), rather than patched.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from airmic.common.log import OnceLogger

log = logging.getLogger(__name__)

TLS_TIMEOUT = 10.0
FIRST_BYTE = 10.0
KEEPALIVE = 15.0
PER_ADDRESS = 32
TOTAL = 512
FILES = 65_536
"""The file limit asked for at start, if the system allows (a stream takes a few)."""


def raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FILES if hard == resource.RLIM_INFINITY else min(FILES, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        log.debug("file limit raised from %d to %d", soft, wanted)


def quiet_loop_errors(loop: asyncio.AbstractEventLoop) -> OnceLogger:
    """The loop's unhandled errors (an accept that failed, out of files) logged once per
    kind, with a count: a flood must not write a traceback for each."""
    errors = OnceLogger(logging.getLogger("airmic.receiver"))

    def handler(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        kind = f"{context.get('message', '')}: {type(exc).__name__}" if exc else context["message"]
        errors.report(kind, "%s (%s)", context.get("message"), exc)

    loop.set_exception_handler(handler)
    return errors


class Gate:
    """Makes the protocol for each connection the server accepts; counts them by address."""

    def __init__(self, handler: Callable[[], asyncio.Protocol]) -> None:
        self.handler = handler
        self.by_address: Counter[str] = Counter()
        self.refused = OnceLogger(log)

    def __call__(self) -> asyncio.Protocol:
        return _Admitted(self)

    def admit(self, address: str) -> bool:
        if sum(self.by_address.values()) >= TOTAL:
            self.refused.report("total", "web: more than %d connections: refused", TOTAL)
        elif self.by_address[address] >= PER_ADDRESS:
            self.refused.report(
                "address", "web: more than %d connections from %s: refused", PER_ADDRESS, address
            )
        else:
            self.by_address[address] += 1
            return True
        return False

    def left(self, address: str) -> None:
        self.by_address[address] -= 1
        if not self.by_address[address]:
            del self.by_address[address]


class _Admitted(asyncio.Protocol):
    """aiohttp's handler behind the gate: it sees the connection only if admitted."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.handler: asyncio.Protocol | None = None
        self.address = ""
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, base)  # a stream server's: TCP, or TLS over it
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else ""
        if not self.gate.admit(self.address):
            transport.abort()
            return
        self.handler = self.gate.handler()
        self.handler.connection_made(transport)
        silent = transport.abort  # nothing asked: the connection goes
        self.timer = asyncio.get_running_loop().call_later(FIRST_BYTE, silent)

    def data_received(self, data: bytes) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.handler is not None:
            self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received() if self.handler is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.handler is not None:
            self.gate.left(self.address)
            self.handler.connection_lost(exc)
            self.handler = None

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()


class GatedSite(web.TCPSite):
    """aiohttp's TCP site, with the gate and the TLS timeout."""

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self.gate = Gate(server)
        self._server = await asyncio.get_running_loop().create_server(
            self.gate,
            self._host,
            self._port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=TLS_TIMEOUT if self._ssl_context else None,
            backlog=self._backlog,
        )
