"""airmic-send pair [RECEIVER] CODE: pair this sender with a receiver, once, with the code
`airmic-receive pair` shows; airmic-send paired | unpair NAME, the receivers paired; and
airmic-send --discover, which lists the receivers found."""

from __future__ import annotations

import argparse
import json
import socket
import urllib.parse

import aiohttp
from rich.table import Table

from airmic.common.cli import DEFAULT_PORT, Parser, add_logging_options
from airmic.common.config import config_dir
from airmic.common.errors import NetworkError, UsageError
from airmic.common.identity import load_identity
from airmic.common.pairing import PairingError, SenderPairing, normalize_code
from airmic.common.peers import Peer
from airmic.common.status import OUT
from airmic.sender.discovery import Found, choose, discover, paired_with
from airmic.sender.secure import receivers


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="airmic-send pair",
        description="Pair with a receiver, once, with the code airmic-receive pair shows.",
        epilog="RECEIVER is a name found on the network (airmic-send --discover lists them), "
        "an address (HOST[:PORT]) or the receiver's link; with none, the one receiver found. "
        "The code is checked without being sent (SPAKE2): someone listening learns nothing.",
    )
    parser.add_argument(
        "words",
        nargs="+",
        metavar="[RECEIVER] CODE",
        help="which receiver (default: the one found), and the 6 digits airmic-receive pair shows",
    )
    parser.add_argument(
        "--name", default=socket.gethostname(), help="this sender's name on the receiver"
    )
    parser.add_argument(
        "--interface", metavar="ADDR", help="look for receivers (mDNS) on this interface only"
    )
    add_logging_options(parser)
    return parser


async def main(args: argparse.Namespace) -> int:
    receiver, code = split_words(args.words)
    web = await pairing_address(receiver, args.interface)
    peer = await pair(web, code, args.name)
    OUT.print(f"paired with {peer.name} (its key {peer.fingerprint[:23]}…)")
    return 0


def split_words(words: list[str]) -> tuple[str | None, str]:
    """[RECEIVER] CODE, the code as shown ('882 039', two words) or typed ('882039').
    Raises UsageError."""
    start, digits = len(words), 0
    while start > 0 and digits < 6 and words[start - 1].replace("-", "").isdigit():
        start -= 1
        digits += len(words[start].replace("-", ""))
    start = min(start, len(words) - 1)
    receiver, code = words[:start], " ".join(words[start:])
    if len(receiver) > 1:
        raise UsageError("airmic-send pair [RECEIVER] CODE: too many words")
    try:
        return (receiver[0] if receiver else None), normalize_code(code)
    except PairingError as exc:
        raise UsageError(str(exc)) from None


def build_peers_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="airmic-send", description="List the receivers paired with this sender, or forget one."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("paired", help="list the paired receivers")
    unpair = commands.add_parser("unpair", help="forget a receiver (pair again to stream to it)")
    unpair.add_argument("name", help="as `airmic-send paired` lists it")
    for command in commands.choices.values():
        add_logging_options(command)
    return parser


async def peers(args: argparse.Namespace) -> int:
    """airmic-send paired | unpair NAME."""
    if args.command == "unpair":
        gone = receivers().remove(args.name, "receiver")
        OUT.print(f"unpaired {gone.name}: airmic-send pair again to stream to it")
    elif receivers().all():
        OUT.print(receivers().table("receiver"))
    else:
        OUT.print("no paired receiver yet: airmic-receive pair shows a code for airmic-send pair")
    return 0


async def pairing_address(receiver: str | None, interface: str | None) -> str:
    """The receiver's web address, where pairing goes."""
    if receiver and receiver.startswith(("https://", "http://")):
        parts = urllib.parse.urlsplit(receiver)
        return f"{parts.scheme}://{parts.netloc}"
    if receiver and (receiver[0].isdigit() or receiver.startswith("[") or ":" in receiver):
        host, _, port = receiver.rpartition(":") if ":" in receiver else (receiver, "", "")
        return f"https://{host or receiver}:{port or DEFAULT_PORT}"
    found = await choose_for_pairing(await discover(interface), receiver)
    if not found.web:
        raise UsageError(f"{found.name} serves no web page (--web off): pairing goes through it")
    return found.web


async def choose_for_pairing(found: list[Found], name: str | None) -> Found:
    if name is None and len(found) == 1:
        return found[0]
    if name is None and found:
        names = ", ".join(f.name for f in found)
        raise UsageError(f"several receivers ({names}): airmic-send pair NAME CODE")
    return await choose(found, receivers(), name)


async def pair(web: str, code: str, name: str) -> Peer:
    """Run the exchange with the receiver at `web`; keep it as paired."""
    attempt = SenderPairing(code, load_identity(config_dir()), name)
    # The certificate is not checked (it is self-signed, and not yet trusted): the exchange
    # itself proves who is at the other end, through the code.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        reply = await _post(http, f"{web}/pair", attempt.start())
        finish = attempt.finish(reply)
        if not isinstance(reply.get("next"), str) or not reply["next"].startswith("/pair/"):
            raise PairingError("malformed pairing message (no next step)")
        paired = attempt.confirm(await _post(http, web + reply["next"], finish))
    return receivers().add(paired.name, paired.key)


async def _post(http: aiohttp.ClientSession, url: str, message: dict) -> dict:
    """The receiver's JSON answer. Raises NetworkError."""
    try:
        async with http.post(url, json=message, ssl=False) as response:
            text = await response.text()
            if response.status != 200:
                refused = "refused" if response.status == 403 else f"answered {response.status}"
                raise NetworkError(f"the receiver {refused}: {text.strip()}")
            body = json.loads(text)
    except aiohttp.ClientConnectorError as exc:
        raise NetworkError(f"cannot reach {url}: {exc.os_error.strerror or exc}") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise NetworkError(f"pairing with {url} failed: {exc or 'no answer'}") from None
    except ValueError:
        raise NetworkError(f"{url} is not an airmic receiver (its answer is not JSON)") from None
    if not isinstance(body, dict):
        raise NetworkError(f"{url} is not an airmic receiver")
    return body


async def list_receivers(interface: str | None) -> int:
    """airmic-send --discover."""
    found = await discover(interface)
    if not found:
        OUT.print("no receiver found (is airmic-receive running, on this network?)")
        return 1
    table = Table("receiver", "address", "paired", "page", box=None, pad_edge=False)
    known = receivers()
    for f in found:
        paired = "yes" if paired_with(f, known) else "no"
        table.add_row(f.name, f"{f.address}:{f.port}", paired, f.web or "-")
    OUT.print(table)
    return 0
