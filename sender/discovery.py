"""Finding receivers on the network by DNS-SD (`_airmic._udp.local.`), with python-zeroconf;
and choosing one: by name, the one paired, or by asking."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace

from zeroconf import DNSQuestionType, IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo

from airmic.common.errors import NetworkError, UsageError
from airmic.common.mdns import SERVICE, open_mdns
from airmic.common.peers import Peers

log = logging.getLogger(__name__)

LISTEN = 2.0
"""Seconds spent listening for everyone's answers (--discover, pair)."""

PATIENCE = 10.0
"""Seconds at most spent waiting for the paired receiver: it is used as soon as it answers."""

ASK = 1.5
"""Seconds each receiver has to answer for its details, once its name is heard."""


@dataclass(frozen=True)
class Found:
    name: str
    address: str
    port: int  # UDP
    web: str | None  # the page's base URL, where pairing goes
    fingerprint: str  # of its identity key
    version: str
    instance: str  # its DNS-SD instance name, asked for directly next time


async def discover(
    interface: str | None,
    seconds: float = LISTEN,
    enough: Callable[[list[Found]], bool] | None = None,
    known: Peers | None = None,
) -> list[Found]:
    """The receivers that answer within `seconds` (sooner once `enough(found)` holds), with
    distinct names. mDNS only on `interface` (an address), or on every interface with None.
    `known` receivers are also asked directly, where they were last seen: a multicast
    answer gets lost now and then on Wi-Fi."""
    zeroconf = open_mdns(interface)
    heard: set[tuple[str, str | None]] = set()
    found: dict[str, Found] = {}
    done = asyncio.Event()
    asking: set[asyncio.Task[None]] = set()

    async def resolve(name: str, address: str | None = None) -> None:
        info = AsyncServiceInfo(SERVICE, name)
        # To an address, a unicast answer; else a multicast one (zeroconf would ask its
        # first question for a unicast answer, which on a host where a receiver also binds
        # port 5353 may reach the receiver's socket instead: "no receiver found")
        question = DNSQuestionType.QU if address else DNSQuestionType.QM
        with contextlib.suppress(OSError):
            if await info.async_request(zeroconf.zeroconf, ASK * 1000, question, address):
                receiver = _parse(info)
                if receiver is not None:
                    found[name] = receiver
                    if enough is not None and enough(list(found.values())):
                        done.set()

    def ask(name: str, address: str | None = None) -> None:
        if (name, address) not in heard:
            heard.add((name, address))
            task = asyncio.ensure_future(resolve(name, address))
            asking.add(task)
            task.add_done_callback(asking.discard)

    def changed(name: str, state_change: ServiceStateChange, **_: object) -> None:
        if state_change is not ServiceStateChange.Removed:
            ask(name)

    browser = AsyncServiceBrowser(zeroconf.zeroconf, SERVICE, handlers=[changed],
                                  question_type=DNSQuestionType.QM)  # fmt: skip
    for peer in known.all() if known else []:
        if peer.seen:
            ask(peer.seen[0], peer.seen[1])
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), seconds)
        if asking and not done.is_set():  # names heard late: their details are on the way
            await asyncio.wait(asking, timeout=ASK)
    finally:
        for task in asking:
            task.cancel()
        await browser.async_cancel()
        await zeroconf.async_close()
    return distinct(sorted(found.values(), key=lambda f: f.name.lower()))


def _parse(info: AsyncServiceInfo) -> Found | None:
    text = {k.decode(): (v or b"").decode(errors="replace") for k, v in info.properties.items()}
    addresses = info.parsed_addresses(IPVersion.V4Only)
    if not addresses or not info.port:
        return None
    instance = info.name.removesuffix(f".{SERVICE}")
    return Found(
        name=text.get("name") or instance,
        address=addresses[0],
        port=info.port,
        web=text.get("web"),
        fingerprint=text.get("fp", ""),
        version=text.get("v", "?"),
        instance=info.name,
    )


def distinct(found: list[Found]) -> list[Found]:
    """Receivers with one name (one per host, on two hosts of one name) are told apart by
    their address: "vm@192.168.1.20:5004"."""
    unique: dict[tuple[str, int, str], Found] = {}
    for f in found:  # one receiver heard under two instance names (renamed): once
        unique.setdefault((f.address, f.port, f.fingerprint), f)
    names = [f.name.lower() for f in unique.values()]
    return [
        f if names.count(f.name.lower()) == 1 else replace(f, name=f"{f.name}@{f.address}:{f.port}")
        for f in unique.values()
    ]


def paired_with(found: Found, receivers: Peers) -> bool:
    return any(peer.fingerprint == found.fingerprint for peer in receivers.all())


def paired_found(receivers: Peers) -> Callable[[list[Found]], bool]:
    """discover()'s `enough`: a receiver paired here has answered."""
    return lambda found: any(paired_with(f, receivers) for f in found)


async def choose(found: list[Found], receivers: Peers, name: str | None) -> Found:
    """The receiver to use: the one named; else the only paired one; else asked (on a
    terminal). Remembers where a paired one was seen. Raises UsageError or NetworkError."""
    chosen = await _choose(found, receivers, name)
    peer = next((p for p in receivers.all() if p.fingerprint == chosen.fingerprint), None)
    if peer is not None:
        receivers.saw(peer.key, chosen.name, (chosen.instance, chosen.address, chosen.port))
    return chosen


async def _choose(found: list[Found], receivers: Peers, name: str | None) -> Found:
    paired = [f for f in found if paired_with(f, receivers)]
    if name is not None:
        named = [f for f in found if f.name.lower() == name.lower()]
        if not named:
            raise UsageError(f"no receiver named {name!r} (found: {names(found)})")
        if len(named) > 1:
            raise UsageError(
                f"{len(named)} receivers are named {name!r} ({listing(named)}): "
                "give the address instead"
            )
        return named[0]
    if len(paired) == 1:
        return paired[0]
    known = receivers.all()
    if known and not paired:
        missing = ", ".join(repr(peer.name) for peer in known)
        if not found:
            raise NetworkError(
                f"the paired receiver {missing} was not found on the network (is "
                "airmic-receive running, on this network? give its address with --to)"
            )
        log.warning("the paired receiver %s was not found on the network", missing)
    if not found:
        raise NetworkError(
            "no receiver found on the network (is airmic-receive running, on this network? "
            "give its address with --to)"
        )
    candidates = paired or found
    if len(candidates) == 1 and not paired:
        raise UsageError(
            f"found {candidates[0].name!r}, not paired yet: run airmic-receive pair there, "
            "then airmic-send pair CODE here"
        )
    if not sys.stdin.isatty():
        raise UsageError(f"several receivers: choose one with --to NAME ({listing(candidates)})")
    for n, f in enumerate(candidates, 1):
        state = "paired" if f in paired else "not paired"
        print(f"  {n}. {f.name} ({f.address}:{f.port}, {state})", file=sys.stderr)
    answer = (await prompt(f"which receiver? 1-{len(candidates)}: ")).strip()
    if not answer.isdigit() or not 1 <= int(answer) <= len(candidates):
        raise UsageError("no receiver chosen")
    return candidates[int(answer) - 1]


async def prompt(question: str) -> str:
    """A line typed on the terminal, read without blocking the event loop: Ctrl-C (which
    cancels the main task) ends the wait at once."""
    loop = asyncio.get_running_loop()
    print(question, end="", file=sys.stderr, flush=True)
    line: asyncio.Future[str] = loop.create_future()

    def readable() -> None:
        if not line.done():
            line.set_result(sys.stdin.readline())

    loop.add_reader(sys.stdin.fileno(), readable)
    try:
        answer = await line
    finally:
        loop.remove_reader(sys.stdin.fileno())
    if not answer:  # end of input (Ctrl-D)
        raise UsageError("no receiver chosen")
    return answer


def names(found: list[Found]) -> str:
    return ", ".join(f.name for f in found) or "none"


def listing(found: list[Found]) -> str:
    return ", ".join(f"{f.name} at {f.address}:{f.port}" for f in found)
