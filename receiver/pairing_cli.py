"""airmic-receive pair | paired | unpair NAME: who may stream to this receiver."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from airmic.common.cli import Parser, add_logging_options
from airmic.common.config import config_dir
from airmic.common.errors import UsageError
from airmic.common.pairing import FAILURES_PER_ADDRESS, WINDOW_SECONDS, new_code
from airmic.common.status import OUT
from airmic.receiver.pairing import PAGE_LINK, close_window, open_window, read_window, senders
from airmic.receiver.web import qr_code

POLL = 0.2


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="airmic-receive",
        description="Pair senders with this receiver, list them, or revoke one.",
        epilog="A sender pairs once, with a 6-digit code shown here; from then on its streams "
        "are accepted (and encrypted). Phones need no code: the QR code (of the page's link, "
        "with its token) is their pairing.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    pair = commands.add_parser(
        "pair",
        help="show a one-time code for airmic-send pair (the receiver must be running)",
    )
    pair.add_argument(
        "--minutes", type=float, default=WINDOW_SECONDS / 60, help="how long the code is valid"
    )
    commands.add_parser("paired", help="list the paired senders")
    unpair = commands.add_parser("unpair", help="revoke a sender, its running stream included")
    unpair.add_argument("name", help="as `paired` lists it")
    for command in commands.choices.values():
        add_logging_options(command)
    return parser


async def main(args: argparse.Namespace) -> int:
    folder = config_dir()
    if args.command == "paired":
        return paired(folder)
    if args.command == "unpair":
        gone = senders(folder).remove(args.name, "sender")
        OUT.print(f"unpaired {gone.name}: its streams are refused from now on")
        return 0
    return await pair(folder, args.minutes * 60)


def paired(folder: Path) -> int:
    peers = senders(folder).all()
    if not peers:
        OUT.print("no paired sender yet: airmic-receive pair shows a code for one")
        return 0
    OUT.print(senders(folder).table("sender"))
    return 0


async def pair(folder: Path, seconds: float) -> int:
    """Open a window, show its code, and wait for the running receiver's outcome."""
    code = new_code()
    open_window(folder, code, seconds)
    try:
        link = (folder / PAGE_LINK).read_text()
    except OSError:
        link = None  # no receiver running, or without its web page
    if link:
        OUT.print(qr_code(link), end="", highlight=False)
        OUT.print(f"phones: scan this, or open {link}\n", highlight=False)
    OUT.print(
        f"pairing code: [bold]{code[:3]} {code[3:]}[/bold]  (valid {seconds / 60:g} minutes, "
        f"{FAILURES_PER_ADDRESS} wrong codes per device)\n"
        f"laptops: airmic-send pair {code}\n"
        "(airmic-receive must be running: it takes the attempt)"
    )
    deadline = time.time() + seconds
    shown = 0
    try:
        while time.time() < deadline:
            window = read_window(folder)
            if window is None or window.get("code") != code:
                raise UsageError("the pairing window was replaced (another airmic-receive pair?)")
            attempted = int(window.get("attempted", 0))
            if attempted > shown:  # the receiver keeps the last few
                for source, result in (window.get("attempts") or [])[shown - attempted :]:
                    OUT.print(f"  from {source}: {result}", highlight=False)
                shown = attempted
            if "outcome" in window:
                OUT.print(window["outcome"])
                return 0 if str(window["outcome"]).startswith("paired") else 1
            await asyncio.sleep(POLL)
        OUT.print("no sender paired in time: the code is void")
        return 1
    finally:
        window = read_window(folder)
        if window is not None and window.get("code") == code:
            close_window(folder)
