"""Where received audio goes: WAV files, a sound device, or nowhere.

A file (or null) is a sink of one stream's own, opened when the stream starts: it is
written `write(block)` with the stream's audio and `idle(samples)` while the stream has
nothing to play, on the beat of the clock that drives the stream. A sound device is an
output with a clock of its own, shared by the streams that attach to it (see
`airmic.receiver.player`).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from airmic.common.audio import RATE, Block, to_int16
from airmic.common.devices import find_device, sounddevice
from airmic.common.errors import DeviceError, UsageError
from airmic.common.margin import Margin
from airmic.common.playout import BLOCK
from airmic.receiver.player import Output, OutputThread, PacedClock, Pulled, StreamSink, mix

log = logging.getLogger(__name__)


class SinkFactory(Protocol):
    """One `--sink`: opens what each stream plays into, from start to exit. `open` returns
    a sink of the stream's own (a file) or the shared output the stream attaches to (the
    virtual mic, a sound card); it raises DeviceError when that cannot be had now."""

    spec: str

    def open(self, stream: str, room: str) -> StreamSink | Output: ...

    def plan(self, stream: str, room: str) -> SinkPlan:
        """What a worker process opens in its place (DeviceError: not to be had now)."""

    def close(self) -> None: ...


class FileWriter:
    """One thread that writes every file sink's audio: the clock that pulls a stream only
    queues it, so a slow disk cannot stall a beat. Writes go out every `PERIOD` seconds
    (batched: a kill loses at most that much)."""

    PERIOD = 0.05

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[WavSink, Block | None]] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="file writer", daemon=True)
        self._thread.start()

    def put(self, sink: WavSink, data: Block | None) -> None:
        """Queue `data` for `sink` (None: close it)."""
        self._queue.put((sink, data))

    def close(self) -> None:
        self._closed.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._closed.wait(self.PERIOD):
            self._write()
        self._write()

    def _write(self) -> None:
        batches: dict[WavSink, list[Block]] = {}
        closing = []
        while True:
            try:
                sink, data = self._queue.get_nowait()
            except queue.Empty:
                break
            if data is None:
                closing.append(sink)
            else:
                batches.setdefault(sink, []).append(data)
        for sink, chunks in batches.items():  # converted here, once per batch: off the beat
            sink.write_now(to_int16(np.concatenate(chunks)).astype("<i2").tobytes())
        for sink in closing:
            sink.close_now()


class WavSink:
    """A 16-bit 48 kHz mono WAV file that is valid at every moment, even after a kill.

    The stdlib `wave` writer rewrites the header's sizes after each write (two 4-byte
    patches), where libsndfile only writes them on close. Pauses inside the stream are kept
    as silence; silence before the first audio and after the last is not written. `write`
    and `idle` run on the stream's beat and only queue; the file writer writes.
    """

    def __init__(self, path: Path, writer: FileWriter) -> None:
        self._raw = _create(path)
        self.path = path = Path(self._raw.name)
        self.description = f"wav:{path}"
        self.samples = 0
        self._writer = writer
        self._pending_silence = 0
        self._closed = threading.Event()
        self._file = wave.open(self._raw, "wb")  # noqa: SIM115 (closed by close_now())
        self._file.setnchannels(1)
        self._file.setsampwidth(2)
        self._file.setframerate(RATE)
        self._file.writeframes(b"")  # a valid, empty WAV from the start

    def write(self, block: Block) -> None:
        if self._pending_silence and self.samples:
            self._writer.put(self, np.zeros(self._pending_silence, dtype=np.float32))
            self.samples += self._pending_silence
        self._pending_silence = 0
        self._writer.put(self, block)
        self.samples += len(block)

    def idle(self, samples: int) -> None:
        self._pending_silence += samples

    def close(self) -> None:
        """Wait until everything queued is written and the file closed."""
        self._writer.put(self, None)
        self._closed.wait()

    def write_now(self, data: bytes) -> None:
        """The writer's thread."""
        try:
            self._file.writeframes(data)
        except OSError as exc:
            log.warning("%s: %s", self.description, exc)

    def close_now(self) -> None:
        """The writer's thread."""
        try:
            self._file.close()
            self._raw.close()
        finally:
            self._closed.set()


def _create(path: Path) -> BinaryIO:
    """A new file at `path`, or, if that exists, at the first free PATH-2.wav, PATH-3.wav…:
    a recording is never overwritten, by this run or by the next. Raises DeviceError."""
    for n in range(1, 10_000):
        candidate = path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix or '.wav'}")
        try:
            return candidate.open("xb")
        except FileExistsError:
            continue
        except OSError as exc:
            raise DeviceError(f"cannot write {candidate}: {exc.strerror}") from None
    raise DeviceError(f"cannot write {path}: PATH-2 to PATH-9999 all exist")


@dataclass(frozen=True)
class SinkPlan:
    """Where a stream played in a worker process goes (`airmic.receiver.workers`), as its
    sink factory here says: `wav` (`target`: the path), `mic` (`target`: the mic's null
    sink, `name`: the stream's name on the server), or `null`."""

    kind: str
    target: str = ""
    name: str = ""
    description: str = ""


class WavSinkFactory:
    """`wav:PATH`: the first stream goes to PATH, later ones (or all, if PATH exists) to the
    first of PATH-2.wav, PATH-3.wav… that does not exist."""

    def __init__(self, path: Path) -> None:
        self.spec = f"wav:{path}"
        self.path = path
        if not path.parent.is_dir():
            raise UsageError(f"cannot write {path}: no folder {path.parent}")
        self._writer = FileWriter()

    def open(self, stream: str, room: str) -> StreamSink:
        return WavSink(self.path, self._writer)

    def plan(self, stream: str, room: str) -> SinkPlan:
        return SinkPlan("wav", str(self.path), description=self.spec)

    def close(self) -> None:
        self._writer.close()


class NullSink:
    """Discards the audio (for measuring and testing)."""

    description = "null"

    def write(self, block: Block) -> None:
        pass

    def idle(self, samples: int) -> None:
        pass

    def close(self) -> None:
        pass


class NullSinkFactory:
    spec = "null"

    def open(self, stream: str, room: str) -> StreamSink:
        return NullSink()

    def plan(self, stream: str, room: str) -> SinkPlan:
        return SinkPlan("null", description="null")

    def close(self) -> None:
        pass


class DeviceOutput(OutputThread):
    """A sound card output through sounddevice, clocked by the card.

    PortAudio's callback only copies queued blocks out (no decoding, no locks); a filler
    thread keeps the queue `margin` blocks deep, pulling the attached streams and mixing
    them, woken by the callback each time it takes a block. An underrun (the callback found
    the queue empty) is a gap, counted for every stream playing, and deepens the margin.
    The card runs only while a stream is attached.
    """

    LATENCY = 0.02  # seconds asked of PortAudio; "low" underruns through ALSA's pulse plugin

    def __init__(self, device: int | None, name: str, block: int) -> None:
        super().__init__(f"device:{name}")
        self.description = f"device:{name}"
        self.device = device
        self.block = block
        self.margin = Margin(least=2, most=16)
        self.gaps = 0
        self._underruns = 0  # counted by the callback, read by the filler
        self._queue: collections.deque[Block] = collections.deque()
        self._leftover = np.zeros(0, dtype=np.float32)
        self._stream: Any = None
        self.fallback: PacedClock | None = None  # the streams' clock if the card fails
        self._thread.start()

    def close(self) -> None:
        super().close()
        if self.fallback is not None:
            self.fallback.close()
        if self.gaps:
            log.info("%s: %d underruns", self.description, self.gaps)

    def _callback(self, outdata: np.ndarray, frames: int, time: object, status: object) -> None:
        # PortAudio's thread: no locks, no logging; deque append/popleft are atomic.
        out = outdata[:, 0]
        filled = 0
        while filled < frames:
            if not len(self._leftover):
                if not self._queue:
                    self._underruns += 1
                    break
                self._leftover = self._queue.popleft()
            n = min(frames - filled, len(self._leftover))
            out[filled : filled + n] = self._leftover[:n]
            self._leftover = self._leftover[n:]
            filled += n
        out[filled:] = 0
        self._wake.set()

    def _start(self) -> None:
        sd = sounddevice()
        try:
            self._stream = sd.OutputStream(
                device=self.device,
                samplerate=RATE,
                channels=1,
                dtype="float32",
                latency=self.LATENCY,
                callback=self._callback,
            )
            self._stream.start()
        except sd.PortAudioError as exc:
            raise DeviceError(f"cannot open output {self.description}: {exc}") from None

    def _stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None
        self._queue.clear()
        self._leftover = np.zeros(0, dtype=np.float32)

    def _run(self) -> None:
        players: list[Pulled] = []
        while not self._closed:
            players = self._take(players)
            if not players:
                self._stop()  # the card rests while nothing plays
                self._sleep()
                continue
            if self._stream is None:
                try:
                    self._start()
                except DeviceError as exc:  # the streams' files play on, on a paced clock
                    log.warning("%s", exc)
                    self.fallback = self.fallback or PacedClock(self.block)
                    for player in players:
                        self.fallback.attach(player)
                    players = []
                    continue
                self._underruns = 0
            now = time.monotonic()
            if self._underruns:
                self._underruns, missed = 0, self._underruns
                self.gaps += missed
                self.margin.underrun(now)
                for player in players:
                    player.gap(missed * self.block / RATE)
            if self.margin.due(now):
                self.margin.shrink(now)  # the queue just runs one block shorter
            if len(self._queue) >= self.margin.blocks:
                self._sleep(self.block / RATE)  # the callback wakes it as it takes a block
                continue
            plays_at = now + len(self._queue) * self.block / RATE  # after what is queued
            blocks = [p.beat(self.block, now, plays_at) for p in players]
            self._queue.append(mix(blocks, self.block))
        self._stop()
        for player in players + list(self._pending):
            player.retire()


class DeviceSinkFactory:
    def __init__(self, spec: str, block: int = BLOCK) -> None:
        self.spec = f"device:{spec}"
        self.device = find_device(spec, "output")  # fail at start-up, not at the first stream
        self.output = DeviceOutput(self.device, spec or "default", block)

    def open(self, stream: str, room: str) -> Output:
        return self.output

    def plan(self, stream: str, room: str) -> SinkPlan:
        raise DeviceError(f"{self.spec} plays in the receiver's process, not in a worker")

    def close(self) -> None:
        self.output.close()


def parse_sink(spec: str) -> SinkFactory:
    """A sink factory from its specification: virtual[:NAME], wav:PATH,
    device[:NAME|INDEX] or null. Creates what must exist from the start (a virtual mic)."""
    kind, _, arg = spec.partition(":")
    if kind == "virtual":
        from airmic.receiver.virtual_mic import open_virtual  # libpulse, on demand

        return open_virtual(arg)
    if kind == "wav" and arg:
        return WavSinkFactory(Path(arg).expanduser())
    if kind == "device":
        return DeviceSinkFactory(arg)
    if kind == "null" and not arg:
        return NullSinkFactory()
    raise UsageError(
        f"unknown sink {spec!r}: use virtual[:NAME], wav:PATH, device:NAME|INDEX or null"
    )
