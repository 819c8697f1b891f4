"""A playback stream into one PulseAudio sink, through libpulse's simple API (pasimple).

PortAudio reaches PulseAudio only through ALSA's pulse plugin, which costs about 25 ms from
capture to playback on this path where libpulse directly costs 12 (measured with
scripts/bench_mic.py's method): the virtual mic is fed this way.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading

import numpy as np

from airmic.common.audio import RATE, Block
from airmic.common.errors import DeviceError

log = logging.getLogger(__name__)

MAX_QUEUED = 2  # blocks waiting for the writer: a standing queue would be latency for good


class PulseSink:
    """Plays float32 mono 48 kHz into the PulseAudio sink `device`.

    `write` runs on the event loop's thread and never blocks: it queues the block. A writer
    thread hands blocks to the server; `pa_simple_write` blocks while the server's buffer
    (one `block`) is full, so the server's clock paces it. If the queue runs dry the server plays
    what it holds, then pauses until a buffer's worth has come again (prebuf).
    """

    def __init__(self, device: str, name: str, block: int) -> None:
        import pasimple

        self.description = f"pulse:{device}"
        self.overruns = 0
        self.failed: str | None = None
        size = block * 4  # float32
        try:
            self._stream = pasimple.PaSimple(
                pasimple.PA_STREAM_PLAYBACK,
                pasimple.PA_SAMPLE_FLOAT32LE,
                1,
                RATE,
                app_name="airmic-receive",
                stream_name=name,
                device_name=device,
                tlength=size,
                prebuf=size,
                minreq=size // 2,
            )
        except pasimple.PaSimpleError as exc:
            raise DeviceError(f"cannot play into PulseAudio sink {device!r}: {exc}") from None
        self._queue: queue.Queue[bytes | None] = queue.Queue(MAX_QUEUED)
        self._writer = threading.Thread(target=self._run, name=f"pulse {device}", daemon=True)
        self._writer.start()

    def write(self, block: Block) -> None:
        try:
            self._queue.put_nowait(np.asarray(block, dtype="<f4").tobytes())
        except queue.Full:
            self.overruns += 1

    def idle(self, samples: int) -> None:
        self.write(np.zeros(samples, dtype=np.float32))

    def close(self) -> None:
        # The writer plays what is queued, then stops; if the queue stays full, the writer
        # is stuck on a stalled server (a daemon thread: it does not hold the exit).
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=1.0)
        self._writer.join(timeout=2.0)
        if self._writer.is_alive():  # freeing the stream under its write would crash libpulse
            log.warning("%s: the PulseAudio server stopped taking audio", self.description)
            return
        self._stream.close()
        if self.overruns and not self.failed:
            log.info("%s: %d blocks dropped, the server stalled", self.description, self.overruns)

    def _run(self) -> None:
        """The writer thread: blocks on the queue, then on the server."""
        import pasimple

        try:
            while (data := self._queue.get()) is not None:
                self._stream.write(data)
            self._stream.drain()
        except pasimple.PaSimpleError as exc:  # the server went away: the loop goes on
            self.failed = str(exc)
            log.warning("%s: playback stopped: %s", self.description, exc)
