"""A private network for tests: a namespace joined to this host by a veth pair.

Browsers gather no ICE candidates on loopback alone, so the browser runs in the namespace
(a second "device" on a LAN of two addresses) and reaches the receiver on this host over
the veth pair. Nothing leaves the machine. Needs root (CI runs as root).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

_numbers = itertools.count(1)


@dataclass(frozen=True)
class Namespace:
    name: str
    host_ip: str  # this host's end of the pair
    ip: str  # the namespace's end
    interface: str  # the namespace's interface
    host_interface: str  # this host's

    def run(self, *args: str) -> list[str]:
        """A command line that runs `args` inside the namespace."""
        return ["ip", "netns", "exec", self.name, *args]

    def lose_udp(self, percent: int) -> None:
        """Drop `percent` % of the UDP datagrams from the namespace at random, on arrival at
        this host's end (a drop on the sender's side would fail its send, and Chromium would
        send again); the page's HTTPS is spared."""
        rules = (
            f"table netdev {self.table} {{ chain arrive {{ type filter hook ingress "
            f"device {self.host_interface} priority 0; "
            "ip protocol udp counter; "  # every datagram, then the dropped ones
            + (
                "ip protocol udp counter drop; }; }"
                if percent >= 100
                else f"ip protocol udp numgen random mod 100 < {percent} counter drop; }}; }}"
            )
        )
        subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True,
                       capture_output=True, timeout=10)  # fmt: skip

    def restore_udp(self) -> None:
        """Undo `lose_udp`: every datagram gets through again."""
        subprocess.run(["nft", "delete", "table", "netdev", self.table], check=True,
                       capture_output=True, timeout=10)  # fmt: skip

    def udp_lost(self) -> tuple[int, int]:
        """How many datagrams `lose_udp` dropped so far, and of how many."""
        listing = subprocess.run(["nft", "-j", "list", "table", "netdev", self.table],
                                 check=True, capture_output=True, timeout=10).stdout  # fmt: skip
        rules = [item["rule"] for item in json.loads(listing)["nftables"] if "rule" in item]
        counters = [e["counter"] for rule in rules for e in rule["expr"] if "counter" in e]
        sent, dropped = (counter["packets"] for counter in counters)
        return dropped, sent

    @property
    def table(self) -> str:
        return f"{self.name}_loss"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextmanager
def namespace() -> Iterator[Namespace]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs as root)")
    n = (os.getpid() % 200) * 50 + next(_numbers) % 50  # unique per test run and call
    name, host_if, ns_if = f"airmic{n}", f"am{n}h", f"am{n}n"
    subnet = f"10.{200 + n // 256 % 50}.{n % 256}"
    ns = Namespace(name, f"{subnet}.1", f"{subnet}.2", ns_if, host_if)
    ip("netns", "add", name)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name)
        ip("addr", "add", f"{ns.host_ip}/24", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", name, "addr", "add", f"{ns.ip}/24", "dev", ns_if)
        ip("-n", name, "link", "set", ns_if, "up")
        ip("-n", name, "link", "set", "lo", "up")
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)
        delete = ["nft", "delete", "table", "netdev", ns.table]  # if lose_udp made it
        subprocess.run(delete, capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
