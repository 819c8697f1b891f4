"""The door of the UDP port: only the encrypted streams of paired senders come in.

A datagram is a handshake (a sender's HELLO: checked against the paired senders, answered
with a WELCOME and fresh SRTP keys, or a REFUSE), SRTP from an address that handshook
(authenticated and decrypted: forged and replayed packets go no further), or plain RTP,
taken only with --insecure. What is refused raises DroppedPacket, for the demux to count
and log once per reason, before any decoding; what the sender must hear back (a WELCOME,
a REFUSE, a request to handshake again) is returned, for the caller to send. Sans-I/O.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from airmic.common.handshake import (
    BadHandshake,
    Hello,
    Refusal,
    is_handshake,
    parse,
    refuse,
    welcome,
    who,
)
from airmic.common.identity import Identity
from airmic.common.peers import Peer, Peers
from airmic.common.rtp import Drop, DroppedPacket
from airmic.common.srtp import Unprotector

log = logging.getLogger(__name__)

Address = tuple[str, int]
KEYED = 64
"""Addresses with keys at once; the one heard from least recently goes first."""
HELLOS = 1024
"""Hellos remembered, to answer a repeated one alike and refuse a replayed one."""
WHO_INTERVAL = 1.0
"""Seconds between two requests to the same address to handshake again."""


@dataclass(frozen=True)
class Answer:
    """A handshake's answer, for the caller to send back to where the hello came from."""

    data: bytes


@dataclass
class Keyed:
    """An address that handshook: its sender, its keys, and newer keys not yet used."""

    peer: Peer
    keys: Unprotector
    pending: Unprotector | None = None


class Guard:
    def __init__(self, identity: Identity, senders: Peers, insecure: bool) -> None:
        self.identity = identity
        self.senders = senders
        self.insecure = insecure
        self.keyed: OrderedDict[Address, Keyed] = OrderedDict()
        self._hellos: OrderedDict[bytes, tuple[Address, bytes]] = OrderedDict()
        self._asked: OrderedDict[Address, float] = OrderedDict()  # when WHO went out
        self._paired_stamp: int | None = None  # the paired list as last read

    def admit(self, data: bytes, addr: Address, now: float) -> bytes | Answer:
        """The plain RTP in `data`, or a handshake's answer. Raises DroppedPacket (with a
        reply for the source when it must hear one)."""
        if is_handshake(data):
            return self._handshake(data, addr)
        keyed = self.keyed.get(addr)
        if keyed is not None:
            self.keyed.move_to_end(addr)
            return self._unprotect(keyed, data)
        if self.insecure or not data or data[0] >> 6 != 2:
            return data  # plain RTP allowed; or not RTP at all, for the parser to name
        request = None
        if now - self._asked.get(addr, -WHO_INTERVAL) >= WHO_INTERVAL:
            self._asked[addr] = now  # perhaps this receiver restarted: handshake again
            self._asked.move_to_end(addr)
            if len(self._asked) > HELLOS:  # a flood from many addresses stays bounded
                self._asked.popitem(last=False)
            request = who()
        raise DroppedPacket(
            Drop.NO_SESSION,
            "not a paired sender's encrypted stream (plain RTP needs --insecure on both sides)",
            reply=request,
        )

    def revoked(self) -> list[Address]:
        """Forget the keys of senders no longer paired; their addresses. Called every second
        on the playout clock: the file is read only when it changed and a stream is keyed."""
        stamp = self.senders.stamp()
        if not self.keyed or stamp == self._paired_stamp:
            return []
        self._paired_stamp = stamp
        keys = {peer.key for peer in self.senders.all()}
        gone = [addr for addr, keyed in self.keyed.items() if keyed.peer.key not in keys]
        for addr in gone:
            log.warning("sender %r was unpaired: its stream is cut", self.keyed[addr].peer.name)
            del self.keyed[addr]
        return gone

    def _handshake(self, data: bytes, addr: Address) -> Answer:
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
        peer = self.senders.find(hello.sender)
        if peer is None:
            raise DroppedPacket(
                Drop.UNPAIRED,
                "a handshake from a sender not paired here",
                reply=refuse(Refusal.UNPAIRED),
            )
        answer, master = welcome(self.identity, hello)
        self._hellos[hello.nonce] = (addr, answer)
        if len(self._hellos) > HELLOS:
            self._hellos.popitem(last=False)
        keyed = self.keyed.get(addr)
        if keyed is not None and keyed.peer.key == peer.key:
            keyed.pending = Unprotector(master)  # the current keys serve until these are used
        else:
            self.keyed[addr] = Keyed(peer, Unprotector(master))
            if len(self.keyed) > KEYED:
                self.keyed.popitem(last=False)
            log.info("encrypted stream from %s:%d: sender %r", *addr, peer.name)
        return Answer(answer)

    def _unprotect(self, keyed: Keyed, data: bytes) -> bytes:
        try:
            return keyed.keys.unprotect(data)
        except DroppedPacket:
            if keyed.pending is None:
                raise
            try:
                plain = keyed.pending.unprotect(data)
            except DroppedPacket:
                pass
            else:  # the sender moved to its new keys
                keyed.keys, keyed.pending = keyed.pending, None
                return plain
            raise
