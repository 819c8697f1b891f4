"""The sender's encrypted channel: a handshake with a paired receiver (common/handshake.py),
then SRTP. It handshakes again when the receiver asks (it restarted and lost the keys), and
stops the stream with a clear error when the receiver refuses it (unpaired).

Only what a paired receiver signed changes the channel: a welcome to this sender's current
hello, or a refusal of it. Anything else that reaches the port (a forged or replayed
refusal, a welcome from someone else, garbage) is ignored and counted, and the stream goes
on with the keys that work; a WHO (unsigned: see common/handshake.py) only ever starts a
new handshake, at most once every REHANDSHAKE seconds, and the keys in use serve until it
succeeds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from airmic.common.config import config_dir
from airmic.common.errors import NetworkError
from airmic.common.handshake import (
    BadHandshake,
    Hello,
    Kind,
    Refusal,
    Refuse,
    SenderHandshake,
    Welcome,
    parse,
)
from airmic.common.identity import Identity, load_identity
from airmic.common.log import OnceLogger
from airmic.common.peers import Peer, Peers
from airmic.common.srtp import Keys

log = logging.getLogger(__name__)

RECEIVERS_FILE = "paired-receivers.json"
RETRIES = (0.25, 0.25, 0.5, 0.5, 1.0, 1.0, 2.0)
"""Seconds to wait for an answer after each hello: about 5.5 s in all."""
REHANDSHAKE = 2.0
"""Seconds between two handshakes that a receiver's WHO starts, at least."""


class Datagrams(Protocol):
    @property
    def inbox(self) -> asyncio.Queue[bytes]: ...

    def send(self, datagram: bytes) -> None: ...


class Refused(NetworkError):
    """The paired receiver refused this sender, in a message it signed."""


def receivers() -> Peers:
    return Peers(config_dir() / RECEIVERS_FILE)


class SecureChannel:
    def __init__(self, transport: Datagrams, where: str, identity: Identity) -> None:
        self._transport = transport
        self._where = where
        self._identity = identity
        self._keys: Keys | None = None
        self.peer: Peer | None = None
        self.fatal: NetworkError | None = None
        self.ignored = 0  # handshake datagrams no paired receiver signed for this sender
        self._ignored = OnceLogger(log, logging.INFO)
        self._watcher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, transport: Datagrams, where: str) -> SecureChannel:
        channel = cls(transport, where, load_identity(config_dir()))
        await channel._handshake()
        channel._watcher = asyncio.create_task(channel._watch())
        return channel

    def protect(self, rtp: bytes) -> bytes:
        if self.fatal is not None:
            raise self.fatal
        assert self._keys is not None
        return self._keys.send.protect(rtp)

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        assert self._keys is not None
        return self._keys.send.protect_rtcp(rtcp)

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        """The receiver's report, checked and decrypted. Raises DroppedPacket."""
        assert self._keys is not None
        return self._keys.receive.unprotect(srtcp, rtcp=True)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()

    async def _handshake(self, again: bool = False) -> None:
        """Keys from a paired receiver's welcome (`again`: while streaming, on the keys in
        use). Raises NetworkError."""
        attempt = SenderHandshake(self._identity)
        stranger: str | None = None  # why a receiver that answered will not do
        for wait in RETRIES:
            self._transport.send(attempt.datagram)
            try:
                answer = await asyncio.wait_for(self._answer(attempt), wait)
            except TimeoutError:
                continue
            if isinstance(answer, str):
                stranger = answer
                continue
            if isinstance(answer, Refusal) and again:
                raise Refused(
                    f"the receiver at {self._where} no longer accepts this sender (unpaired)"
                )
            if isinstance(answer, Refusal):
                raise Refused(
                    f"the receiver at {self._where} no longer knows this sender: pair again "
                    "(airmic-receive pair there, then airmic-send pair CODE here)"
                )
            self._keys, self.peer = Keys(answer[1], sender=True), answer[0]
            log.info("encrypted (SRTP, AES-128-GCM) with %s at %s", self.peer.name, self._where)
            return
        if stranger is not None:
            raise NetworkError(
                f"the receiver at {self._where} {stranger} (airmic-receive pair there, then "
                "airmic-send pair CODE here; or --insecure, for plain RTP)"
            )
        raise NetworkError(
            f"no answer from a receiver at {self._where} (is airmic-receive running there? "
            "a receiver older than this sender? plain RTP needs --insecure)"
        )

    async def _answer(self, attempt: SenderHandshake) -> tuple[Peer, bytes] | Refusal | str:
        """A paired receiver's signed answer to `attempt`: its welcome (the receiver and the
        SRTP master key) or its refusal; or, when a receiver not paired here answered, why
        it will not do. Anything else is ignored and counted."""
        while True:
            message = self._parse(await self._transport.inbox.get())
            peer = None
            if isinstance(message, Welcome | Refuse):
                peer = receivers().find(message.receiver)
            try:
                if isinstance(message, Welcome) and peer is not None:
                    return peer, attempt.keys(message, peer.key)
                if isinstance(message, Refuse) and peer is not None:
                    return attempt.refused(message, peer.key)
                # Signed for this hello by the key they carry, but not a key paired here:
                # said at the end if no paired receiver answers (anyone could send these).
                if isinstance(message, Welcome):
                    attempt.keys(message, None)
                    return "is not a receiver this sender paired with"
                if isinstance(message, Refuse):
                    attempt.refused(message, message.receiver)
                    return "does not know this sender: pair first"
            except BadHandshake as exc:
                self._ignore(str(exc))
                continue
            if message is not None and message is not Kind.WHO:
                self._ignore("a handshake answer no paired receiver signed")

    def _parse(self, datagram: bytes) -> Welcome | Refuse | Kind | None:
        try:
            message = parse(datagram)
        except BadHandshake as exc:
            self._ignore(str(exc))
            return None
        if isinstance(message, Hello):
            self._ignore("a hello sent to a sender")
            return None
        return message

    def _ignore(self, why: str) -> None:
        self.ignored += 1
        self._ignored.report(why, "ignored a handshake datagram: %s", why)

    async def _watch(self) -> None:
        """While streaming: the receiver asks again (WHO) after a restart, and a handshake
        starts, at most every REHANDSHAKE seconds; a refusal of it ends the stream."""
        loop = asyncio.get_running_loop()
        last = -REHANDSHAKE
        while True:
            message = self._parse(await self._transport.inbox.get())
            if message is not Kind.WHO:
                if message is not None:  # no handshake is under way: nothing to answer
                    self._ignore("an answer to no hello")
                continue
            if loop.time() - last < REHANDSHAKE:
                continue
            last = loop.time()
            log.info("the receiver asked for a new handshake (restarted?)")
            try:
                await self._handshake(again=True)
            except Refused as exc:
                self.fatal = exc
                return
            except NetworkError as exc:
                log.warning("%s; streaming on with the keys in use", exc)
