"""Fingerprints as people compare them: SHA-256, upper-case hex pairs (AB:CD:...), as
browsers show a certificate's."""

from __future__ import annotations

import hashlib


def fingerprint(data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def same_fingerprint(a: str, b: str) -> bool:
    """True when `a` and `b` name the same digest, however written (case, colons, spaces)."""

    def plain(text: str) -> str:
        return "".join(c for c in text.upper() if c in "0123456789ABCDEF")

    return plain(a) == plain(b)
