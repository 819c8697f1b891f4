"""Conventions both commands share: logging flags, option parsers, errors and exit codes.

Exit codes: 0 success (including a stop by Ctrl-C), 1 runtime error, 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import math
import re
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from airmic.common.errors import AirmicError

DEFAULT_PORT = 5004
"""The receiver's UDP port: the port RFC 3551 section 8 gives RTP."""

log = logging.getLogger("airmic")


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake told in one line and a pointer to --help, instead of the
    usage's ten lines before it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-v", "--verbose", action="count", default=0, help="more detail (-vv: debug)"
    )
    group.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def setup_logging(args: argparse.Namespace) -> None:
    # Imported here, not at the top: a command's --help must not wait for rich (or numpy).
    from rich.logging import RichHandler

    from airmic.common.status import CONSOLE

    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose > 1 else logging.INFO
    handler: logging.Handler
    if CONSOLE.is_terminal:  # through the console the live status line uses
        handler = RichHandler(
            console=CONSOLE,
            show_path=bool(args.verbose),
            show_time=bool(args.verbose),
            show_level=bool(args.verbose),
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
                if args.verbose
                else "%(message)s",
                datefmt="%H:%M:%S",
            )
        )
    logging.basicConfig(level=level, handlers=[handler])
    for noisy in ("aioice", "aiortc", "asyncio"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def parse_address(text: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """'HOST:PORT', 'HOST', ':PORT' or '[IPv6]:PORT' to (host, port)."""
    match = re.fullmatch(
        r"\[(?P<v6>[^\]]+)\](?::(?P<p6>\d+))?|(?P<host>[^:]*)(?::(?P<port>\d+))?", text
    )
    if not match:
        if text.count(":") > 1:  # a bare IPv6 address
            return text, DEFAULT_PORT
        raise argparse.ArgumentTypeError(f"not an address: {text!r} (expected HOST:PORT)")
    host = match["v6"] or match["host"] or default_host
    port = int(match["p6"] or match["port"] or DEFAULT_PORT)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (1-65535)")
    return host, port


def _bits(text: str) -> int:
    """'64000', '64k', '64kbit/s', '64 kbps', '1M' in bit/s."""
    pattern = r"\s*(\d+(?:\.\d+)?)\s*([km])?(?:bit/s|bps|b/s)?\s*"
    match = re.fullmatch(pattern, text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a bitrate: {text!r} (e.g. 64000 or 64k)")
    unit = {"k": 1000, "m": 1_000_000}.get((match[2] or "").lower(), 1)
    return round(float(match[1]) * unit)


def bitrate(text: str) -> int:
    """An Opus bitrate: '64000', '64k', '64kbit/s', '64 kbps'; 6 to 510 kbit/s."""
    value = _bits(text)
    if not 6000 <= value <= 510_000:
        raise argparse.ArgumentTypeError(f"Opus takes 6k to 510k bit/s (e.g. 64k), not {text!r}")
    return value


def bandwidth(text: str) -> int:
    """A cap on a stream's bits on the wire: at least room for 16 kbit/s of Opus and its
    headers."""
    value = _bits(text)
    if value < 64_000:
        raise argparse.ArgumentTypeError(f"a stream needs at least 64k bit/s, not {text!r}")
    return value


def auto_or(low: int, high: int) -> Callable[[str], int | None]:
    """A parser of 'auto' (None) or a whole number from `low` to `high`."""

    def parse(text: str) -> int | None:
        if text == "auto":
            return None
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"auto, or {low} to {high}, not {text!r}")
        return int(text)

    return parse


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < math.inf:  # nan too
        raise argparse.ArgumentTypeError(f"must be a number more than 0: {text!r}")
    return value


def number(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], float]:
    """An option's parser: a finite number from `low` to `high`."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not low <= value <= high:  # nan too
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}: {text!r}")
        return value

    return parse


def run(
    main: Callable[[argparse.Namespace], Coroutine[Any, Any, int]], args: argparse.Namespace
) -> int:
    """Run an async main; turn errors into one line and an exit code, and Ctrl-C into 0."""
    setup_logging(args)
    freeze()
    # The audio threads (a sound server's writer, a sound card's filler) wait for the
    # interpreter's lock whenever another thread runs Python; by default it changes hands
    # every 5 ms, a whole block, and the virtual mic's 10 ms queue ran dry now and then.
    sys.setswitchinterval(0.001)

    async def until_done() -> int:
        try:
            return await main(args)
        finally:  # the work is done (streams drained, files closed): only teardown is left
            ignore_interrupts()

    try:
        return asyncio.run(until_done())
    except KeyboardInterrupt:
        return 0
    except AirmicError as exc:
        log.error("error: %s", exc, exc_info=args.verbose > 0)
        return exc.exit_code
    finally:
        # The work is done (streams drained, files closed): only the interpreter's teardown
        # is left. A Ctrl-C there, as the receiver exits when idle, killed it with a
        # traceback (exit -2) for nothing.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def ignore_interrupts() -> None:
    """From now on a Ctrl-C does nothing: the command is on its way out. Done while the
    event loop still runs: a Ctrl-C as it closed went to its handler after its wake-up pipe
    was gone ("Exception ignored ... Bad file descriptor", with a traceback)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)  # puts back Python's default for SIGINT...
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ...which would raise KeyboardInterrupt


def freeze() -> None:
    """Everything imported so far (numpy, scipy, rich, aiortc: ~95k objects) lives until
    exit. Frozen, it is left out of the garbage collector's full passes, which otherwise
    scan it all and stall the threads for 25-50 ms here: several playout blocks, heard as
    gaps. Called again by a command once it has imported what it streams with (imports
    wait until a command knows it needs them, so that --help is instant)."""
    gc.freeze()


def stop_event() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, so the command can finish its work and exit 0."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, event.set)
    return event
