"""Who may use the web page and publish a stream: the one place that decides.

For now a bearer token, carried by the page's URL (and so by its QR code) or, for WHIP
clients, by `Authorization: Bearer` (RFC 9725 section 4.5). It is made once and kept, so a
phone's bookmark keeps working after the receiver restarts; `--new-token` revokes it.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from aiohttp import web

from airmic.common.config import read_private, write_private

TOKEN_BYTES = 16


class Access:
    def __init__(self, token: str) -> None:
        self.token = token

    @classmethod
    def load(cls, path: Path, renew: bool = False) -> Access:
        """The token kept in `path`, or a new one (written there, readable by the user only)."""
        token = None if renew else _read(path)
        if not token:
            token = secrets.token_urlsafe(TOKEN_BYTES)
            write_private(path, f"{token}\n".encode())
        return cls(token)

    def allows(self, request: web.Request) -> bool:
        given = request.query.get("token", "")
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given = bearer.strip()
        # A header may hold any bytes (aiohttp keeps the undecodable ones as surrogates).
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.token.encode())


def _read(path: Path) -> str | None:
    try:
        return read_private(path).decode("utf-8", "replace").strip() or None
    except OSError:
        return None
