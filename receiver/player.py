"""A stream on its way out, and the clocks that pull it.

Every stream is driven by exactly one clock: the output it plays into first (the virtual
mic's server, a sound card), or, for a stream that goes only to files, the paced clock.
On each beat the driver calls `beat(samples, now)`: the stream's next block goes to its
own sinks (its files) and back to the driver, which mixes it into its device. A second
clocked output of the same stream is fed through a `Feed`, a short queue that counts what
it misses. When a stream ends, its driver stops pulling it and hands it to the finisher
thread, which drains and closes it: nothing that blocks runs inside another stream's beat.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Protocol, runtime_checkable

import numpy as np

from airmic.common.audio import RATE, Block
from airmic.receiver.session import Metrics, Session

log = logging.getLogger(__name__)


class StreamSink(Protocol):
    """A sink of one stream's own (a file), written on its driver's beat; never blocks."""

    description: str

    def write(self, block: Block) -> None: ...

    def idle(self, samples: int) -> None: ...

    def close(self) -> None:
        """Finish the sink (may block: the finisher thread calls it)."""


class Pulled(Protocol):
    """What an output pulls on its beat: a player, or a feed from another output."""

    stopping: bool

    def beat(self, samples: int, now: float, plays_at: float) -> Block | None:
        """The next `samples`, taken at `now`, played from `plays_at` on the output's
        device clock (its thread)."""

    def gap(self, seconds: float) -> None:
        """The output missed `seconds` (its thread); its timeline moved."""

    def retire(self) -> None: ...


@runtime_checkable
class Output(Protocol):
    """A clocked output that streams attach to: the virtual mic, a sound card, the paced
    clock. Thread-safe `attach`; `close` stops its clock (it may block)."""

    description: str

    def attach(self, pulled: Pulled) -> None: ...

    def close(self) -> None: ...


class Player:
    """One stream, its own sinks, and the feeds to its other outputs."""

    def __init__(
        self,
        session: Session,
        sinks: list[StreamSink],
        feeds: list[Feed],
        finisher: Executor,
        finished: Callable[[Metrics], None],
    ) -> None:
        self.session = session
        self.sinks = sinks
        self.feeds = feeds
        self.stopping = False  # set by anyone; the driver retires the player at its beat
        self._finisher = finisher
        self._finished = finished

    def beat(self, samples: int, now: float, plays_at: float) -> Block | None:
        """The stream's next block, on the driver's thread."""
        if self.session.closing and self.session.played_out:  # after a BYE
            self.stopping = True
            return None
        block = self.session.read(samples, now, plays_at)
        for sink in self.sinks:  # files: the stream as it came
            if block is None:
                sink.idle(samples)
            else:
                sink.write(block)
        factor = self.session.room.factor  # the outputs (the mic): the room's gain, or mute
        if block is not None and factor != 1.0:
            block = block * np.float32(factor)
        for feed in self.feeds:
            feed.put(block if block is not None else np.zeros(samples, dtype=np.float32))
        return block

    def gap(self, seconds: float) -> None:
        self.session.gap(seconds)
        self.session.clock_moved(seconds)

    def stop(self) -> None:
        """End the stream (any thread): its driver stops pulling it at the next beat."""
        self.stopping = True

    def retire(self) -> None:
        """Its driver let go of it: drain and close it on the finisher's thread."""
        self._finisher.submit(self._finish)

    def _finish(self) -> None:
        try:
            rest = self.session.drain(time.monotonic())
            for sink in self.sinks:
                if len(rest):
                    sink.write(rest)
                sink.close()
        except Exception:  # a sink that fails to close must not lose the stream's figures
            log.exception("stream %s: closing its sinks failed", self.session.name)
        for feed in self.feeds:
            feed.stopping = True
        self._finished(self.session.metrics)


class Feed:
    """A stream's blocks for a second clocked output: the driver puts, the output pulls.
    Up to `MAX_QUEUED` seconds wait; more, or none when pulled, is a gap (counted)."""

    MAX_QUEUED = 0.04

    def __init__(self, session: Session) -> None:
        self.session = session
        self.stopping = False
        self._queue: collections.deque[Block] = collections.deque()
        self._queued = 0  # samples
        self._started = False

    def put(self, block: Block) -> None:
        self._queue.append(block)
        self._queued += len(block)
        while self._queued > self.MAX_QUEUED * RATE:  # the output stalled: drop the oldest
            self._queued -= len(self._queue.popleft())
            self.session.gap(0)

    def beat(self, samples: int, now: float, plays_at: float) -> Block | None:
        if self._queued < samples:
            if self._started:
                self.session.gap(samples / RATE)
            self._started = False
            return None
        self._started = True
        out = np.concatenate([self._queue.popleft() for _ in range(len(self._queue))])
        block, rest = out[:samples], out[samples:]
        if len(rest):
            self._queue.append(rest)
        self._queued = len(rest)
        return block

    def gap(self, seconds: float) -> None:
        self.session.gap(seconds)

    def retire(self) -> None:
        pass


class OutputThread:
    """The thread of an output's clock, and the streams waiting for it to take them.
    `attach` from any thread; `close` stops the clock and waits for its thread."""

    def __init__(self, name: str) -> None:
        self._pending: collections.deque[Pulled] = collections.deque()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def attach(self, pulled: Pulled) -> None:
        self._pending.append(pulled)
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        raise NotImplementedError

    def _take(self, players: list[Pulled]) -> list[Pulled]:
        """The streams attached since, added; the stopped ones handed to their finisher."""
        while self._pending:
            players.append(self._pending.popleft())
        return retire_stopped(players)

    def _sleep(self, timeout: float | None = None) -> None:
        """Until `timeout`, or until a stream is attached or the output closed."""
        self._wake.wait(timeout)
        self._wake.clear()


class PacedClock(OutputThread):
    """The clock of streams that have no device to pull them (files, null): block k is
    pulled at start + k * beat on the monotonic clock (or a little faster or slower, with
    `ppm`, as a sound card's crystal would). A late wake-up pulls the blocks it missed, so
    a file never has a gap. Its thread sleeps while no stream is attached."""

    description = "paced clock"

    def __init__(self, block: int, ppm: float = 0.0) -> None:
        super().__init__("paced clock")
        self.block = block
        self.beat = block / RATE / (1 + ppm * 1e-6)
        self._thread.start()

    def _run(self) -> None:
        players: list[Pulled] = []
        start, k = time.monotonic(), 0
        while not self._closed:
            players = self._take(players)
            if not players:
                self._sleep()
                start, k = time.monotonic(), 0
                continue
            due = start + k * self.beat
            if due > time.monotonic():
                self._sleep(due - time.monotonic())  # an attach wakes it early
                continue
            now = time.monotonic()
            for player in players:
                if not player.stopping:
                    player.beat(self.block, now, due)
            k += 1
        for player in players + list(self._pending):
            player.retire()


def retire_stopped(players: list[Pulled]) -> list[Pulled]:
    """Hand the stopped ones to their finisher; the rest."""
    for player in players:
        if player.stopping:
            player.retire()
    return [player for player in players if not player.stopping]


def mix(blocks: list[Block | None], samples: int) -> Block:
    """The sum of the blocks that play (silence if none does)."""
    playing = [block for block in blocks if block is not None]
    if not playing:
        return np.zeros(samples, dtype=np.float32)
    if len(playing) == 1:
        return playing[0]
    return np.sum(playing, axis=0, dtype=np.float32)
