"""Where received audio goes: WAV files, a sound device, or nowhere.

A sink is opened per stream. The session calls `write(block)` with the stream's audio and
`idle(samples)` while the stream has nothing to play (before it starts, or in a pause).
All calls come from the event loop's thread.
"""

from __future__ import annotations

import collections
import logging
import math
import wave
from pathlib import Path
from typing import Protocol

import numpy as np

from airmic.common.audio import RATE, Block, to_int16
from airmic.common.devices import find_device, sounddevice
from airmic.common.errors import DeviceError, UsageError

log = logging.getLogger(__name__)


class Sink(Protocol):
    description: str

    def write(self, block: Block) -> None: ...

    def idle(self, samples: int) -> None: ...

    def close(self) -> None: ...


class SinkFactory(Protocol):
    """Opens one sink of its kind for each stream, which will be written `block` samples at
    a time; closed when the receiver exits."""

    spec: str

    def open(self, block: int) -> Sink: ...

    def close(self) -> None: ...


class WavSink:
    """A 16-bit 48 kHz mono WAV file that is valid at every moment, even after a kill.

    The stdlib `wave` writer rewrites the header's sizes after each write (two 4-byte
    patches), where libsndfile only writes them on close. Pauses inside the stream are kept
    as silence; silence before the first audio and after the last is not written.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"wav:{path}"
        self.samples = 0
        self._pending_silence = 0
        try:
            self._file = wave.open(str(path), "wb")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None
        self._file.setnchannels(1)
        self._file.setsampwidth(2)
        self._file.setframerate(RATE)
        self._file.writeframes(b"")  # a valid, empty WAV from the start

    def write(self, block: Block) -> None:
        if self._pending_silence and self.samples:
            self._file.writeframes(bytes(2 * self._pending_silence))
            self.samples += self._pending_silence
        self._pending_silence = 0
        self._file.writeframes(to_int16(block).astype("<i2").tobytes())
        self.samples += len(block)

    def idle(self, samples: int) -> None:
        self._pending_silence += samples

    def close(self) -> None:
        self._file.close()


class WavSinkFactory:
    """`wav:PATH`: the first stream goes to PATH, later ones to PATH-2.wav, PATH-3.wav…"""

    def __init__(self, path: Path) -> None:
        self.spec = f"wav:{path}"
        self.path = path
        self._opened = 0
        if not path.parent.is_dir():
            raise UsageError(f"cannot write {path}: no folder {path.parent}")

    def open(self, block: int) -> Sink:
        self._opened += 1
        path = self.path
        if self._opened > 1:
            path = path.with_name(f"{path.stem}-{self._opened}{path.suffix or '.wav'}")
        return WavSink(path)

    def close(self) -> None:
        pass


class NullSink:
    """Discards the audio (for measuring and testing)."""

    def __init__(self) -> None:
        self.description = "null"

    def write(self, block: Block) -> None:
        pass

    def idle(self, samples: int) -> None:
        pass

    def close(self) -> None:
        pass


class NullSinkFactory:
    spec = "null"

    def open(self, block: int) -> Sink:
        return NullSink()

    def close(self) -> None:
        pass


class DeviceSink:
    """A sound card output through sounddevice.

    The loop writes blocks into a short queue; PortAudio's callback takes samples from it.
    Playback starts, and restarts after an underrun, only once PREFILL seconds are queued,
    so the jitter between the loop's clock and the device's is absorbed instead of heard. If
    the device runs slow, the oldest block is dropped (counted) so latency cannot grow.
    """

    PREFILL = 0.02  # seconds
    MAX_QUEUED = 0.08  # seconds
    LATENCY = 0.02  # seconds asked of PortAudio; "low" underruns through ALSA's pulse plugin

    def __init__(self, device: int | None, name: str, block: int) -> None:
        sd = sounddevice()
        self.description = f"device:{name}"
        self.prefill = max(1, math.ceil(self.PREFILL * RATE / block))  # in blocks
        self.max_queued = math.ceil(self.MAX_QUEUED * RATE / block)
        self.underruns = 0
        self.overruns = 0
        self._queue: collections.deque[Block] = collections.deque()
        self._leftover = np.zeros(0, dtype=np.float32)
        self._playing = False
        try:
            self._stream = sd.OutputStream(
                device=device,
                samplerate=RATE,
                channels=1,
                dtype="float32",
                latency=self.LATENCY,
                callback=self._callback,
            )
            self._stream.start()
        except sd.PortAudioError as exc:
            raise DeviceError(f"cannot open output {name!r}: {exc}") from None

    def _callback(self, outdata: np.ndarray, frames: int, time: object, status: object) -> None:
        # PortAudio's thread: no locks, no logging; deque append/popleft are atomic.
        out = outdata[:, 0]
        if not self._playing and len(self._queue) >= self.prefill:
            self._playing = True
        filled = 0
        while self._playing and filled < frames:
            if not len(self._leftover):
                if not self._queue:
                    self._playing = False  # underrun: wait for PREFILL again
                    self.underruns += 1
                    break
                self._leftover = self._queue.popleft()
            n = min(frames - filled, len(self._leftover))
            out[filled : filled + n] = self._leftover[:n]
            self._leftover = self._leftover[n:]
            filled += n
        out[filled:] = 0

    def write(self, block: Block) -> None:
        self._queue.append(block)
        if len(self._queue) > self.max_queued:
            self._queue.popleft()
            self.overruns += 1

    def idle(self, samples: int) -> None:
        self.write(np.zeros(samples, dtype=np.float32))

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()
        if self.underruns or self.overruns:
            log.info(
                "%s: %d underruns, %d overruns", self.description, self.underruns, self.overruns
            )


class DeviceSinkFactory:
    def __init__(self, spec: str) -> None:
        self.spec = f"device:{spec}"
        self.device = find_device(spec, "output")  # fail at start-up, not at the first stream
        self.name = spec or "default"

    def open(self, block: int) -> Sink:
        return DeviceSink(self.device, self.name, block)

    def close(self) -> None:
        pass


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
