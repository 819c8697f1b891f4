"""Where the sender's audio comes from: a sound device, a PulseAudio source, a file, or a
test tone.

Each source is an async iterator of float32 mono blocks at 48 kHz. A device delivers them in
real time, paced by its own clock (`clocked`); a file or a tone delivers them as fast as they
are taken, and the pipeline paces each frame with a `Pacer`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile
import soxr

from airmic.common.audio import RATE, Block
from airmic.common.devices import find_device, sounddevice
from airmic.common.errors import DeviceError, SourceError, UsageError
from airmic.sender.pulse_source import PulseSource


class Source(Protocol):
    description: str
    clocked: bool  # True if the blocks come in real time, paced by a sound card
    overflows: int  # times the input lost audio before it was read (a sound card's overflow)

    def blocks(self) -> AsyncIterator[Block]:
        """The audio, block by block; ends when the source does."""
        ...


class Pacer:
    """Sleeps until each frame's due time, counted from the first frame, so that frames
    leave one by one at the audio's own rate, with no drift from rounding or late wake-ups."""

    def __init__(self) -> None:
        self._start: float | None = None
        self._samples = 0

    async def wait(self, samples: int) -> None:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self._samples / RATE - loop.time()
        self._samples += samples
        if delay > 0:
            await asyncio.sleep(delay)


class ToneSource:
    """A sine wave at `freq` Hz and `level` dBFS, for tests and for checking a set-up."""

    clocked = False
    overflows = 0

    def __init__(self, freq: float, block: int, level_db: float = -12.0) -> None:
        if not 0 < freq < RATE / 2:
            raise UsageError(f"tone frequency must be between 0 and {RATE // 2} Hz")
        self.description = f"{freq:g} Hz tone"
        self.freq = freq
        self.block = block
        self.amplitude = 10 ** (level_db / 20)

    async def blocks(self) -> AsyncIterator[Block]:
        step = 2 * math.pi * self.freq / RATE
        n = 0
        while True:
            phase = step * np.arange(n, n + self.block, dtype=np.float64)
            yield (self.amplitude * np.sin(phase)).astype(np.float32)
            n = (n + self.block) % RATE  # keeps the phase exact for integer frequencies


class FileSource:
    """A sound file (WAV, FLAC, OGG...), mixed to mono and resampled to 48 kHz."""

    clocked = False
    overflows = 0

    def __init__(self, path: Path, block: int, loop: bool = False) -> None:
        self.path = path
        self.block = block
        self.loop = loop
        info = self._open()  # fail now, with a clear message, rather than mid-stream
        self.description = (
            f"{path.name} ({info.samplerate} Hz, {info.frames / info.samplerate:.1f} s)"
        )
        info.close()
        if info.frames == 0:
            raise SourceError(f"cannot read {path}: it holds no audio")

    def _open(self) -> soundfile.SoundFile:
        try:
            return soundfile.SoundFile(self.path)
        except (OSError, RuntimeError) as exc:  # LibsndfileError is a RuntimeError
            reason = "no such file" if not self.path.exists() else str(exc).split(": ")[-1]
            raise SourceError(f"cannot read {self.path}: {reason}") from None

    async def blocks(self) -> AsyncIterator[Block]:
        while True:
            with self._open() as f:
                resampler = soxr.ResampleStream(f.samplerate, RATE, 1, dtype="float32")
                # Blocks of about 20 ms of the file's own rate keep memory flat for long files.
                for chunk in f.blocks(
                    blocksize=max(1, f.samplerate // 50), dtype="float32", always_2d=True
                ):
                    yield resampler.resample_chunk(chunk.mean(axis=1), last=False)
                yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if not self.loop:
                return


class DeviceSource:
    """A sound card input through sounddevice; its clock paces the stream."""

    clocked = True

    def __init__(self, device: str, block: int) -> None:
        self.overflows = 0
        self.device = find_device(device, "input")
        self.block = block
        name = sounddevice().query_devices(self.device, "input")["name"]
        self.description = f"device {name!r}"

    async def blocks(self) -> AsyncIterator[Block]:
        sd = sounddevice()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Block] = asyncio.Queue()

        def callback(indata: np.ndarray, frames: int, time: object, status: Any) -> None:
            # Runs on PortAudio's thread: copy the block, hand it to the loop, return.
            if status.input_overflow:  # the card's buffer filled before this was read
                self.overflows += 1
            loop.call_soon_threadsafe(queue.put_nowait, indata[:, 0].copy())

        try:
            stream = sd.InputStream(
                device=self.device,
                samplerate=RATE,
                channels=1,
                dtype="float32",
                blocksize=self.block,
                latency="low",
                callback=callback,
            )
        except sd.PortAudioError as exc:
            raise DeviceError(f"cannot open {self.description}: {exc}") from None
        with stream:
            while True:
                yield await queue.get()


def open_source(spec: str | None, block: int, loop: bool = False) -> Source:
    """A source from its specification: device:NAME|INDEX, pulse[:SOURCE], file:PATH or
    tone:FREQ; None is the PulseAudio server's default source where there is a server (its
    lowest-latency path), else the default input device."""
    if spec is None:
        try:
            return PulseSource("")
        except DeviceError:
            spec = "device:default"
    kind, _, arg = spec.partition(":")
    if kind == "pulse":
        return PulseSource(arg)
    if kind == "tone":
        try:
            return ToneSource(float(arg or 440), block)
        except ValueError:
            raise UsageError(f"tone needs a frequency in Hz: {spec!r}") from None
    if kind == "file" and arg:
        return FileSource(Path(arg).expanduser(), block, loop)
    if kind == "device":
        return DeviceSource(arg, block)
    raise UsageError(
        f"unknown input {spec!r}: use device:NAME|INDEX, pulse[:SOURCE], file:PATH or tone:FREQ"
    )
