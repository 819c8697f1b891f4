"""The peers an installation has paired with: a JSON file in the config folder, readable
by the user only. The receiver keeps its senders, a sender its receivers; each by name,
with the public key of its identity, which is what is trusted (the name is for people)."""

from __future__ import annotations

import base64
import datetime
import json
from dataclasses import dataclass
from pathlib import Path

from airmic.common.config import write_private
from airmic.common.errors import UsageError
from airmic.common.fingerprint import fingerprint


@dataclass(frozen=True)
class Peer:
    name: str
    key: bytes  # its identity's public key
    paired: str  # when, ISO 8601

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)


class Peers:
    """A file of peers; read afresh on each look, so a change by another process (an
    `unpair`, a pairing) takes effect at once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[Peer]:
        try:
            entries = json.loads(self.path.read_text())
            return [Peer(e["name"], base64.b64decode(e["key"]), e["paired"]) for e in entries]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(
                f"{self.path} is unreadable ({exc!r}): remove it and pair again"
            ) from None

    def stamp(self) -> int | None:
        """Changes whenever the file does (its modification time); None: no file."""
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None

    def find(self, key: bytes) -> Peer | None:
        return next((peer for peer in self.all() if peer.key == key), None)

    def add(self, name: str, key: bytes) -> Peer:
        """Pair with `key` as `name`: a peer paired again keeps one entry, under its new
        name; another peer's name is made unique with a number."""
        others = [peer for peer in self.all() if peer.key != key]
        taken = {peer.name for peer in others}
        unique = next(
            candidate
            for candidate in (name, *(f"{name} ({n})" for n in range(2, 1000)))
            if candidate not in taken
        )
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        peer = Peer(unique, key, now)
        self._write([*others, peer])
        return peer

    def remove(self, name: str) -> Peer | None:
        peers = self.all()
        gone = next((peer for peer in peers if peer.name == name), None)
        if gone is not None:
            self._write([peer for peer in peers if peer is not gone])
        return gone

    def _write(self, peers: list[Peer]) -> None:
        entries = [
            {"name": p.name, "key": base64.b64encode(p.key).decode(), "paired": p.paired}
            for p in peers
        ]
        write_private(self.path, (json.dumps(entries, indent=2) + "\n").encode())
