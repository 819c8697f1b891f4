"""An output into one PulseAudio sink (the virtual mic's feed), clocked by the server.

One libpulse playback stream (the simple API, through pasimple) and one thread: it pulls
every attached stream's next block, mixes them and writes the mix; `pa_simple_write`
blocks while the server's buffer is full, so the server's clock paces the pulls. The
buffer is the output's margin (`airmic.common.margin`): one 5 ms block on a quiet machine,
a block more after each underrun, reopened smaller after a calm spell. An underrun is
seen before each write (the server reports no audio queued) and counted for every stream
that was playing, with its length.

PortAudio reaches PulseAudio only through ALSA's pulse plugin, which costs about 25 ms from
capture to playback on this path where libpulse directly costs 12 (measured with
scripts/bench_mic.py's method): the virtual mic is fed this way.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

import numpy as np

from airmic.common.audio import RATE, level_dbfs
from airmic.common.errors import DeviceError
from airmic.common.margin import Margin
from airmic.receiver.player import PacedClock, Pulled, mix, retire_stopped

log = logging.getLogger(__name__)

QUIET_DB = -50.0
"""A block this quiet may be cut short by a reopen without being heard."""


class PulseOutput:
    """Mixes the streams attached to it into the PulseAudio sink `device`."""

    def __init__(self, device: str, name: str, block: int) -> None:
        self.description = f"pulse:{device}"
        self.device = device
        self.name = name
        self.block = block
        self.fallback: PacedClock | None = None  # the streams' clock if the server goes
        self.margin = Margin()
        self.failed: str | None = None
        self.gaps = 0
        self._stream = self._open()  # fails here, at start, if the sink is missing
        self._pending: collections.deque[Pulled] = collections.deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # attach against failing over
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=self.description, daemon=True)
        self._thread.start()

    def attach(self, pulled: Pulled) -> None:
        with self._lock:
            if self.failed is not None:
                raise DeviceError(f"{self.description}: {self.failed}")
            self._pending.append(pulled)
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=2.0)
        if self.fallback is not None:
            self.fallback.close()
        if self._thread.is_alive():  # freeing the stream under its write would crash libpulse
            log.warning("%s: the PulseAudio server stopped taking audio", self.description)
            return
        if self._stream is not None:
            self._stream.close()
        if self.gaps:
            log.info("%s: %d underruns", self.description, self.gaps)

    def _open(self) -> Any:
        import pasimple

        size = self.margin.blocks * self.block * 4  # float32
        try:
            return pasimple.PaSimple(
                pasimple.PA_STREAM_PLAYBACK,
                pasimple.PA_SAMPLE_FLOAT32LE,
                1,
                RATE,
                app_name="airmic-receive",
                stream_name=self.name,
                device_name=self.device,
                tlength=size,
                prebuf=size,
                minreq=self.block * 2,
            )
        except pasimple.PaSimpleError as exc:
            raise DeviceError(f"cannot play into PulseAudio sink {self.device!r}: {exc}") from None

    def _run(self) -> None:
        import pasimple

        players: list[Pulled] = []
        try:
            self._play(players)
        except (pasimple.PaSimpleError, DeviceError) as exc:  # the server went away
            log.warning("%s: playback stopped: %s", self.description, exc)
            self._stream = None
            if not self._closed:  # the streams' other sinks (files) play on
                self.fallback = PacedClock(self.block)
            with self._lock:
                self.failed = str(exc)
        for player in players + list(self._pending):
            if self.fallback is None:
                player.retire()
            else:
                self.fallback.attach(player)

    def _play(self, players: list[Pulled]) -> None:
        """Pull, mix, write, until closed: the server's clock paces each write."""
        empty_at: float | None = None  # when the server's queue runs dry; None: not started
        while not self._closed:
            while self._pending:
                players.append(self._pending.popleft())
            players[:] = retire_stopped(players)
            if not players:
                empty_at = None  # idle: the server's underrun now is no one's gap
                self._wake.wait()
                self._wake.clear()
                continue
            now = time.monotonic()
            if empty_at is not None and self._stream.get_latency() == 0:
                gap = max(now - empty_at, self.block / RATE)
                self.gaps += 1
                self.margin.underrun(now)
                for player in players:
                    player.gap(gap)
                self._reopen()
            blocks = [player.beat(self.block, now) for player in players]
            data = mix(blocks, self.block)
            if self.margin.due(now) and level_dbfs(data) < QUIET_DB:
                self.margin.shrink(now)  # a calm spell, and a quiet block: unheard
                self._reopen()
            self._stream.write(np.asarray(data, dtype="<f4").tobytes())
            empty_at = time.monotonic() + self._stream.get_latency() / 1e6

    def _reopen(self) -> None:
        """A new stream with the margin's buffer (pa_simple cannot resize one)."""
        stream, self._stream = self._stream, None
        stream.close()
        self._stream = self._open()
