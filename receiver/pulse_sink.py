"""An output into one PulseAudio sink (the virtual mic's feed), clocked by the server.

One libpulse playback stream (`airmic.receiver.libpulse`) and one thread: it pulls
every attached stream's next block, mixes them and writes the mix; the write
blocks while the server's buffer is full, so the server's clock paces the pulls. The
buffer is the output's margin (`airmic.common.margin`): two 5 ms blocks on a quiet machine,
a block more after each underrun, a block less after a calm spell, applied by resizing the
stream's buffer on the server (nothing queued is lost, so it is never heard). Each
underrun is the server's own (`PlaybackStream.underruns`), and its length is how far the
server's timeline (the time the queued audio ends, less the audio written) moved later
while the stream was dry; it is counted for every stream that was playing.

PortAudio reaches PulseAudio only through ALSA's pulse plugin, which costs about 25 ms from
capture to playback on this path where libpulse directly costs 12 (measured with
scripts/bench_mic.py's method): the virtual mic is fed this way.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from airmic.common.audio import RATE
from airmic.common.errors import DeviceError
from airmic.common.margin import Margin
from airmic.receiver.libpulse import PlaybackStream
from airmic.receiver.player import OutputThread, PacedClock, Pulled, mix

log = logging.getLogger(__name__)

SLACK = 0.001
"""Seconds of queue under which a stream is taken as run dry (the server's latency reports
wobble by a few tenths of a millisecond)."""


class PulseOutput(OutputThread):
    """Mixes the streams attached to it into the PulseAudio sink `device`."""

    def __init__(self, device: str, name: str, block: int) -> None:
        super().__init__(f"pulse:{device}")
        self.description = f"pulse:{device}"
        self.device = device
        self.name = name
        self.block = block
        self.fallback: PacedClock | None = None  # the streams' clock if the server goes
        # Not one block: a write of the whole buffer returns only once the server has played
        # it all, so the queue touched empty at every beat (gaps the timeline did not see).
        self.margin = Margin(least=2)
        self.failed: str | None = None
        self.gaps = 0
        self._stream: PlaybackStream | None = self._open()  # fails here if the sink is missing
        self._lock = threading.Lock()  # attach against failing over
        self._thread.start()

    def attach(self, pulled: Pulled) -> None:
        with self._lock:
            if self.failed is None:
                self._pending.append(pulled)
                self._wake.set()
                return
        if self.fallback is not None:  # failed since the stream opened: its files play on
            self.fallback.attach(pulled)
        else:
            pulled.retire()

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

    def _open(self) -> PlaybackStream:
        self._opened = self.margin.blocks
        # minreq in bytes, a quarter block: the server asks for audio as soon as it has room
        return PlaybackStream(self.device, self.name, RATE, self._size(), self.block)

    def _size(self) -> int:
        """The stream's buffer in bytes: the margin's blocks of float32."""
        return self.margin.blocks * self.block * 4

    def _run(self) -> None:
        players: list[Pulled] = []
        try:
            self._play(players)
        except DeviceError as exc:  # the server went away
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
        timeline, dry_for = _Timeline(), 0.0
        while not self._closed:
            players[:] = self._take(players)
            if not players:
                if timeline.started:  # idle: the server's underrun now is no one's gap
                    self._reopen()  # a stream left to run dry takes a burst when fed again
                    timeline, dry_for = _Timeline(), 0.0
                self._sleep()
                continue
            stream = self._stream
            assert stream is not None  # only this thread replaces it
            underruns = stream.underruns
            now = time.monotonic()
            blocks = [player.beat(self.block, now, timeline.plays_at(now)) for player in players]
            data = mix(blocks, self.block)
            if self._resize_due(now):  # nothing queued is lost: no step in the timeline
                self._opened = self.margin.blocks
                stream.resize(self._size())
            silence = 0
            if not timeline.started or (timeline.dry(now) and stream.latency() <= SLACK):
                # Started, or ran dry: the margin is filled with silence first, so that the
                # next pulls come at the server's pace, not in a burst that the streams'
                # jitter buffers could not serve.
                silence = (self._opened - 1) * self.block
                if silence:
                    stream.write(bytes(4 * silence))
            stream.write(np.asarray(data, dtype="<f4").tobytes())
            asked = time.monotonic()
            queued = stream.latency()
            answered = time.monotonic()
            # what the server still had to play when this write reached it
            self.margin.spare(queued * RATE / self.block - 1 - silence / self.block, now)
            lost = timeline.wrote(silence + self.block, queued, asked, answered)
            if stream.dry or stream.underruns > underruns:
                dry_for += lost  # the server ran dry: its timeline moved that much
            if stream.underruns > underruns:
                self.gaps += 1
                self.margin.underrun(now)
                log.debug("%s: ran dry %.1f ms; margin %d blocks", self.description,
                          dry_for * 1e3, self.margin.blocks)  # fmt: skip
                for player in players:
                    player.gap(max(dry_for, 0.0) + silence / RATE)
                dry_for = 0.0

    def _resize_due(self, now: float) -> bool:
        """Whether the stream's buffer should change to the margin's: it grew with an
        underrun, or a calm spell earned a smaller one."""
        if self.margin.due(now):
            self.margin.shrink(now)
        return self.margin.blocks != self._opened

    def _reopen(self) -> None:
        """A new stream: one left to run dry while idle would take a burst when fed again."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        self._stream = self._open()


class _Timeline:
    """Where a libpulse stream stands: what was written, and how much of the server's time
    went by with nothing to play. The server plays what it has one sample after the other,
    so the time at which sample 0 would have played, seen from the end of what is queued,
    moves later only by the time it ran dry."""

    def __init__(self) -> None:
        self.started = False
        self.written = 0  # samples
        self.empty_at = 0.0  # when the server's queue runs dry
        self._origin: float | None = None  # sample 0's time, gaps included

    def plays_at(self, now: float) -> float:
        """When a block pulled `now` will play."""
        return max(now, self.empty_at) if self.started else now

    def wrote(self, samples: int, latency: float, asked: float, answered: float) -> float:
        """`samples` went out, and the server, asked at `asked` and answering by `answered`,
        had `latency` seconds queued; the seconds it had nothing to play since the last
        write (give or take half of each of the two round trips)."""
        self.started = True
        self.written += samples
        # The server took its figure at some moment of the round trip: the middle is off by
        # at most half of it (about 0.03 ms; a millisecond now and then).
        self.empty_at = (asked + answered) / 2 + latency
        if not self.reported and latency <= 0:
            return 0.0  # no report from the server yet: a stale 0 is not a dry queue
        origin = self.empty_at - self.written / RATE
        lost = 0.0 if self._origin is None else origin - self._origin
        self._origin = origin
        return lost

    def dry(self, now: float) -> bool:
        """Whether the queue should have run dry by `now` (then the server is asked)."""
        return self.reported and self.empty_at <= now + SLACK

    @property
    def reported(self) -> bool:
        """Whether the server has reported this stream's queue since it started."""
        return self._origin is not None
