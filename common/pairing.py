"""Pairing: a 6-digit code, shown by the receiver and typed on the sender, becomes trust in
each other's identity keys.

SPAKE2 (the `spake2` package) turns the code into a shared key: someone listening learns
nothing of the code, someone in between gets one guess per attempt. The identity keys then
travel with MACs under that key, so no one can swap them.

    sender                                    receiver (window open, code C)
    SPAKE2_A(C) message, its name       ──►
                                        ◄──   SPAKE2_B(C) message, its name, its key
    its key, MAC("sender", messages,    ──►   checks the MAC: a wrong code fails here
      both keys)                                and counts; else keeps the sender
                                        ◄──   MAC("receiver", messages, both keys)
    checks it, keeps the receiver

The sender proves the code first (RFC 9382's order is free): an attempt that stops before
its MAC has seen nothing made with the shared key, so it has tested no code, and only the
wrong MACs count. Those are limited per source address and in all, so that no one device
can close the user's window, and the window still allows only a few guesses in a million.

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
MAX_FAILURES = 10
"""Wrong codes a window takes in all (10 guesses in a million); then it closes."""
FAILURES_PER_ADDRESS = 3
"""Wrong codes from one address; then that address is refused until a new window."""
MIN_INTERVAL = 1.0
"""Seconds between one address's attempts (more often: refused)."""
PENDING = 16
"""Attempts begun and not finished that a window keeps (a new one drops the oldest)."""
ATTEMPT_SECONDS = 30.0
"""How long an attempt may take between its two messages."""
NO_WINDOW = "no pairing window is open: run airmic-receive pair (again)"
"""Whether none was opened or it closed: one answer, so that no one learns which."""
WRONG_CODE = "wrong code: check the 6 digits airmic-receive pair shows, and try again"
SIDES = {"idA": b"airmic sender", "idB": b"airmic receiver"}
KEY_BYTES = 32
NAME_CHARS = 40


class PairingError(AirmicError):
    """A pairing that cannot go on; the message says why, for the user on either side."""


class WrongCode(PairingError):
    """The sender's MAC does not check out: it used another code (one guess, counted)."""


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

    def finish(self, reply: Any) -> dict[str, str]:
        """The sender's proof, for the receiver to check. Raises PairingError for a
        malformed reply."""
        theirs, key, name = _field(reply, "spake"), _field(reply, "key", KEY_BYTES), _name(reply)
        try:
            shared = self._spake.finish(theirs)
        except Exception:  # spake2 raises SPAKEError, ValueError, NotOnCurve... for bad input
            raise PairingError("malformed pairing message (its SPAKE2 part)") from None
        mine = self._identity.public
        self._receiver = Paired(name, key)
        self._expected = _mac(shared, "receiver", self._mine, theirs, key, mine)
        proof = _mac(shared, "sender", self._mine, theirs, mine, key)
        return {"key": _b64(mine), "mac": _b64(proof)}

    def confirm(self, answer: Any) -> Paired:
        """The receiver, once its own proof checks out. Raises PairingError."""
        if not hmac.compare_digest(_field(answer, "mac", 32), self._expected):
            raise PairingError("the receiver's proof does not check out (someone in between?)")
        return self._receiver


class ReceiverPairing:
    """The receiver's side of one attempt, begun from `source` at `began`."""

    def __init__(
        self, code: str, identity: Identity, name: str, start: Any, source: str, began: float
    ) -> None:
        self.source, self.began = source, began
        self._sender_name = _name(start)
        self._theirs = _field(start, "spake")
        self._spake = SPAKE2_B(code.encode(), **SIDES)
        self._mine = self._spake.start()
        try:
            self._shared = self._spake.finish(self._theirs)
        except Exception:  # spake2 raises SPAKEError, ValueError, NotOnCurve... for bad input
            raise PairingError("malformed pairing message (its SPAKE2 part)") from None
        self._key = identity.public
        self.reply = {"name": name, "spake": _b64(self._mine), "key": _b64(self._key)}

    def confirm(self, finish: Any) -> tuple[Paired, dict[str, str]]:
        """The sender, if it proved the code, and the receiver's proof for it. Raises
        WrongCode, or PairingError for a malformed message."""
        key, mac = _field(finish, "key", KEY_BYTES), _field(finish, "mac", 32)
        expected = _mac(self._shared, "sender", self._theirs, self._mine, key, self._key)
        if not hmac.compare_digest(mac, expected):
            raise WrongCode(WRONG_CODE)
        proof = _mac(self._shared, "receiver", self._theirs, self._mine, self._key, key)
        return Paired(self._sender_name, key), {"mac": _b64(proof)}


@dataclass
class PairingWindow:
    """The receiver's open window: its code, its deadline, the attempts under way and the
    wrong codes (in all, and by source address)."""

    code: str
    expires: float  # on the clock of `now`
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # by address: at most MAX_FAILURES
    last: dict[str, float] = field(default_factory=dict)  # each address's last attempt
    attempts: dict[str, ReceiverPairing] = field(default_factory=dict)

    def open(self, now: float) -> bool:
        """True while attempts are taken."""
        return now < self.expires and self.failed < MAX_FAILURES

    def left(self, source: str) -> int:
        """Wrong codes `source` may still send before it is refused."""
        mine = FAILURES_PER_ADDRESS - self.failures.get(source, 0)
        return max(0, min(mine, MAX_FAILURES - self.failed))

    def begin(
        self, identity: Identity, name: str, start: Any, source: str, now: float
    ) -> tuple[str, dict]:
        """A new attempt from `source` (an address): its id and the reply. Raises
        PairingError (closed, too soon, refused address, malformed). Nothing here counts
        against the window: a beginning tests no code."""
        if not self.open(now):
            raise PairingError(NO_WINDOW)
        if not self.left(source):
            raise PairingError(
                f"{FAILURES_PER_ADDRESS} wrong codes from this address: "
                "a new code takes airmic-receive pair (again)"
            )
        last = self.last.get(source)
        if last is not None and now - last < MIN_INTERVAL:
            raise PairingError("too many attempts: wait a second")
        attempt = ReceiverPairing(self.code, identity, name, start, source, now)
        self.last = {a: t for a, t in self.last.items() if now - t < MIN_INTERVAL}
        self.last[source] = now
        self.attempts = {
            key: a for key, a in self.attempts.items() if now - a.began < ATTEMPT_SECONDS
        }
        while len(self.attempts) >= PENDING:
            del self.attempts[next(iter(self.attempts))]  # the oldest
        attempt_id = secrets.token_urlsafe(12)
        self.attempts[attempt_id] = attempt
        return attempt_id, attempt.reply

    def finish(self, attempt_id: str, message: Any, now: float) -> tuple[Paired, dict[str, str]]:
        """The sender of a completed attempt, and the receiver's proof to answer it with.
        Raises WrongCode (counted against the attempt's address and the window) or
        PairingError."""
        attempt = self.attempts.pop(attempt_id, None)
        if attempt is None or now - attempt.began >= ATTEMPT_SECONDS or not self.open(now):
            raise PairingError("no such pairing attempt (or it expired)")
        try:
            return attempt.confirm(message)
        except WrongCode:
            self.failed += 1
            self.failures[attempt.source] = self.failures.get(attempt.source, 0) + 1
            raise
