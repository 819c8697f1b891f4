"""The internal audio format: 48 kHz mono, float32 in [-1, 1) for DSP, int16 for codecs."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

RATE = 48_000
"""Sample rate of everything inside airmic; also the Opus RTP clock (RFC 7587 section 4.1)."""

Block = npt.NDArray[np.float32]
"""A block of mono samples at RATE."""


def ms_to_samples(ms: float) -> int:
    """Number of samples at RATE in `ms` milliseconds, rounded to the nearest sample."""
    return round(ms * RATE / 1000)


def to_int16(block: Block) -> npt.NDArray[np.int16]:
    """Float samples to int16, clipped at full scale."""
    return np.clip(np.rint(block * 32768.0), -32768, 32767).astype(np.int16)


def to_float32(pcm: bytes | npt.NDArray[np.int16]) -> Block:
    """Native-endian int16 samples (bytes or array) to float32 in [-1, 1)."""
    samples = np.frombuffer(pcm, dtype=np.int16) if isinstance(pcm, bytes) else pcm
    return samples.astype(np.float32) / 32768.0


def level_dbfs(block: Block) -> float:
    """RMS level of a block in dBFS (-120 for digital silence)."""
    if len(block) == 0:
        return -120.0
    return dbfs(float(np.dot(block, block)) / len(block))  # BLAS: cheaper than mean()


def dbfs(power: float) -> float:
    """A mean square as a level in dBFS, a full-scale sine's being 0 (-120 at least)."""
    return max(-120.0, 10.0 * math.log10(power + 1e-24) + 3.0103)


class Reframer:
    """Cuts a stream of blocks of any length into frames of exactly `size` samples."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pending: Block = np.zeros(0, dtype=np.float32)

    def push(self, block: Block) -> list[Block]:
        """Add a block; return the whole frames now available, in order."""
        data = np.concatenate((self._pending, block)) if len(self._pending) else block
        whole = len(data) // self.size * self.size
        self._pending = data[whole:].copy()
        return [data[i : i + self.size] for i in range(0, whole, self.size)]

    def flush(self) -> Block | None:
        """The last partial frame, zero-padded to `size`, or None if nothing is pending."""
        if not len(self._pending):
            return None
        frame = np.zeros(self.size, dtype=np.float32)
        frame[: len(self._pending)] = self._pending
        self._pending = np.zeros(0, dtype=np.float32)
        return frame
