"""What the receiver's advertisement and the sender's search share: the DNS-SD service
type (RFC 6763), the protocol version in its TXT record, and how mDNS (RFC 6762) is opened,
on one interface or all. The one module of `common/` that opens sockets: both sides need
exactly this, and it is a constructor, nothing that runs."""

from __future__ import annotations

from zeroconf import InterfaceChoice, IPVersion
from zeroconf.asyncio import AsyncZeroconf

from airmic.common.errors import NetworkError

SERVICE = "_airmic._udp.local."
VERSION = "1"


def open_mdns(interface: str | None) -> AsyncZeroconf:
    """mDNS on the interface with address `interface` only, or on every interface (None).
    Raises NetworkError."""
    try:
        return AsyncZeroconf(
            interfaces=[interface] if interface else InterfaceChoice.All,
            ip_version=IPVersion.V4Only,
        )
    except OSError as exc:
        where = interface or "the network"
        raise NetworkError(f"cannot multicast (mDNS) on {where}: {exc.strerror or exc}") from None
