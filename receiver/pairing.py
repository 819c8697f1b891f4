"""The receiver's side of pairing: `airmic-receive pair` opens a window (a code and its
deadline, in a file of the config folder); the running receiver answers the attempts on
its web server (POST /pair, POST /pair/ID), keeps the senders that pair, and writes the
outcome back for the `pair` command to show.

A file, rather than a socket between the two processes: it works whatever address the
receiver listens on, and the folder's rights already say who may open a window.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from airmic.common.config import write_private
from airmic.common.identity import Identity
from airmic.common.pairing import MAX_ATTEMPTS, PairingError, PairingWindow
from airmic.common.peers import Peer, Peers

log = logging.getLogger(__name__)

WINDOW_FILE = "pairing-window.json"
SENDERS_FILE = "paired-senders.json"
PAGE_LINK = "page-link"
"""The running receiver's phone page (with its token), for `pair` to show to phones."""


def senders(folder: Path) -> Peers:
    return Peers(folder / SENDERS_FILE)


def open_window(folder: Path, code: str, seconds: float) -> None:
    """What `airmic-receive pair` does: the running receiver takes it from here."""
    write_private(
        folder / WINDOW_FILE, json.dumps({"code": code, "expires": time.time() + seconds}).encode()
    )


def read_window(folder: Path) -> dict[str, Any] | None:
    try:
        window = json.loads((folder / WINDOW_FILE).read_text())
    except (OSError, ValueError):
        return None
    return window if isinstance(window, dict) else None


def close_window(folder: Path) -> None:
    (folder / WINDOW_FILE).unlink(missing_ok=True)


class PairingDesk:
    """Answers pairing attempts while a window is open."""

    def __init__(self, folder: Path, identity: Identity, name: str) -> None:
        self.folder = folder
        self.identity = identity
        self.name = name
        self.senders = senders(folder)
        self._window: PairingWindow | None = None
        self._opened: tuple[str, float] | None = None  # the file's code and deadline

    def begin(self, start: Any) -> tuple[str, dict[str, str]]:
        """A new attempt: its id and the reply. Raises PairingError."""
        return self._current().begin(self.identity, self.name, start, time.time())

    def finish(self, attempt_id: str, message: Any) -> Peer:
        """The sender that proved the code, now paired. Raises PairingError."""
        window = self._current()
        try:
            paired = window.finish(attempt_id, message, time.time())
        except PairingError as exc:
            left = MAX_ATTEMPTS - window.started
            log.warning("pairing: %s (%d attempts left)", exc, left)
            if window.over(time.time()):
                self._outcome(f"closed after {window.failed} failed attempts")
            raise
        peer = self.senders.add(paired.name, paired.key)
        log.info("paired with sender %r (its key %s...)", peer.name, peer.fingerprint[:23])
        self._outcome(f"paired with {peer.name}")
        return peer

    def _current(self) -> PairingWindow:
        opened = read_window(self.folder)
        if opened is None or "outcome" in opened:
            raise PairingError("no pairing window is open: run airmic-receive pair")
        try:
            key = (str(opened["code"]), float(opened["expires"]))
        except (KeyError, TypeError, ValueError):
            raise PairingError("no pairing window is open: run airmic-receive pair") from None
        if key != self._opened or self._window is None:
            self._window, self._opened = PairingWindow(*key), key
        return self._window

    def _outcome(self, text: str) -> None:
        """Tell the `pair` command, and close the window."""
        if self._opened is not None:
            code, expires = self._opened
            record = {"code": code, "expires": expires, "outcome": text, "pid": os.getpid()}
            write_private(self.folder / WINDOW_FILE, json.dumps(record).encode())
        self._window = None
