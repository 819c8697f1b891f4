"""The peers an installation has paired with: a JSON file in the config folder, readable
by the user only. The receiver keeps its senders, a sender its receivers; each by name,
with the public key of its identity, which is what is trusted (the name is for people)."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from airmic.common.config import write_private
from airmic.common.errors import UsageError
from airmic.common.fingerprint import fingerprint


@dataclass(frozen=True)
class Peer:
    name: str
    key: bytes  # its identity's public key
    paired: str  # when, ISO 8601
    seen: tuple[str, str, int] | None = None  # a receiver's last mDNS instance, address, port

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
            return [
                Peer(
                    e["name"],
                    base64.b64decode(e["key"]),
                    e["paired"],
                    tuple(e["seen"]) if e.get("seen") else None,  # type: ignore[arg-type]
                )
                for e in entries
            ]
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

    def saw(self, key: bytes, name: str, seen: tuple[str, str, int]) -> None:
        """A receiver found on the network: where (tried first next time), under the name it
        goes by now (if no other peer has it)."""
        peers = self.all()
        taken = {peer.name for peer in peers if peer.key != key}
        updated = [
            dataclasses.replace(p, name=p.name if name in taken else name, seen=seen)
            if p.key == key
            else p
            for p in peers
        ]
        if updated != peers:
            self._write(updated)

    def remove(self, name: str, what: str = "peer") -> Peer:
        """Unpair the peer named `name` (a `what`: "sender", "receiver"). Raises UsageError."""
        peers = self.all()
        gone = next((peer for peer in peers if peer.name == name), None)
        if gone is None:
            names = ", ".join(peer.name for peer in peers) or "none"
            raise UsageError(f"no paired {what} is named {name!r} (paired: {names})")
        self._write([peer for peer in peers if peer is not gone])
        return gone

    def table(self, what: str) -> Table:
        """The peers for a terminal: `what` heads the first column ("sender", "receiver")."""
        table = Table(what, "key fingerprint", "paired", box=None, pad_edge=False)
        for peer in self.all():
            table.add_row(peer.name, peer.fingerprint[:23] + "…", peer.paired.replace("T", " "))
        return table

    def _write(self, peers: list[Peer]) -> None:
        entries = [
            {"name": p.name, "key": base64.b64encode(p.key).decode(), "paired": p.paired}
            | ({"seen": list(p.seen)} if p.seen else {})
            for p in peers
        ]
        write_private(self.path, (json.dumps(entries, indent=2) + "\n").encode())
