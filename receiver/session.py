"""One received stream: its playout (jitter buffer, decoder, delay and drift control) and
its sinks. Runs on the event loop's thread.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from airmic.common.audio import RATE, level_dbfs
from airmic.common.dsp import Chain
from airmic.common.playout import Playout
from airmic.common.rtp import MediaPacket
from airmic.receiver.sinks import Sink

log = logging.getLogger(__name__)


class Session:
    """Plays one stream (one SSRC from one address) into its sinks."""

    def __init__(
        self, name: str, playout: Playout, sinks: list[Sink], now: float, dsp: Chain | None = None
    ) -> None:
        self.name = name
        self.playout = playout
        self.sinks = sinks
        self.dsp = dsp  # for senders that cannot run it themselves (browsers, ffmpeg)
        self.malformed = 0  # datagrams of this stream refused before the jitter buffer
        self.payload_type: int | None = None
        self.samples_played = 0
        self.level_db = -120.0  # of the last block played, for the status line
        self.last_packet = now
        self.encrypted = False  # SRTP from a paired sender (or DTLS-SRTP, for WebRTC)

    def push(self, packet: MediaPacket, now: float) -> None:
        self.last_packet = now
        self.payload_type = packet.payload_type
        self.playout.push(packet, now)

    def play(self, now: float, samples: int) -> None:
        """Give each sink the `samples` that play from `now` on (the sink clock's beat)."""
        block = self.playout.pull(samples, now)
        if block is None or (self.playout.waiting and not block.any()):
            # Idle, or silence while the network is late: a file keeps it only if the
            # stream goes on, so a stream that stopped does not end in silence.
            for sink in self.sinks:
                sink.idle(samples)
            return
        if self.dsp is not None:
            block = self.dsp.process(block)
        self.samples_played += len(block)
        self.level_db = level_dbfs(block)
        if self.samples_played % RATE < samples and log.isEnabledFor(logging.DEBUG):
            p = self.playout
            log.debug(
                "%s: delay %s ms, target %.1f ms, ratio %.6f, drift %.0f ppm, waits %s",
                self.name,
                p.delay.current and round(p.delay.current * 1000, 1),
                p.target(now) * 1000,
                p.ratio,
                p.stats.drift_ppm,
                np.round(np.quantile(p.delay.waits, [0, 0.01, 0.5, 1]) * 1000, 1),
            )
        for sink in self.sinks:
            sink.write(block)

    def close(self) -> None:
        """Play out what is still buffered, then close the sinks."""
        rest = self.playout.drain()
        for sink in self.sinks:
            if len(rest):
                sink.write(rest)
            sink.close()

    def stats(self) -> dict[str, Any]:
        delay = self.playout.delay
        current = delay.current
        return {
            "stream": self.name,
            "encrypted": self.encrypted,
            "sinks": [sink.description for sink in self.sinks],
            "dsp": self.dsp.describe() if self.dsp is not None else None,
            "payload_type": self.payload_type,
            **self.playout.jitter.stats.as_dict(),
            "malformed": self.malformed + self.playout.malformed,
            "drops": self.playout.stats.drops,
            "inserts": self.playout.stats.inserts,
            "drift_ppm": round(self.playout.stats.drift_ppm, 1),
            "delay_ms": None if current is None else round(current * 1000, 1),
            "target_ms": round(self.playout.target(self.last_packet) * 1000, 1),
            "latency": str(delay.latency),
            "seconds": round(self.samples_played / RATE, 3),
        }
