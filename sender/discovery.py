"""Finding receivers on the network by DNS-SD (`_airmic._udp.local.`), with python-zeroconf;
and choosing one: by name, the one paired, or by asking."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass

from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo

from airmic.common.errors import NetworkError, UsageError
from airmic.common.mdns import SERVICE, open_mdns
from airmic.common.peers import Peers

log = logging.getLogger(__name__)

LISTEN = 1.5
"""Seconds spent listening for answers."""


@dataclass(frozen=True)
class Found:
    name: str
    address: str
    port: int  # UDP
    web: str | None  # the page's base URL, where pairing goes
    fingerprint: str  # of its identity key
    version: str


async def discover(interface: str | None, seconds: float = LISTEN) -> list[Found]:
    """The receivers that answer within `seconds`, by name. mDNS only on `interface` (an
    address), or on every interface with None."""
    zeroconf = open_mdns(interface)
    names: set[str] = set()

    def changed(name: str, state_change: ServiceStateChange, **_: object) -> None:
        if state_change is not ServiceStateChange.Removed:
            names.add(name)

    browser = AsyncServiceBrowser(zeroconf.zeroconf, SERVICE, handlers=[changed])
    try:
        await asyncio.sleep(seconds)
        infos = [AsyncServiceInfo(SERVICE, name) for name in sorted(names)]
        await asyncio.gather(*(info.async_request(zeroconf.zeroconf, 1000) for info in infos))
    finally:
        await browser.async_cancel()
        await zeroconf.async_close()
    found = []
    for info in infos:
        text = {k.decode(): (v or b"").decode(errors="replace") for k, v in info.properties.items()}
        addresses = info.parsed_addresses(IPVersion.V4Only)
        if not addresses or not info.port:
            continue
        found.append(
            Found(
                name=text.get("name") or info.name.removesuffix(f".{SERVICE}"),
                address=addresses[0],
                port=info.port,
                web=text.get("web"),
                fingerprint=text.get("fp", ""),
                version=text.get("v", "?"),
            )
        )
    return found


def paired_with(found: Found, receivers: Peers) -> bool:
    return any(peer.fingerprint == found.fingerprint for peer in receivers.all())


def choose(found: list[Found], receivers: Peers, name: str | None) -> Found:
    """The receiver to use: the one named; else the only paired one; else asked (on a
    terminal). Raises UsageError."""
    if not found:
        raise NetworkError(
            "no receiver found on the network (is airmic-receive running, on this network? "
            "give its address with --to)"
        )
    if name is not None:
        named = [f for f in found if f.name.lower() == name.lower()]
        if not named:
            raise UsageError(f"no receiver named {name!r} (found: {listing(found)})")
        return named[0]
    paired = [f for f in found if paired_with(f, receivers)]
    if len(paired) == 1:
        return paired[0]
    candidates = paired or found
    if len(candidates) == 1 and not paired:
        raise UsageError(
            f"found {candidates[0].name!r}, not paired yet: run airmic-receive pair there, "
            "then airmic-send pair CODE here"
        )
    if not sys.stdin.isatty():
        raise UsageError(f"several receivers: choose one with --to NAME ({listing(candidates)})")
    for n, f in enumerate(candidates, 1):
        print(f"  {n}. {f.name} ({f.address}:{f.port})", file=sys.stderr)
    answer = input(f"which receiver? 1-{len(candidates)}: ").strip()
    if not answer.isdigit() or not 1 <= int(answer) <= len(candidates):
        raise UsageError("no receiver chosen")
    return candidates[int(answer) - 1]


def listing(found: list[Found]) -> str:
    return ", ".join(f"{f.name} at {f.address}:{f.port}" for f in found)
