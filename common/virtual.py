"""A paced sink on a virtual clock: plays a packet trace through a `Playout` in simulated
time, pulling blocks (5 ms, as the receiver does) at the sink's own rate (with a settable
clock error), as fast as the CPU allows. For tests and benchmarks: hours of network in
seconds, the same every run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from airmic.common.audio import RATE, Block
from airmic.common.playout import BLOCK, Playout
from airmic.common.rtp import MediaPacket


def play_trace(
    playout: Playout,
    arrivals: Sequence[tuple[float, MediaPacket]],
    *,
    block: int = BLOCK,
    sink_ppm: float = 0.0,
    on_block: Callable[[float, Playout], None] | None = None,
) -> Block:
    """Push each packet at its arrival time and pull a block at every tick of the sink's
    clock, which runs `sink_ppm` fast; once every packet is out of the buffer, add what is
    left decoded. Returns what the sink got, silence where the playout had nothing."""
    out: list[Block] = []
    silence = np.zeros(block, dtype=np.float32)
    beat = block / RATE / (1 + sink_ppm * 1e-6)
    j = k = 0
    end = (arrivals[-1][0] if arrivals else 0.0) + 10.0  # a stuck playout cannot hang a test
    while (j < len(arrivals) or playout.jitter.buffered) and k * beat < end:
        now = k * beat
        while j < len(arrivals) and arrivals[j][0] <= now:
            playout.push(arrivals[j][1], arrivals[j][0])
            j += 1
        pulled = playout.pull(block, now)
        out.append(silence if pulled is None else pulled)
        if on_block is not None:
            on_block(now, playout)
        k += 1
    out.append(playout.drain())
    return np.concatenate(out)
