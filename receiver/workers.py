"""Streams played in worker processes: fifty rooms on two cores.

Everything that plays runs on one interpreter's lock in one process: at most one core's
worth (50 streams broke at 108 % of a core, docs/engine.md). With `--workers N` the
network side (socket, guard, demux, RTCP, recording) stays in the receiver's process and
each stream's playout (jitter buffer, decoder, delay and drift control, DSP, its files,
its mic through the worker's own writer) runs in one of N processes, the one with the
fewest streams:

    demux ─► Remote.push ─► [outbox thread] ═ pipe ═► Worker: Session inbox ─► Player
    Remote.metrics ◄─ [reader thread] ═ pipe ═ metrics every PUBLISH s, the final ones

A worker is spawned, not forked (the receiver has threads by then): it imports airmic
afresh and opens its sinks from `SinkPlan`s, what the receiver's sink factories say of
where a stream goes (a file's path, a mic's null sink). Its log records come back
through the pipe and are logged here, as if the receiver had written them.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from airmic.common.delay import LatencyRange
from airmic.common.dsp import DspSettings
from airmic.common.dsp.chain import build_chain
from airmic.common.errors import DeviceError
from airmic.common.playout import Playout
from airmic.common.rtp import MediaPacket
from airmic.receiver.demux import StreamKey
from airmic.receiver.player import Output, PacedClock, Player, StreamSink
from airmic.receiver.rooms import Room
from airmic.receiver.session import PUBLISH, Inlet, Metrics, Origin, Session
from airmic.receiver.sinks import NullSink, SinkPlan, WavSinkFactory

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
"""Seconds a worker may take to start (it imports numpy, scipy, Opus: 1-2 s here)."""


@dataclass(frozen=True)
class Plan:
    """What a worker needs to play a stream."""

    key: StreamKey
    origin: Origin
    now: float
    room: Room
    latency: LatencyRange
    dsp: DspSettings | None
    sinks: tuple[SinkPlan, ...]
    names: tuple[str, ...]  # every sink's description, as the stream's metrics list them


class Remote(Inlet):
    """A stream whose playout runs in a worker: the network side of it, here."""

    def __init__(self, plan: Plan, worker: WorkerHandle, tap: Any, room: Room) -> None:
        super().__init__(plan.origin, plan.now, tap, room)
        self.key = plan.key
        self._worker = worker
        self.metrics = dataclasses.replace(self.metrics, sinks=plan.names)
        self._theirs = self.metrics  # the worker's last figures

    def deliver(self, packet: MediaPacket, now: float) -> None:
        self._worker.send(("packet", self.key, packet, now), now=False)  # sent at a flush

    def sender_clock(self, info: Any, offset: float | None, ahead: float) -> None:
        self._worker.send(("clock", self.key, info, offset, ahead))

    def play_out(self) -> None:
        super().play_out()
        self._worker.send(("play out", self.key))

    def stop(self) -> None:
        """End the stream now: its worker stops pulling it, drains and closes it."""
        self._worker.send(("stop", self.key))

    def published(self, metrics: Metrics | None = None) -> Metrics:
        """The worker's figures (the last it sent, if none), with this side's: refused
        datagrams, reports, the end."""
        self._theirs = metrics or self._theirs
        self.metrics = dataclasses.replace(
            self._theirs,
            malformed=self._theirs.malformed + self.malformed,
            reports=self.reports,
            ended=self.ended,
        )
        return self.metrics


class WorkerHandle:
    """One worker process, from the receiver's side: an outbox thread sends what the
    network side queues (in batches: one pipe write for all that came meanwhile), a reader
    thread takes its metrics and its log."""

    def __init__(
        self,
        index: int,
        block: int,
        ppm: float,
        finished: Callable[[Remote, Metrics], None],
        lost: Callable[[WorkerHandle], None],
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, theirs = context.Pipe()
        self.process = context.Process(
            target=serve, args=(theirs, block, ppm, logging.getLogger().level),
            name=f"airmic worker {index}", daemon=True,
        )  # fmt: skip
        self.process.start()
        theirs.close()
        self.index = index
        self.streams: dict[StreamKey, Remote] = {}
        self.dead = False  # it ended without being asked to
        self._finished = finished
        self._lost = lost
        self._outbox: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._closed = False
        self._sender = threading.Thread(target=self._send, name=f"worker {index} out")
        self._reader = threading.Thread(target=self._read, name=f"worker {index} in")
        self._ready = threading.Event()
        self._sender.start()
        self._reader.start()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def send(self, message: Any, now: bool = True) -> None:
        """Queue a message for the worker (any thread; never blocks); sent `now`, or with
        the next `flush`."""
        if self.dead:
            return
        self._outbox.append(message)
        if now:
            self._wake.set()

    def flush(self) -> None:
        """Send what is queued (a wake-up for a burst of packets, not one each)."""
        if self._outbox:
            self._wake.set()

    def _send(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            batch = []
            while self._outbox:
                batch.append(self._outbox.popleft())
            if batch:
                try:
                    self._pipe.send(batch)
                except OSError:  # the worker is gone: the reader says so
                    return
            if (self._closed and not self._outbox) or self.dead:
                return

    def _read(self) -> None:
        while True:
            try:
                kind, *rest = self._pipe.recv()
            except (EOFError, OSError):
                break
            if kind == "ready":
                self._ready.set()
            elif kind == "metrics":
                for key, metrics in rest[0]:
                    remote = self.streams.get(key)
                    if remote is not None:
                        remote.published(metrics)
            elif kind == "finished":
                key, metrics = rest
                remote = self.streams.pop(key, None)
                if remote is not None:
                    self._finished(remote, remote.published(metrics))
            elif kind == "log":
                record = rest[0]
                logging.getLogger(record.name).handle(record)
        if not self._closed:
            self.dead = True
            self._outbox.clear()
            self._wake.set()  # the outbox thread ends
            self.process.join(1.0)
            log.error("%s ended (exit code %s): its %d streams end", self.process.name,
                      self.process.exitcode, len(self.streams))  # fmt: skip
            self._lost(self)

    def close(self, timeout: float) -> None:
        """Let the worker finish (its streams must have ended) and wait for it."""
        self._closed = True
        self.send(("exit",))
        self._sender.join(timeout)
        self.process.join(timeout)
        if self.process.is_alive():
            log.warning("%s did not exit: ended", self.process.name)
            self.process.kill()
            self.process.join()
        self._reader.join(timeout)
        self._pipe.close()


class Workers:
    """The worker processes; each new stream goes to the one with the fewest. A worker
    that dies is replaced; its streams end (`lost`: the receiver lets go of them, and
    their senders' next packets open new streams, in a live worker)."""

    def __init__(
        self,
        count: int,
        block: int,
        ppm: float,
        finished: Callable[[Remote, Metrics], None],
        lost: Callable[[list[Remote]], None],
    ) -> None:
        self._spawn = lambda index: WorkerHandle(index, block, ppm, finished, self._replace)
        self._lost = lost
        self._lock = threading.Lock()
        self.handles = [self._spawn(i + 1) for i in range(count)]
        for handle in self.handles:
            if not handle.wait_ready(START_TIMEOUT):
                self.close(1.0)
                raise DeviceError(f"{handle.process.name} did not start")

    def _replace(self, dead: WorkerHandle) -> None:
        """A worker died (its reader's thread): a new one takes its place, then its streams
        end (their senders' next packets open new ones, in the new worker)."""
        new = self._spawn(dead.index)
        if new.wait_ready(START_TIMEOUT):
            with self._lock:
                self.handles = [new if h is dead else h for h in self.handles]
            log.warning("%s started again", new.process.name)
        else:
            log.error("%s could not be started again", new.process.name)
        self._lost(list(dead.streams.values()))

    @property
    def pids(self) -> set[int]:
        return {h.process.pid for h in self.handles if h.process.pid is not None}

    def open(self, plan: Plan, tap: Any, room: Room) -> Remote:
        with self._lock:
            live = [h for h in self.handles if not h.dead] or self.handles
        handle = min(live, key=lambda h: len(h.streams))
        remote = Remote(plan, handle, tap, room)
        handle.streams[plan.key] = remote
        handle.send(("open", plan))
        log.info("stream %s plays in %s", plan.origin.name, handle.process.name)
        return remote

    def flush(self) -> None:
        """The packets queued go (the UDP thread read every datagram that came)."""
        for handle in self.handles:
            handle.flush()

    def room(self, room: Room) -> None:
        """A room's settings changed: its streams play with them from their next block."""
        for handle in self.handles:
            handle.send(("room", room))

    def close(self, timeout: float) -> None:
        with self._lock:
            handles = list(self.handles)
        for handle in handles:
            handle.close(timeout)


# The worker's side.


class _Pipe(logging.Handler):
    """Log records go back to the receiver."""

    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        self.worker.reply(("log", record))


class Worker:
    """Plays the streams the receiver gives it: sessions, players, sinks, its own clock
    and mic writer, as the receiver plays them when it has no workers."""

    def __init__(self, pipe: Connection, block: int, ppm: float) -> None:
        self.pipe = pipe
        self.block = block
        self.clock = PacedClock(block, ppm)
        self.players: dict[StreamKey, Player] = {}
        self.rooms: dict[str, Room] = {}
        self._send_lock = threading.Lock()
        self._finisher = ThreadPoolExecutor(1, thread_name_prefix="finisher")
        self._files: dict[str, WavSinkFactory] = {}
        self._mics: dict[str, Output] = {}
        self._writers: Any = None  # PulseWriters, made for the first mic
        self._done = threading.Event()

    def reply(self, message: Any) -> None:
        with self._send_lock, contextlib.suppress(OSError):  # OSError: the receiver is gone
            self.pipe.send(message)

    def run(self) -> None:
        publisher = threading.Thread(target=self._publish, name="publisher", daemon=True)
        publisher.start()
        self.reply(("ready",))
        try:
            while True:
                try:
                    batch = self.pipe.recv()
                except (EOFError, OSError):  # the receiver is gone: end every stream
                    break
                if not all(self._handle(message) for message in batch):
                    break
        finally:  # the receiver ended every stream first, unless it is gone: end them
            for player in list(self.players.values()):
                player.stop()
            self.clock.close()  # each clock lets go of its streams: drained and closed
            for output in self._mics.values():
                output.close()
            self._finisher.shutdown(wait=True)
            if self._writers is not None:
                self._writers.close()
            for factory in self._files.values():
                factory.close()
            self._done.set()

    def _handle(self, message: tuple[Any, ...]) -> bool:
        kind = message[0]
        if kind == "packet":
            _, key, packet, now = message
            player = self.players.get(key)
            if player is not None:
                player.session.deliver(packet, now)
        elif kind == "open":
            self._open(message[1])
        elif kind == "clock":
            _, key, info, offset, ahead = message
            if key in self.players:
                self.players[key].session.sender_clock(info, offset, ahead)
        elif kind == "play out":
            if message[1] in self.players:
                self.players[message[1]].session.play_out()
        elif kind == "stop":
            player = self.players.get(message[1])
            if player is not None:
                player.stop()
        elif kind == "room":
            self._room(message[1])
        elif kind == "exit":
            return False
        return True

    def _room(self, settings: Room) -> Room:
        """The room by its name, with these settings (its streams share it)."""
        room = self.rooms.setdefault(settings.name, settings)
        room.gain_db, room.muted, room.preset = settings.gain_db, settings.muted, settings.preset
        return room

    def _open(self, plan: Plan) -> None:
        room = self._room(plan.room)
        chain = build_chain(plan.dsp, self.block) if plan.dsp else None
        session = Session(plan.origin, Playout(plan.latency), plan.now, chain,
                          plan.names, None, room)  # fmt: skip
        sinks: list[StreamSink] = []
        output: Output | None = None
        for sink in plan.sinks:
            try:
                opened = self._sink(sink, plan.origin)
            except DeviceError as exc:
                log.warning("stream %s: no %s: %s", plan.origin.name, sink.description, exc)
                continue
            if isinstance(opened, Output):
                output = output or opened  # one mic a stream (its room's)
            else:
                sinks.append(opened)
        player = Player(session, sinks, [], self._finisher, lambda m: self._ended(plan.key, m))
        self.players[plan.key] = player
        (output or self.clock).attach(player)

    def _sink(self, sink: SinkPlan, origin: Origin) -> StreamSink | Output:
        if sink.kind == "wav":
            factory = self._files.get(sink.target)
            if factory is None:
                factory = self._files[sink.target] = WavSinkFactory(Path(sink.target))
            return factory.open(origin.name, origin.room)
        if sink.kind == "mic":
            output = self._mics.get(sink.target)
            if output is None or getattr(output, "failed", None) is not None:
                from airmic.receiver.pulse_sink import PulseWriters

                if self._writers is None:
                    self._writers = PulseWriters(self.block)
                output = self._writers.open(sink.target, sink.name)
                output.description = sink.description
                self._mics[sink.target] = output
            return output
        return NullSink()

    def _ended(self, key: StreamKey, metrics: Metrics) -> None:
        self.players.pop(key, None)
        self.reply(("finished", key, metrics))

    def _publish(self) -> None:
        """Every stream's metrics, a few times a second."""
        while not self._done.wait(PUBLISH):
            batch = [(key, p.session.metrics) for key, p in list(self.players.items())]
            if batch:
                self.reply(("metrics", batch))


def serve(pipe: Connection, block: int, ppm: float, level: int) -> None:
    """A worker process's life: play what the receiver sends until it says exit."""
    import signal

    from airmic.common.cli import freeze

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the receiver's to handle
    worker = Worker(pipe, block, ppm)
    root = logging.getLogger()
    root.handlers[:] = [_Pipe(worker)]
    root.setLevel(level)
    freeze()  # as the receiver does
    worker.run()
