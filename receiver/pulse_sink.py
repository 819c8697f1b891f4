"""Outputs into PulseAudio sinks (the virtual mics' feeds), clocked by the server.

One thread and one connection to the server (`PulseWriter`) write every mic's libpulse
playback stream (`airmic.receiver.libpulse`), however many rooms there are: the thread
sleeps in the connection's poll until the server asks one of them for audio (or answers
it), pulls that output's attached streams' next block, mixes them, writes the mix and asks
the server where the stream stands; the server's clock paces each mic. (A thread per mic,
blocked in its own write, cost a GIL hand-over at every block of every mic: at 16 rooms the
threads queued for the interpreter's lock, the UDP thread among them, which fell seconds
behind and the kernel dropped packets.)

Each output's buffer is its margin (`airmic.common.margin`): two 5 ms blocks on a quiet
machine, a block more after each underrun, a block less after a calm spell, applied by
resizing the stream's buffer on the server (nothing queued is lost, so it is never heard).
Each underrun is the server's own (`PlaybackStream.underruns`), and its length is how far
the server's timeline (the time the queued audio ends, less the audio written) moved later
while the stream was dry; it is counted for every stream that was playing.

PortAudio reaches PulseAudio only through ALSA's pulse plugin, which costs about 25 ms from
capture to playback on this path where libpulse directly costs 12 (measured with
scripts/bench_mic.py's method): the virtual mic is fed this way.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from airmic.common.audio import RATE
from airmic.common.errors import DeviceError
from airmic.common.margin import Margin
from airmic.receiver.libpulse import Connection, PlaybackStream
from airmic.receiver.player import PacedClock, Pulled, mix, retire_stopped

log = logging.getLogger(__name__)

OPEN_TIMEOUT = 5.0
"""Seconds a new output waits for the server to take its stream."""


class PulseWriter:
    """The thread and the server connection that write every `PulseOutput` made by `open`.
    Made at once (a DeviceError if no server answers); when the connection breaks (the
    server went away), every output fails over and `failed` says why: a new writer is then
    needed (`PulseWriters`)."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.failed: str | None = None
        self._connection = Connection()
        self._outputs: list[PulseOutput] = []
        self._calls: collections.deque[Callable[[], None]] = collections.deque()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="pulse writer", daemon=True)
        self._thread.start()

    def open(self, device: str, name: str) -> PulseOutput:
        """An output into the sink `device`, its stream ready (a DeviceError if the sink is
        missing, or the server put the stream on another device)."""
        output = PulseOutput(self, device, name)
        self.call(output.start)
        if not output.started.wait(OPEN_TIMEOUT):
            output.close()
            raise DeviceError(f"the PulseAudio server did not open a stream on {device!r}")
        if output.failed is not None:
            output.close()
            raise DeviceError(output.failed)
        return output

    def call(self, function: Callable[[], None]) -> None:
        """Run `function` on the writer's thread (any thread)."""
        self._calls.append(function)
        self._connection.wakeup()

    def wake(self) -> None:
        """Have the writer look at the outputs touched (any thread)."""
        self._connection.wakeup()

    @property
    def alive(self) -> bool:
        """Its connection still stands (a plain read of the context's state: any thread)."""
        return self.failed is None and not self._connection.broken

    def close(self) -> None:
        self._closed = True
        self._connection.wakeup()
        self._thread.join(timeout=2.0)
        if self._thread.is_alive():  # freeing the connection under its poll would crash
            log.warning("the PulseAudio server stopped taking audio")
            return
        self._connection.close()

    def _run(self) -> None:
        outputs = self._outputs
        try:
            while not self._closed:
                while self._calls:
                    self._calls.popleft()()
                for output in list(outputs):
                    if output.touched:
                        output.step()
                if self._connection.broken:
                    raise DeviceError(f"the connection broke: {self._connection.error()}")
                self._connection.iterate(busy=self._busy)
            for output in list(outputs):
                output.stop()
        except DeviceError as exc:  # the server went away
            self.failed = str(exc)
            log.warning("PulseAudio playback stopped: %s", exc)
            for output in list(outputs):
                output.fail(str(exc), fall_back=not self._closed)
        while self._calls:  # a close that came with the failure: its caller waits
            self._calls.popleft()()

    def _busy(self) -> bool:
        """Whether anything came for the writer since it last looked."""
        return self._closed or bool(self._calls) or any(o.touched for o in self._outputs)


class PulseWriters:
    """The live writer, made anew after the last one's server went away (any thread: each
    mic's watcher makes its mic's output again after a server restart)."""

    def __init__(self, block: int) -> None:
        self.block = block
        self._writer: PulseWriter | None = None
        self._broken: list[PulseWriter] = []
        self._lock = threading.Lock()

    def open(self, device: str, name: str) -> PulseOutput:
        with self._lock:
            writer = self._writer
            if writer is None or not writer.alive:
                if writer is not None:
                    self._broken.append(writer)
                writer = self._writer = PulseWriter(self.block)
        return writer.open(device, name)

    def close(self) -> None:
        for writer in [*self._broken, *([self._writer] if self._writer else [])]:
            writer.close()


class PulseOutput:
    """Mixes the streams attached to it into the PulseAudio sink `device`, on its writer's
    thread: the `Output` the virtual mic hands to streams."""

    def __init__(self, writer: PulseWriter, device: str, name: str) -> None:
        self.description = f"pulse:{device}"
        self.device = device
        self.name = name
        self.block = writer.block
        self.fallback: PacedClock | None = None  # the streams' clock if the server goes
        # Not one block: a write of the whole buffer returns only once the server has played
        # it all, so the queue touched empty at every beat (gaps the timeline did not see).
        self.margin = Margin(least=2)
        self._opened = self.margin.blocks  # the buffer the server was last asked for
        self.failed: str | None = None
        self.gaps = 0
        self.started = threading.Event()  # its first stream is ready, or it failed
        self.touched = False  # the server called about its stream: the writer looks
        self._writer = writer
        self._stream: PlaybackStream | None = None
        self._pending: collections.deque[Pulled] = collections.deque()
        self._players: list[Pulled] = []
        self._lock = threading.Lock()  # attach against failing over
        self._closed = threading.Event()
        self._timeline = _Timeline()
        self._dry_for = 0.0
        self._asked = False  # a timing report is on its way
        self._unreported = 0  # samples written since the last report (silence included)
        self._silence = 0  # of which silence
        self._wrote_at = 0.0  # the first write since the last report
        self._underruns = 0  # the stream's, at the last report
        self._idle = False  # no stream plays: what was queued plays out, then it runs dry
        self._resync = False  # the next report's underruns are the idle stream's

    def attach(self, pulled: Pulled) -> None:
        with self._lock:
            if self.failed is None:
                self._pending.append(pulled)
                self.touched = True
                self._writer.wake()
                return
        if self.fallback is not None:  # failed since the stream opened: its files play on
            self.fallback.attach(pulled)
        else:
            pulled.retire()

    @property
    def closed(self) -> bool:
        """Its writer has let go of it (closed, or failed)."""
        return self._closed.is_set()

    def close(self) -> None:
        """Stop pulling (the attached streams are retired) and close the stream."""
        if not self._closed.is_set():
            self._writer.call(self.stop)
            if not self._closed.wait(2.0):
                log.warning("%s: the PulseAudio server stopped taking audio", self.description)
        if self.fallback is not None:
            self.fallback.close()
        if self.gaps:
            log.info("%s: %d underruns", self.description, self.gaps)

    # The rest runs on the writer's thread.

    def start(self) -> None:
        """Open the server's stream; it calls back as it connects."""
        self._writer._outputs.append(self)

        def touch() -> None:
            self.touched = True

        try:
            self._stream = PlaybackStream(self.device, self.name, RATE, self._bytes(self._opened),
                                          self.block, self._writer._connection, touch)  # fmt: skip
        except DeviceError as exc:
            self.fail(str(exc))
        self.touched = True  # the writer looks at once, as well as when it calls back

    def stop(self) -> None:
        for player in self._players + list(self._pending):
            player.retire()
        self._players, self._pending = [], collections.deque()
        self._end()

    def fail(self, reason: str, fall_back: bool = True) -> None:
        """Its stream failed: the streams' other sinks (files) play on, on a paced clock."""
        if self.started.is_set():
            log.warning("%s: playback stopped: %s", self.description, reason)
        with self._lock:
            self.failed = reason
        if fall_back and self.started.is_set():
            self.fallback = PacedClock(self.block)
        for player in self._players + list(self._pending):
            if self.fallback is None:
                player.retire()
            else:
                self.fallback.attach(player)
        self._players, self._pending = [], collections.deque()
        self._end()

    def _end(self) -> None:
        self._drop_stream()
        if self in self._writer._outputs:
            self._writer._outputs.remove(self)
        self.started.set()
        self._closed.set()

    def step(self) -> None:
        """Whatever the server's call allows: take a timing report, pull and write."""
        self.touched = False
        stream = self._stream
        if stream is None:
            return
        try:
            if not stream.ready:
                return
            self.started.set()
            if self._asked and not stream.timing:
                self._reported(stream)
            while self._pending:
                self._players.append(self._pending.popleft())
            self._players = retire_stopped(self._players)
            if not self._players:
                if self._timeline.started and not self._idle:
                    # Idle: what is queued plays to its end (closing the stream would cut
                    # it), with silence behind it, as a server holds back the end of a
                    # stream that ran dry until its prebuffer is full again.
                    stream.put(bytes(self._bytes(self._opened)))
                    self._idle = True
                return
            if self._idle:  # fed again: a new timeline; the server's underrun while idle
                self._idle = False  # was no one's gap
                self._timeline, self._dry_for, self._resync = _Timeline(), 0.0, True
                self._unreported = self._silence = 0
            asked = stream.writable()
            if asked:  # the server wants more: it gets a block at once, reported on or not
                # All of its buffer asked for: it has nothing left (started, or ran dry).
                self._write(stream, time.monotonic(), prime=asked >= self._bytes(self._opened))
        except DeviceError as exc:
            self.fail(str(exc))

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def _bytes(self, blocks: int) -> int:
        """A buffer of `blocks` blocks of float32, in bytes."""
        return blocks * self.block * 4

    def _write(self, stream: PlaybackStream, now: float, prime: bool) -> None:
        """Pull every attached stream's next block, mix, write (after silence when `prime`),
        and ask the server for a report unless one is on its way: a write never waits for
        one (a busy server took up to 20 ms to answer now and then, the mics ran dry)."""
        plays_at = self._timeline.plays_at(now, self._unreported)
        data = mix([player.beat(self.block, now, plays_at) for player in self._players],
                   self.block)  # fmt: skip
        if self._resize_due(now):  # nothing queued is lost: no step in the timeline
            self._opened = self.margin.blocks
            stream.resize(self._bytes(self._opened))
        silence = 0
        if prime:
            # Started, or ran dry: the margin is filled with silence first, so that the next
            # pulls come at the server's pace, not in a burst that the streams' jitter
            # buffers could not serve.
            silence = (self._opened - 1) * self.block
            if silence:
                stream.put(bytes(4 * silence))
        stream.put(np.asarray(data, dtype="<f4").tobytes())
        if not self._unreported:
            self._wrote_at = now
        self._unreported += silence + self.block
        self._silence += silence
        if not self._asked:
            stream.ask_timing()
            self._asked = True

    def _reported(self, stream: PlaybackStream) -> None:
        """The server's report: the margin, the timeline, underruns. Its queue counts every
        write made till now (libpulse adds those made after it asked)."""
        self._asked = False
        queued = stream.reported_latency()
        playing = stream.started and not stream.dry
        if self._resync and playing:  # the idle stream's underrun has ended
            self._underruns, self._resync = stream.underruns, False
        written, silence, now = self._unreported, self._silence, self._wrote_at
        self._unreported = self._silence = 0
        # what the server still had to play when these writes reached it
        self.margin.spare((queued * RATE - written) / self.block, now)
        timed = self._timeline.reported
        lost = self._timeline.wrote(written, queued, stream.asked, stream.answered, playing)
        if stream.dry or stream.underruns > self._underruns:
            self._dry_for += lost  # the server ran dry: its timeline moved that much
            if not timed and playing:  # it ran dry before the timeline had its origin (at
                self._dry_for += stream.dry_seconds  # the start): the server's own count
        if stream.underruns > self._underruns:
            self._underruns = stream.underruns
            self.gaps += 1
            self.margin.underrun(now)
            log.debug("%s: ran dry %.1f ms; margin %d blocks", self.description,
                      self._dry_for * 1e3, self.margin.blocks)  # fmt: skip
            for player in self._players:
                player.gap(max(self._dry_for, 0.0) + silence / RATE)
            self._dry_for = 0.0

    def _resize_due(self, now: float) -> bool:
        """Whether the stream's buffer should change to the margin's: it grew with an
        underrun, or a calm spell earned a smaller one."""
        if self.margin.due(now):
            self.margin.shrink(now)
        return self.margin.blocks != self._opened


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

    def plays_at(self, now: float, unreported: int = 0) -> float:
        """When a block pulled `now` will play, `unreported` samples having been written
        since the last report."""
        return max(now, self.empty_at + unreported / RATE) if self.started else now

    def wrote(
        self, samples: int, latency: float, asked: float, answered: float, playing: bool = True
    ) -> float:
        """`samples` went out, and the server, asked at `asked` and answering by `answered`,
        had `latency` seconds queued; the seconds it had nothing to play since the last
        write (give or take half of each of the two round trips). The origin is taken once
        the server plays the stream (`playing`): before, its queue waits for the prebuffer."""
        self.started = True
        self.written += samples
        # The server took its figure at some moment of the round trip: the middle is off by
        # at most half of it (about 0.03 ms; a millisecond now and then).
        self.empty_at = (asked + answered) / 2 + latency
        if not self.reported and (latency <= 0 or not playing):
            return 0.0  # no report from the server yet (a stale 0 is not a dry queue)
        origin = self.empty_at - self.written / RATE
        lost = 0.0 if self._origin is None else origin - self._origin
        self._origin = origin
        return lost

    @property
    def reported(self) -> bool:
        """Whether the server has reported this stream's queue since it started."""
        return self._origin is not None
