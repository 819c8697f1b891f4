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

from airmic.common.config import read_private, write_private
from airmic.common.errors import UsageError
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
    """This installation's identity, made now if there is none. A damaged one is never
    replaced behind the user's back: every pairing depends on it. Raises UsageError."""
    path = folder / KEY_FILE
    try:
        data = read_private(path)
    except FileNotFoundError:
        return _new_identity(path)
    except OSError as exc:
        raise UsageError(f"cannot read this installation's identity, {path}: {exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError:
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(
            f"{path} is damaged. It is this installation's identity, which every pairing "
            "depends on: restore it from a backup, or move it away to make a new one (then "
            "pair again)"
        )
    return Identity(key)


def _new_identity(path: Path) -> Identity:
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
