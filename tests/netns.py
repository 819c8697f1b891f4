"""A private network for tests: a namespace joined to this host by a veth pair.

Browsers gather no ICE candidates on loopback alone, so the browser runs in the namespace
(a second "device" on a LAN of two addresses) and reaches the receiver on this host over
the veth pair. Nothing leaves the machine. Needs root (CI runs as root).
"""

from __future__ import annotations

import itertools
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

    def run(self, *args: str) -> list[str]:
        """A command line that runs `args` inside the namespace."""
        return ["ip", "netns", "exec", self.name, *args]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextmanager
def namespace() -> Iterator[Namespace]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs as root)")
    n = (os.getpid() % 200) * 50 + next(_numbers) % 50  # unique per test run and call
    name, host_if, ns_if = f"airmic{n}", f"am{n}h", f"am{n}n"
    subnet = f"10.{200 + n // 256 % 50}.{n % 256}"
    ns = Namespace(name, f"{subnet}.1", f"{subnet}.2", ns_if)
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
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
