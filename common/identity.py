"""Each installation's long-term identity: an Ed25519 key pair made once and kept in the
config folder (readable by the user only). A pairing exchanges the public keys; each
stream's handshake is signed with them; the fingerprint is what people compare and what
DNS-SD advertises."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from airmic.common.config import write_private
from airmic.common.fingerprint import fingerprint

KEY_FILE = "identity.key"
RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


@dataclass(frozen=True)
class Identity:
    private: Ed25519PrivateKey

    @property
    def public(self) -> bytes:
        """The public key, 32 bytes."""
        return self.private.public_key().public_bytes(*RAW)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())


def load_identity(folder: Path) -> Identity:
    """This installation's identity, made now if there is none (or it is unreadable)."""
    path = folder / KEY_FILE
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, Ed25519PrivateKey):
            return Identity(key)
    except (OSError, ValueError):
        pass
    identity = Identity.generate()
    pem = identity.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)
    return identity


def verify(public: bytes, signature: bytes, data: bytes) -> bool:
    """True when `signature` over `data` is by the holder of `public`."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True
