"""The sender's encrypted channel: a handshake with a paired receiver (common/handshake.py),
then SRTP. It handshakes again when the receiver asks (it restarted and lost the keys), and
stops the stream with a clear error when the receiver refuses it (unpaired)."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from airmic.common.config import config_dir
from airmic.common.errors import NetworkError
from airmic.common.handshake import BadHandshake, Kind, Refusal, SenderHandshake, Welcome, parse
from airmic.common.identity import Identity, load_identity
from airmic.common.peers import Peer, Peers
from airmic.common.srtp import Protector

log = logging.getLogger(__name__)

RECEIVERS_FILE = "paired-receivers.json"
RETRIES = (0.25, 0.25, 0.5, 0.5, 1.0, 1.0, 2.0)
"""Seconds to wait for an answer after each hello: about 5.5 s in all."""


class Datagrams(Protocol):
    @property
    def inbox(self) -> asyncio.Queue[bytes]: ...

    def send(self, datagram: bytes) -> None: ...


def receivers() -> Peers:
    return Peers(config_dir() / RECEIVERS_FILE)


class SecureChannel:
    def __init__(self, transport: Datagrams, where: str, identity: Identity) -> None:
        self._transport = transport
        self._where = where
        self._identity = identity
        self._protector: Protector | None = None
        self.peer: Peer | None = None
        self.fatal: NetworkError | None = None
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
        assert self._protector is not None
        return self._protector.protect(rtp)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()

    async def _handshake(self, again: bool = False) -> None:
        """Keys from a paired receiver's welcome (`again`: while streaming). Raises
        NetworkError."""
        attempt = SenderHandshake(self._identity)
        for wait in RETRIES:
            self._transport.send(attempt.datagram)
            try:
                answer = await asyncio.wait_for(self._answer(), wait)
            except TimeoutError:
                continue
            if answer is Refusal.UNPAIRED and again:
                raise NetworkError(
                    f"the receiver at {self._where} no longer accepts this sender (unpaired)"
                )
            if answer is Refusal.UNPAIRED:
                raise NetworkError(
                    f"the receiver at {self._where} does not know this sender: pair first "
                    "(airmic-receive pair there, then airmic-send pair CODE here)"
                )
            if isinstance(answer, Welcome):
                peer = receivers().find(answer.receiver)
                if peer is None:
                    raise NetworkError(
                        f"{self._where} is not a receiver this sender paired with "
                        "(airmic-send pair; or --insecure, for plain RTP)"
                    )
                try:
                    master = attempt.keys(answer, peer.key)
                except BadHandshake as exc:
                    raise NetworkError(f"{self._where}: {exc}") from None
                self._protector, self.peer = Protector(master), peer
                log.info("encrypted (SRTP, AES-128-GCM) with %s at %s", peer.name, self._where)
                return
        raise NetworkError(
            f"no answer from a receiver at {self._where} (is airmic-receive running there? "
            "a receiver older than this sender? plain RTP needs --insecure)"
        )

    async def _answer(self) -> Welcome | Refusal:
        """The next welcome or refusal (anything else is skipped)."""
        while True:
            try:
                message = parse(await self._transport.inbox.get())
            except BadHandshake:
                continue
            if isinstance(message, Welcome | Refusal):
                return message

    async def _watch(self) -> None:
        """While streaming: the receiver asks again (WHO) after a restart; a refusal ends it."""
        while True:
            try:
                message = parse(await self._transport.inbox.get())
            except BadHandshake:
                continue
            if message is Kind.WHO:
                log.info("the receiver lost the keys (restarted?): handshaking again")
                try:
                    await self._handshake(again=True)
                except NetworkError as exc:
                    self.fatal = exc
                    return
            elif message is Refusal.UNPAIRED:
                self.fatal = NetworkError(
                    f"the receiver at {self._where} no longer accepts this sender (unpaired)"
                )
                return
