"""One received stream: jitter buffer, Opus decoder and the stream's sinks.

Sans-I/O apart from its sinks: `push(packet, now)` as packets arrive, `play(now, samples)`
each time the playout clock needs the next block. Runs on the event loop's thread.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from airmic.common.audio import RATE, Block, level_dbfs
from airmic.common.jitter import FixedJitterBuffer, Frame, FrameKind
from airmic.common.log import OnceLogger
from airmic.common.opus import OpusDecoder
from airmic.common.rtp import MediaPacket
from airmic.receiver.sinks import Sink

log = logging.getLogger(__name__)


class Session:
    """Plays one stream (one SSRC from one address) into its sinks."""

    def __init__(self, name: str, jitter: FixedJitterBuffer, sinks: list[Sink], now: float) -> None:
        self.name = name
        self.jitter = jitter
        self.decoder = OpusDecoder()
        self.sinks = sinks
        self.malformed = 0
        self.payload_type: int | None = None
        self.samples_played = 0
        self.level_db = -120.0  # of the last block played, for the status line
        self.started = now
        self.last_packet = now
        self._problems = OnceLogger(log)
        self._fifo: list[Block] = []
        self._fifo_len = 0
        self._playing = False

    def push(self, packet: MediaPacket, now: float) -> None:
        self.last_packet = now
        self.payload_type = packet.payload_type
        self.jitter.push(packet, now)

    def play(self, now: float, samples: int) -> None:
        """Give each sink the `samples` that play from `now` on."""
        deadline = now + samples / RATE
        while self._fifo_len < samples:
            frame = self.jitter.pop(deadline)
            if frame is None:
                break
            self._append(self._decode(frame))
        if not self._fifo_len:
            self._playing = False
            for sink in self.sinks:
                sink.idle(samples)
            return
        block = self._take(samples)
        self.samples_played += len(block)
        self.level_db = level_dbfs(block)
        for sink in self.sinks:
            sink.write(block)

    def drain(self) -> None:
        """Decode and write whatever the buffer still holds (on shutdown: lose nothing)."""
        while self.jitter.buffered:
            frame = self.jitter.pop(float("inf"))
            if frame is None:
                break
            self._append(self._decode(frame))
        if self._fifo_len:
            block = self._take(self._fifo_len)
            for sink in self.sinks:
                sink.write(block)

    def close(self) -> None:
        self.drain()
        for sink in self.sinks:
            sink.close()

    def stats(self) -> dict[str, Any]:
        return {
            "stream": self.name,
            "sinks": [sink.description for sink in self.sinks],
            "payload_type": self.payload_type,
            **self.jitter.stats.as_dict(),
            "malformed": self.malformed,
            "seconds": round(self.samples_played / RATE, 3),
        }

    def _decode(self, frame: Frame) -> Block:
        try:
            if frame.kind is FrameKind.AUDIO:
                return self.decoder.decode(frame.payload)
            if frame.kind is FrameKind.FEC:
                return self.decoder.recover(frame.payload, frame.samples)
        except ValueError as exc:
            self.malformed += 1
            self._problems.report("decode", "%s: undecodable packet: %s", self.name, exc)
        return self.decoder.conceal(frame.samples)

    def _append(self, pcm: Block) -> None:
        self._fifo.append(pcm)
        self._fifo_len += len(pcm)

    def _take(self, samples: int) -> Block:
        data = np.concatenate(self._fifo) if len(self._fifo) > 1 else self._fifo[0]
        if len(data) < samples:
            # Short only when the stream (re)starts mid-block: the silence goes first.
            pad = np.zeros(samples - len(data), dtype=np.float32)
            data = np.concatenate((pad, data) if not self._playing else (data, pad))
        self._playing = True
        block, rest = data[:samples], data[samples:]
        self._fifo = [rest] if len(rest) else []
        self._fifo_len = len(rest)
        return block
