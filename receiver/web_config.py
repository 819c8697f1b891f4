"""Where the web page (phone page, WHIP, pairing) is served, and the addresses other
devices reach this machine at. Apart from the server (aiohttp), for the options' parser."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import ifaddr


@dataclass
class WebConfig:
    host: str = "0.0.0.0"
    port: int = 5004
    tls: bool = True  # http only for 127.0.0.1, which browsers count as secure too
    new_token: bool = False

    def public_host(self) -> str:
        """The address other devices reach the page at."""
        return lan_address() if self.host in ("0.0.0.0", "::", "") else self.host


def lan_address() -> str:
    """The address other devices reach this one at: the source address of the default
    route (a UDP socket's connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routed by default, never reached
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def lan_addresses() -> list[tuple[str, str]]:
    """This machine's IPv4 addresses other devices may reach, with their interface's name
    (with ifaddr, which zeroconf depends on): not loopback, not link-local."""
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                address = ipaddress.ip_address(ip.ip)
                if not (address.is_loopback or address.is_link_local):
                    found.append((ip.ip, adapter.nice_name))
    return found
