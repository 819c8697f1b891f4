"""Capture from a PulseAudio source through libpulse's simple API (pasimple).

PortAudio reaches PulseAudio only through ALSA's pulse plugin, which adds about 12 ms of
capture latency at its lowest setting; libpulse directly, with 5 ms fragments, adds a few.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from airmic.common.audio import RATE, Block
from airmic.common.errors import DeviceError

FRAGMENT = 0.005  # seconds per read: what the server hands over at a time


def sources() -> tuple[list[tuple[str, str]], str]:
    """The PulseAudio (or pipewire-pulse) server's sources, (name, description) each, and
    the name of its default one. Raises DeviceError."""
    try:
        import pulsectl
    except (ImportError, OSError) as exc:
        raise DeviceError(f"cannot load libpulse ({exc}): 'apt-get install libpulse0'") from None
    try:
        with pulsectl.Pulse("airmic-send") as pulse:
            found = [(source.name, source.description) for source in pulse.source_list()]
            return found, pulse.server_info().default_source_name
    except pulsectl.PulseError:
        raise DeviceError(
            "no PulseAudio server is reachable (on a PipeWire desktop: is pipewire-pulse running?)"
        ) from None


def describe_sources() -> str:
    """The sources for `--list-devices`, each as `--input` takes it, the default marked."""
    found, default = sources()
    lines = [
        f"  pulse:{name}  {description}{'  (default)' if name == default else ''}"
        for name, description in found
    ]
    return "\n".join(lines) or "  none"


def resolve(name: str) -> tuple[str, str]:
    """The source `name` (the server's default one if empty) and its description. A
    missing one is an error that lists the sources there are: PipeWire's pulse server
    would silently record the default microphone instead."""
    found, default = sources()
    wanted = name or default
    for source, description in found:
        if source == wanted:
            return source, description
    raise DeviceError(
        f"cannot record from PulseAudio source {wanted!r}: the server has no such source; "
        f"it has:\n{describe_sources()}"
    )


class PulseSource:
    """`pulse[:SOURCE]`: a PulseAudio source (the server's default one if none is named),
    paced by its own clock. A reader thread blocks in `pa_simple_read` and hands each
    fragment to the event loop."""

    clocked = True
    overflows = 0  # the server holds seconds of a record stream unread: none is lost

    def __init__(self, device: str) -> None:
        self.device, described = resolve(device)
        self.description = f"PulseAudio source {self.device!r} ({described})"
        self._stream = self._open()

    def _open(self) -> Any:
        try:
            import pasimple
        except (ImportError, OSError) as exc:
            raise DeviceError(
                f"cannot load libpulse ({exc}): 'apt-get install libpulse0'"
            ) from None
        size = round(FRAGMENT * RATE) * 4
        try:
            return pasimple.PaSimple(
                pasimple.PA_STREAM_RECORD,
                pasimple.PA_SAMPLE_FLOAT32LE,
                1,
                RATE,
                app_name="airmic-send",
                device_name=self.device,  # by name: a server never picks another for it
                fragsize=size,
            )
        except pasimple.PaSimpleError as exc:
            raise DeviceError(
                f"cannot record from {self.description} ({exc}); is a PulseAudio or PipeWire "
                "server running, and does the source exist (pactl list sources short)?"
            ) from None

    async def blocks(self) -> AsyncIterator[Block]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Block | None] = asyncio.Queue()
        stop = threading.Event()
        size = round(FRAGMENT * RATE) * 4

        def read() -> None:  # the reader thread: blocks on the server, hands off, repeats
            import pasimple

            try:
                while not stop.is_set():
                    block = np.frombuffer(self._stream.read(size), dtype="<f4").copy()
                    loop.call_soon_threadsafe(queue.put_nowait, block)
            except pasimple.PaSimpleError:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        reader = threading.Thread(target=read, name="pulse capture", daemon=True)
        reader.start()
        try:
            while (block := await queue.get()) is not None:
                yield block
            raise DeviceError(f"{self.description} stopped: the PulseAudio server went away")
        finally:
            stop.set()
            reader.join(timeout=1.0)  # its read returns within one fragment
            self._stream.close()
