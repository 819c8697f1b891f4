"""The handshake that opens an encrypted UDP stream between paired identities, and the SRTP
keys it yields (SRTP with AEAD_AES_128_GCM, RFC 3711 and 7714, through pylibsrtp).

    sender ── HELLO: its key, an ephemeral X25519 key, a nonce; signed ──────────► receiver
           ◄─ WELCOME: its key, an ephemeral X25519 key; signed over both halves ──
    both: X25519 of the ephemerals ─► HKDF-SHA256 ─► two SRTP master keys and salts, one
          for each direction (the receiver's reports go back under the second)

Each side checks that the other's long-term key (Ed25519) is one it paired with and that
it signed this exchange; the keys are fresh for each stream (forward secrecy: the identity
keys only sign). A REFUSE tells a sender why it is turned away: signed by the receiver over
the very HELLO it answers, so that no one else can stop a sender, and no refusal of another
hello (a replayed one, or one an attacker sent from the sender's address) can either. A WHO
is the receiver asking an unknown sender of SRTP to handshake again (after the receiver
restarted): unsigned, as a receiver that lost its keys may have lost nothing else, so a
sender only ever answers it with a new handshake, and keeps its keys until one succeeds.

Handshake datagrams share the media port: their first byte (0x41, 'A') can never begin an
RTP or RTCP packet (version 2 puts 0b10 in its top bits). Sans-I/O.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from airmic.common.identity import Identity, verify

MAGIC = b"AMH1"
KEY, SIGNATURE, NONCE = 32, 64, 16
MASTER_KEY = 16 + 12  # AEAD_AES_128_GCM: key and salt (RFC 7714 section 12)


class Kind(enum.IntEnum):
    HELLO = 1
    WELCOME = 2
    REFUSE = 3
    WHO = 4


class Refusal(enum.IntEnum):
    UNPAIRED = 1  # this receiver does not know the sender's key
    BUSY = 2  # too many streams


class BadHandshake(ValueError):
    """A handshake datagram that is malformed or not signed by who it claims."""


@dataclass(frozen=True)
class Hello:
    sender: bytes  # its identity key
    ephemeral: bytes
    nonce: bytes
    signature: bytes

    @property
    def signed(self) -> bytes:
        return b"airmic hello" + self.sender + self.ephemeral + self.nonce


@dataclass(frozen=True)
class Welcome:
    receiver: bytes
    ephemeral: bytes
    signature: bytes

    def signed(self, hello: Hello) -> bytes:
        return b"airmic welcome" + self.receiver + hello.signed + self.ephemeral


@dataclass(frozen=True)
class Refuse:
    receiver: bytes
    reason: Refusal
    signature: bytes

    def signed(self, hello: Hello) -> bytes:
        return b"airmic refuse" + self.receiver + bytes([self.reason]) + hello.signed


def is_handshake(data: bytes) -> bool:
    return data[:4] == MAGIC


def parse(data: bytes) -> Hello | Welcome | Refuse | Kind:
    """A handshake datagram: Hello, Welcome, Refuse, or Kind.WHO, its form checked but not
    its signature (whoever checks first looks the key up: unknown keys cost no signature
    check). Raises BadHandshake."""
    if len(data) < 5 or not is_handshake(data):
        raise BadHandshake("not a handshake datagram")
    kind, body = data[4], data[5:]
    sizes = {Kind.HELLO: KEY * 2 + NONCE + SIGNATURE, Kind.WELCOME: KEY * 2 + SIGNATURE,
             Kind.REFUSE: KEY + 1 + SIGNATURE, Kind.WHO: 0}  # fmt: skip
    if kind not in sizes or len(body) != sizes[Kind(kind)]:
        raise BadHandshake(f"handshake datagram of kind {kind} and {len(body)} bytes")
    if kind == Kind.HELLO:
        return Hello(body[:32], body[32:64], body[64:80], body[80:])
    if kind == Kind.WELCOME:
        return Welcome(body[:32], body[32:64], body[64:])
    if kind == Kind.REFUSE:
        try:
            return Refuse(body[:32], Refusal(body[32]), body[33:])
        except ValueError:
            raise BadHandshake(f"unknown refusal {body[32]}") from None
    return Kind.WHO


def signed_by_sender(hello: Hello) -> bool:
    """Whether the hello is signed by the key it carries."""
    return verify(hello.sender, hello.signature, hello.signed)


def refuse(identity: Identity, hello: Hello, reason: Refusal) -> bytes:
    """The receiver's refusal of this very hello, signed."""
    unsigned = Refuse(identity.public, reason, b"")
    signature = identity.sign(unsigned.signed(hello))
    return MAGIC + bytes([Kind.REFUSE]) + identity.public + bytes([reason]) + signature


def who() -> bytes:
    return MAGIC + bytes([Kind.WHO])


class SenderHandshake:
    """The sender's side: `hello` to send (again, until answered), then `keys(welcome,
    trusted)`."""

    def __init__(self, identity: Identity) -> None:
        self._ephemeral = X25519PrivateKey.generate()
        public = self._ephemeral.public_key().public_bytes(*_RAW)
        unsigned = Hello(identity.public, public, secrets.token_bytes(NONCE), b"")
        self.hello = Hello(unsigned.sender, public, unsigned.nonce, identity.sign(unsigned.signed))
        self.datagram = MAGIC + bytes([Kind.HELLO]) + public_parts(self.hello)

    def keys(self, welcome: Welcome, trusted: bytes | None) -> bytes:
        """The SRTP master key, if `welcome` is signed by `trusted` (a paired receiver's
        key; None: any, for a caller that checks the key itself). Raises BadHandshake."""
        if trusted is not None and welcome.receiver != trusted:
            raise BadHandshake("welcomed by a receiver this sender is not paired with")
        if not verify(welcome.receiver, welcome.signature, welcome.signed(self.hello)):
            raise BadHandshake("a welcome not signed by the receiver's key")
        return _derive(self._ephemeral, welcome.ephemeral, self.hello, welcome.ephemeral)

    def refused(self, refusal: Refuse, trusted: bytes) -> Refusal:
        """Why the receiver `trusted` refused this hello, if `refusal` is its signed answer
        to it. Raises BadHandshake (forged, or the refusal of another hello)."""
        if refusal.receiver != trusted:
            raise BadHandshake("refused by a receiver this sender is not paired with")
        if not verify(refusal.receiver, refusal.signature, refusal.signed(self.hello)):
            raise BadHandshake("a refusal not signed by the receiver for this hello")
        return refusal.reason


def public_parts(hello: Hello) -> bytes:
    return hello.sender + hello.ephemeral + hello.nonce + hello.signature


def welcome(identity: Identity, hello: Hello) -> tuple[bytes, bytes]:
    """The receiver's answer to a verified hello from a paired sender: the datagram, and
    the SRTP master key of the stream."""
    ephemeral = X25519PrivateKey.generate()
    public = ephemeral.public_key().public_bytes(*_RAW)
    unsigned = Welcome(identity.public, public, b"")
    signature = identity.sign(unsigned.signed(hello))
    datagram = MAGIC + bytes([Kind.WELCOME]) + identity.public + public + signature
    return datagram, _derive(ephemeral, hello.ephemeral, hello, public)


_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def _derive(mine: X25519PrivateKey, theirs: bytes, hello: Hello, welcome_ephemeral: bytes) -> bytes:
    try:
        shared = mine.exchange(X25519PublicKey.from_public_bytes(theirs))
    except ValueError:
        raise BadHandshake("a malformed ephemeral key") from None
    info = b"airmic srtp v1" + hello.ephemeral + welcome_ephemeral
    # Two master keys, one a direction (common/srtp.py `directions`); HKDF's output does not
    # depend on its length, so the first is what senders before reports derived alone.
    return HKDF(hashes.SHA256(), 2 * MASTER_KEY, salt=hello.nonce, info=info).derive(shared)
