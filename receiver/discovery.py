"""The receiver, findable by name: a DNS-SD service (RFC 6763) over mDNS (RFC 6762),
`_airmic._udp.local.`, with python-zeroconf.

TXT record: v (protocol version), name, web (the page's base URL, without its token), fp
(the fingerprint of the receiver's identity key, which a paired sender knows it by).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

from zeroconf import DNSOutgoing, DNSQuestion, NonUniqueNameException, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

from airmic.common.mdns import SERVICE, VERSION, open_mdns

log = logging.getLogger(__name__)

ANSWERS = 0.25
"""Seconds an mDNS query's answers take to come (RFC 6762 section 6: 20-120 ms)."""
QUERY, PTR, IN = 0x0000, 12, 1  # a DNS query's flags, the PTR type, the IN class (RFC 1035)


@dataclass(frozen=True)
class Announcement:
    name: str
    address: str  # where senders reach it (an IPv4 address)
    port: int  # UDP
    web: str | None  # the page's base URL
    fingerprint: str  # of its identity key


class Advertiser:
    """Advertises one receiver until closed; mDNS only on `interface` (an address), or on
    every interface with None. Registration (RFC 6762's probing takes about a second) runs
    in the background: the receiver serves meanwhile, and serves on if it fails."""

    def __init__(self, zeroconf: AsyncZeroconf, info: ServiceInfo) -> None:
        self._zeroconf = zeroconf
        self._info = info
        self._registered = False
        self._task = asyncio.create_task(self._register())

    @classmethod
    def start(cls, announcement: Announcement, interface: str | None) -> Advertiser:
        properties = {"v": VERSION, "name": announcement.name, "fp": announcement.fingerprint}
        if announcement.web:
            properties["web"] = announcement.web
        info = ServiceInfo(
            SERVICE,
            f"{_instance(announcement.name)}.{SERVICE}",
            addresses=[socket.inet_aton(announcement.address)],
            port=announcement.port,
            properties=properties,
            server=f"{_instance(socket.gethostname())}.local.",
        )
        return cls(open_mdns(interface), info)

    async def _register(self) -> None:
        wanted = self._info.name
        try:
            await self._ask_who_is_there()
            announced = await self._zeroconf.async_register_service(
                self._info, allow_name_change=True
            )
            if self._info.name != wanted:  # another receiver has the name: zeroconf made
                # this one "NAME-2"; its TXT name follows, so senders see two names. The
                # announcements with the old TXT go first (else a late one overrides it)
                await announced
                name = self._info.name.removesuffix(f".{SERVICE}")
                self._info = _info(self._info.name, self._info, name)
                await (await self._zeroconf.async_update_service(self._info))
                log.warning(
                    "another receiver on the network is named %r: this one is %r "
                    "(--name NAME chooses another)",
                    wanted.removesuffix(f".{SERVICE}"),
                    name,
                )
        except (NonUniqueNameException, OSError) as exc:
            log.error("cannot advertise the receiver by mDNS: %s", exc)
            return
        self._registered = True
        log.info(
            "advertised as %r on %s (mDNS, %s)",
            self._info.name.removesuffix(f".{SERVICE}"),
            self._info.parsed_addresses()[0],
            SERVICE.rstrip("."),
        )

    async def _ask_who_is_there(self) -> None:
        """Ask, by multicast, for the receivers already there, and hear them out: zeroconf's
        own probe asks for unicast answers, and with two receivers on one host the answer
        may reach the other's socket on port 5353 instead (two receivers of one name
        started seconds apart both took it). Their answers in the cache, the probe sees
        the name is taken."""
        zeroconf = self._zeroconf.zeroconf
        await zeroconf.async_wait_for_start()
        query = DNSOutgoing(QUERY)  # multicast: no unicast-response bit in the class
        query.add_question(DNSQuestion(SERVICE, PTR, IN))
        zeroconf.async_send(query)
        await asyncio.sleep(ANSWERS)

    async def close(self) -> None:
        self._task.cancel()
        if self._registered:
            await self._zeroconf.async_unregister_service(self._info)
        await self._zeroconf.async_close()


def _info(full_name: str, like: ServiceInfo, name: str) -> ServiceInfo:
    """`like`, under another instance name, with that name in its TXT record."""
    return ServiceInfo(
        SERVICE,
        full_name,
        addresses=like.addresses,
        port=like.port,
        properties={**like.decoded_properties, "name": name},
        server=like.server,
    )


def _instance(name: str) -> str:
    """A DNS label: at most 63 bytes, no dots."""
    return name.replace(".", "-").encode()[:63].decode(errors="ignore") or "airmic"
