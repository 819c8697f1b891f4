"""The receiver's side of pairing: `airmic-receive pair` opens a window (a code and its
deadline, in a file of the config folder); the running receiver answers the attempts on
its web server (POST /pair, POST /pair/ID), keeps the senders that pair, and writes the
outcome back for the `pair` command to show.

A file, rather than a socket between the two processes: it works whatever address the
receiver listens on, and the folder's rights already say who may open a window.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from airmic.common.config import write_private
from airmic.common.identity import Identity
from airmic.common.pairing import (
    NO_WINDOW,
    PairingError,
    PairingWindow,
    WrongCode,
    check_start,
)
from airmic.common.peers import Peers

log = logging.getLogger(__name__)

WINDOW_FILE = "pairing-window.json"
SENDERS_FILE = "paired-senders.json"
ATTEMPTS_SHOWN = 20
"""Attempts the window file keeps for the `pair` command to show (a flood stays small)."""
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
        self._attempts: list[list[str]] = []  # [source, result], for the `pair` command
        self._attempted = 0  # in all, of which the last ATTEMPTS_SHOWN are kept

    def begin(self, start: Any, source: str = "?") -> tuple[str, dict[str, str]]:
        """A new attempt from `source` (an address): its id and the reply. Raises
        PairingError."""
        try:
            check_start(start)  # junk: the same answer with a window open or not
        except PairingError as exc:
            with contextlib.suppress(PairingError):
                self._current()  # a window is open: its `pair` command shows the attempt
                self._attempt(source, f"refused: {exc}")
            raise
        window = self._current()
        try:
            began = window.begin(self.identity, self.name, start, source, time.time())
        except PairingError as exc:
            self._attempt(source, f"refused: {exc}")
            raise
        self._attempt(source, "an attempt")
        return began

    def finish(self, attempt_id: str, message: Any, source: str = "?") -> dict[str, str]:
        """The receiver's proof, for a sender that proved the code, now paired. Raises
        PairingError."""
        window = self._current()
        try:
            paired, proof = window.finish(attempt_id, message, time.time())
        except WrongCode:
            left = f"{window.left(source)} more from this address, {window.failed} in all"
            log.warning("pairing: a wrong code from %s (%s)", source, left)
            self._attempt(source, f"wrong code ({left})")
            if not window.open(time.time()):
                self._outcome(f"closed after {window.failed} wrong codes")
            raise
        except PairingError as exc:
            self._attempt(source, f"refused: {exc}")
            raise
        peer = self.senders.add(paired.name, paired.key)
        log.info("paired with sender %r (its key %s…)", peer.name, peer.fingerprint[:23])
        self._attempt(source, f"paired with {peer.name}")
        self._outcome(f"paired with {peer.name}")
        return {"name": peer.name, **proof}

    def _attempt(self, source: str, result: str) -> None:
        """Tell the `pair` command of an attempt (it shows each), bounded."""
        if self._opened is None or self._window is None:
            return
        self._attempts = [*self._attempts, [source, result]][-ATTEMPTS_SHOWN:]
        self._attempted += 1
        self._write({})

    def _write(self, extra: dict[str, Any]) -> None:
        assert self._opened is not None
        code, expires = self._opened
        record = {"code": code, "expires": expires, "attempts": self._attempts,
                  "attempted": self._attempted, **extra}  # fmt: skip
        write_private(self.folder / WINDOW_FILE, json.dumps(record).encode())

    def _current(self) -> PairingWindow:
        opened = read_window(self.folder)
        if opened is None or "outcome" in opened:
            raise PairingError(NO_WINDOW)
        try:
            key = (str(opened["code"]), float(opened["expires"]))
        except (KeyError, TypeError, ValueError):
            raise PairingError(NO_WINDOW) from None
        if key != self._opened or self._window is None:
            self._window, self._opened = PairingWindow(*key), key
            self._attempts, self._attempted = [], 0
        return self._window

    def _outcome(self, text: str) -> None:
        """Tell the `pair` command, and close the window."""
        if self._opened is not None:
            self._write({"outcome": text, "pid": os.getpid()})
        self._window = None
