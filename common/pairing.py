"""Pairing: a 6-digit code, shown by the receiver and typed on the sender, becomes trust in
each other's identity keys.

SPAKE2 (the `spake2` package) turns the code into a shared key: someone listening learns
nothing of the code, someone in between gets one guess per attempt (and the receiver allows
a few). The identity keys then travel with MACs under that key, so no one can swap them.

    sender                                    receiver (window open, code C)
    SPAKE2_A(C) message, its name       ──►
                                        ◄──   SPAKE2_B(C) message, its name, key,
                                              MAC("receiver", messages, its key)
    checks the MAC: a wrong code fails here
    its key, MAC("sender", ..., both keys) ──►  checks it, keeps the sender
    keeps the receiver

Sans-I/O: messages are dicts (JSON over the receiver's HTTPS); `now` is given.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

from spake2 import SPAKE2_A, SPAKE2_B

from airmic.common.errors import AirmicError
from airmic.common.identity import Identity

CODE_DIGITS = 6
WINDOW_SECONDS = 300.0
"""How long a code is valid."""
MAX_ATTEMPTS = 3
"""Attempts a window allows; one more and it closes."""
MIN_INTERVAL = 1.0
"""Seconds between attempts (more often: refused)."""
NO_WINDOW = "no pairing window is open: run airmic-receive pair (again)"
"""Whether none was opened or it closed: one answer, so that no one learns which."""
SIDES = {"idA": b"airmic sender", "idB": b"airmic receiver"}
KEY_BYTES = 32
NAME_CHARS = 40


class PairingError(AirmicError):
    """A pairing that cannot go on; the message says why, for the user on either side."""


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def normalize_code(text: str) -> str:
    """The code as typed ('123 456', '123-456') -> '123456'. Raises PairingError."""
    code = "".join(c for c in text if c.isdigit())
    if len(code) != CODE_DIGITS or len(code) != len(text.replace(" ", "").replace("-", "")):
        raise PairingError(f"a pairing code is {CODE_DIGITS} digits, as airmic-receive shows")
    return code


@dataclass(frozen=True)
class Paired:
    """The other side, as a completed pairing tells it."""

    name: str
    key: bytes


def _mac(key: bytes, label: str, *parts: bytes) -> bytes:
    message = label.encode() + b"".join(len(p).to_bytes(2, "big") + p for p in parts)
    return hmac.new(key, message, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _field(message: Any, name: str, size: int | None = None) -> bytes:
    """A base64 field of a message, checked. Raises PairingError."""
    try:
        value = base64.b64decode(message[name], validate=True)
    except (KeyError, TypeError, binascii.Error, ValueError):
        raise PairingError(f"malformed pairing message (its {name!r})") from None
    if (size is not None and len(value) != size) or len(value) > 1024:
        raise PairingError(f"malformed pairing message (its {name!r} is {len(value)} bytes)")
    return value


def _name(message: Any) -> str:
    name = message.get("name") if isinstance(message, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise PairingError("malformed pairing message (no name)")
    return "".join(c for c in name if c.isprintable())[:NAME_CHARS].strip() or "unnamed"


def check_start(start: Any) -> None:
    """That an attempt's first message has its parts (raises PairingError): asked before
    anything else, so that junk gets one answer whether a window is open or not."""
    _name(start)
    _field(start, "spake")


class SenderPairing:
    """The sender's side of one attempt."""

    def __init__(self, code: str, identity: Identity, name: str) -> None:
        self._spake = SPAKE2_A(code.encode(), **SIDES)
        self._identity = identity
        self._name = name
        self._mine = self._spake.start()

    def start(self) -> dict[str, str]:
        return {"name": self._name, "spake": _b64(self._mine)}

    def finish(self, reply: Any) -> tuple[dict[str, str], Paired | None]:
        """The last message, and the receiver it paired with; None with a wrong code (the
        message goes to the receiver all the same, so that it counts the failure at once).
        Raises PairingError for a malformed reply."""
        theirs, key = _field(reply, "spake"), _field(reply, "key", KEY_BYTES)
        mac, name = _field(reply, "mac", 32), _name(reply)
        try:
            shared = self._spake.finish(theirs)
        except Exception:  # spake2 raises SPAKEError, ValueError, NotOnCurve... for bad input
            raise PairingError("malformed pairing message (its SPAKE2 part)") from None
        mine = self._identity.public
        proof = _mac(shared, "sender", self._mine, theirs, mine, key)
        right = hmac.compare_digest(mac, _mac(shared, "receiver", self._mine, theirs, key))
        return {"key": _b64(mine), "mac": _b64(proof)}, Paired(name, key) if right else None


class ReceiverPairing:
    """The receiver's side of one attempt."""

    def __init__(self, code: str, identity: Identity, name: str, start: Any) -> None:
        self._sender_name = _name(start)
        self._theirs = _field(start, "spake")
        self._spake = SPAKE2_B(code.encode(), **SIDES)
        self._mine = self._spake.start()
        try:
            self._shared = self._spake.finish(self._theirs)
        except Exception:  # spake2 raises SPAKEError, ValueError, NotOnCurve... for bad input
            raise PairingError("malformed pairing message (its SPAKE2 part)") from None
        self._key = identity.public
        mac = _mac(self._shared, "receiver", self._theirs, self._mine, self._key)
        self.reply = {"name": name, "spake": _b64(self._mine), "key": _b64(self._key),
                      "mac": _b64(mac)}  # fmt: skip

    def confirm(self, finish: Any) -> Paired:
        """The sender, if it proved the code. Raises PairingError."""
        key, mac = _field(finish, "key", KEY_BYTES), _field(finish, "mac", 32)
        expected = _mac(self._shared, "sender", self._theirs, self._mine, key, self._key)
        if not hmac.compare_digest(mac, expected):
            raise PairingError("wrong code")
        return Paired(self._sender_name, key)


@dataclass
class PairingWindow:
    """The receiver's open window: its code, its deadline, the attempts made."""

    code: str
    expires: float  # on the clock of `now`
    started: int = 0
    failed: int = 0
    last_attempt: float | None = None
    attempts: dict[str, ReceiverPairing] = field(default_factory=dict)

    def open(self, now: float) -> bool:
        """True while new attempts are taken."""
        return now < self.expires and self.started < MAX_ATTEMPTS

    def over(self, now: float) -> bool:
        """True once nothing more can come of it: expired, or every attempt used and none
        left to finish."""
        return now >= self.expires or (self.started >= MAX_ATTEMPTS and not self.attempts)

    def begin(self, identity: Identity, name: str, start: Any, now: float) -> tuple[str, dict]:
        """A new attempt: its id and the reply. Raises PairingError (closed, too soon,
        malformed); every well-formed attempt counts (each is one guess at the code), so a
        few wrong codes close the window; malformed ones do not, so junk cannot close it."""
        if not self.open(now):
            raise PairingError(NO_WINDOW)
        if self.last_attempt is not None and now - self.last_attempt < MIN_INTERVAL:
            raise PairingError("too many attempts: wait a second")
        attempt = ReceiverPairing(self.code, identity, name, start)
        self.last_attempt = now
        self.started += 1
        attempt_id = secrets.token_urlsafe(12)
        self.attempts[attempt_id] = attempt
        return attempt_id, attempt.reply

    def finish(self, attempt_id: str, message: Any, now: float) -> Paired:
        """The sender of a completed attempt. Raises PairingError."""
        attempt = self.attempts.pop(attempt_id, None)
        if attempt is None or now >= self.expires:
            raise PairingError("no such pairing attempt (or it expired)")
        try:
            return attempt.confirm(message)
        except PairingError:
            self.failed += 1
            raise
