"""The door of the UDP port: only the encrypted streams of paired senders come in.

A datagram is a handshake (a sender's HELLO: its key looked up among the paired senders,
held in memory, before any signature is checked; answered with a WELCOME and fresh SRTP
keys, or a signed REFUSE, at most once a second per address and REFUSALS a second in all;
a paired key's signature is checked at most VERIFICATIONS times a second in all, a few of
them per address, so that a flood cannot eat the core the audio needs), SRTP or SRTCP
from an address that handshook (authenticated and decrypted: forged and replayed packets
go no further), or plain RTP and RTCP, taken only with --insecure. What is refused raises
DroppedPacket, for the demux to count and log once per reason, before any decoding; what
the sender must hear back (a WELCOME, a REFUSE, a request to handshake again) is returned,
for the caller to send. What goes back to a sender that handshook (its receiver reports)
is sealed with the keys of the other direction (`seal`). Sans-I/O.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from airmic.common.errors import UsageError
from airmic.common.handshake import (
    BadHandshake,
    Hello,
    Refusal,
    is_handshake,
    parse,
    refuse,
    signed_by_sender,
    welcome,
    who,
)
from airmic.common.identity import Identity
from airmic.common.peers import Peer, Peers
from airmic.common.rtcp import is_rtcp
from airmic.common.rtp import Drop, DroppedPacket
from airmic.common.srtp import Keys

log = logging.getLogger(__name__)

Address = tuple[str, int]
KEYED = 64
"""Addresses with keys at once; the one heard from least recently goes first."""
HELLOS = 1024
"""Hellos remembered, to answer a repeated one alike and refuse a replayed one."""
WHO_INTERVAL = 1.0
"""Seconds between two requests to the same address to handshake again, and between two
refusals sent to it."""
REFUSALS = 20
"""Refusals signed and sent a second, at most, to every address together."""
VERIFICATIONS = 200
"""Hellos whose signature is checked a second, at most (about 60 us each): a sender sends
a few per stream."""
PER_ADDRESS = 5
"""... of them from one address (a second's worth may come at once)."""


@dataclass(frozen=True)
class Answer:
    """A handshake's answer, for the caller to send back to where the hello came from."""

    data: bytes


@dataclass
class Keyed:
    """An address that handshook: its sender, its keys, and newer keys not yet used."""

    peer: Peer
    keys: Keys
    pending: Keys | None = None


class Guard:
    def __init__(self, identity: Identity, senders: Peers, insecure: bool) -> None:
        self.identity = identity
        self.senders = senders
        self.insecure = insecure
        self.keyed: OrderedDict[Address, Keyed] = OrderedDict()
        self._hellos: OrderedDict[bytes, tuple[Address, bytes]] = OrderedDict()
        self._asked: OrderedDict[Address, float] = OrderedDict()  # when WHO went out
        self._refused: OrderedDict[Address, float] = OrderedDict()  # when REFUSE went out
        self._refusals = Budget(REFUSALS)
        self._verifications = Budget(VERIFICATIONS)
        self._verified: OrderedDict[Address, Budget] = OrderedDict()
        self._paired: dict[bytes, Peer] = {}
        self._paired_stamp: int | None = -1  # the paired list as last read (-1: never)
        self._revoked_stamp: int | None = None  # ... as last checked for revocations

    def admit(self, data: bytes, addr: Address, now: float) -> bytes | Answer:
        """The plain RTP in `data`, or a handshake's answer. Raises DroppedPacket (with a
        reply for the source when it must hear one)."""
        if is_handshake(data):
            return self._handshake(data, addr, now)
        keyed = self.keyed.get(addr)
        if keyed is not None:
            self.keyed.move_to_end(addr)
            return self._unprotect(keyed, data)
        if self.insecure or not data or data[0] >> 6 != 2:
            return data  # plain RTP allowed; or not RTP at all, for the parser to name
        # Perhaps this receiver restarted: the sender is asked to handshake again.
        request = who() if _due(self._asked, addr, now) else None
        raise DroppedPacket(
            Drop.NO_SESSION,
            "not a paired sender's encrypted stream (plain RTP needs --insecure on both sides)",
            reply=request,
        )

    def seal(self, addr: Address, rtcp: bytes) -> bytes:
        """RTCP for `addr`, as SRTCP if it handshook (plain for an --insecure peer)."""
        keyed = self.keyed.get(addr)
        return rtcp if keyed is None else keyed.keys.send.protect_rtcp(rtcp)

    def paired(self) -> dict[bytes, Peer]:
        """The paired senders by key, read again only when the file changed; if it became
        unreadable, the last good list serves (with one warning)."""
        stamp = self.senders.stamp()
        if stamp != self._paired_stamp:
            self._paired_stamp = stamp
            try:
                self._paired = {peer.key: peer for peer in self.senders.all()}
            except UsageError as exc:
                log.warning("%s; the senders paired before serve until it is fixed", exc)
        return self._paired

    def revoked(self) -> list[Address]:
        """Forget the keys of senders no longer paired; their addresses. Called every second
        by the housekeeping: the file is read only when it changed and a stream is keyed."""
        stamp = self.senders.stamp()
        if not self.keyed or stamp == self._revoked_stamp:
            return []
        self._revoked_stamp = stamp
        keys = self.paired()
        gone = [addr for addr, keyed in self.keyed.items() if keyed.peer.key not in keys]
        for addr in gone:
            log.warning("sender %r was unpaired: its stream is cut", self.keyed[addr].peer.name)
            del self.keyed[addr]
        return gone

    def _handshake(self, data: bytes, addr: Address, now: float) -> Answer:
        try:
            hello = parse(data)
        except BadHandshake as exc:
            raise DroppedPacket(Drop.BAD_HANDSHAKE, str(exc)) from None
        if not isinstance(hello, Hello):
            raise DroppedPacket(Drop.BAD_HANDSHAKE, "a receiver takes only hellos")
        seen = self._hellos.get(hello.nonce)
        if seen is not None:
            if seen[0] != addr:
                raise DroppedPacket(Drop.REPLAYED, "a hello seen before, from elsewhere")
            return Answer(seen[1])  # the welcome was lost: the same one again
        peer = self.paired().get(hello.sender)
        if peer is None:
            # Signed for this hello only: whoever sent it (perhaps not its key's owner, nor
            # from its address) learns no more than this, and no other sender can be stopped.
            reply = None
            if _due(self._refused, addr, now) and self._refusals.take(now):
                reply = refuse(self.identity, hello, Refusal.UNPAIRED)
            raise DroppedPacket(
                Drop.UNPAIRED, "a handshake from a sender not paired here", reply=reply
            )
        if not (self._source_budget(addr).take(now) and self._verifications.take(now)):
            raise DroppedPacket(Drop.HANDSHAKE_FLOOD, "more hellos than a sender sends")
        if not signed_by_sender(hello):
            raise DroppedPacket(Drop.BAD_HANDSHAKE, "a hello not signed by the key it carries")
        answer, master = welcome(self.identity, hello)
        self._hellos[hello.nonce] = (addr, answer)
        if len(self._hellos) > HELLOS:
            self._hellos.popitem(last=False)
        keyed = self.keyed.get(addr)
        if keyed is not None and keyed.peer.key == peer.key:
            keyed.pending = Keys(master, sender=False)  # the current ones serve until it is used
        else:
            self.keyed[addr] = Keyed(peer, Keys(master, sender=False))
            if len(self.keyed) > KEYED:
                self.keyed.popitem(last=False)
            log.info("encrypted stream from %s:%d: sender %r", *addr, peer.name)
        return Answer(answer)

    def _source_budget(self, addr: Address) -> Budget:
        budget = self._verified.pop(addr, None) or Budget(PER_ADDRESS)
        self._verified[addr] = budget  # the most recent last; a flood stays bounded
        if len(self._verified) > HELLOS:
            self._verified.popitem(last=False)
        return budget

    def _unprotect(self, keyed: Keyed, data: bytes) -> bytes:
        control = is_rtcp(data)
        try:
            return keyed.keys.receive.unprotect(data, control)
        except DroppedPacket:
            if keyed.pending is None:
                raise
            try:
                plain = keyed.pending.receive.unprotect(data, control)
            except DroppedPacket:
                pass
            else:  # the sender moved to its new keys
                keyed.keys, keyed.pending = keyed.pending, None
                return plain
            raise


def _due(last: OrderedDict[Address, float], addr: Address, now: float) -> bool:
    """Whether `addr` may be sent another message of a kind it was last sent at `last[addr]`
    (then noted as sent now); a flood from many addresses keeps `last` bounded."""
    if now - last.get(addr, -WHO_INTERVAL) < WHO_INTERVAL:
        return False
    last[addr] = now
    last.move_to_end(addr)
    if len(last) > HELLOS:
        last.popitem(last=False)
    return True


class Budget:
    """A token bucket: `rate` takes a second, `burst` at once after a quiet spell (default:
    a second's worth). (A few lines: the rate limiters on PyPI are built for asyncio or for
    web frameworks.)"""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = rate if burst is None else burst
        self._tokens = self.burst
        self._at: float | None = None

    def take(self, now: float) -> bool:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
