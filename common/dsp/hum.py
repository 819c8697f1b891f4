"""Mains hum: find it (50 or 60 Hz and harmonics, each harmonic's exact frequency) and
notch it out.

A ground loop puts the mains frequency and its harmonics into a weak input, and the gain a
driver used as a microphone needs brings them up with the voice. Mains frequency wanders by
a few hundredths of a hertz, so each notch is placed on the harmonic's measured peak and is
4 Hz wide: 30 dB down or more within +-0.05 Hz of it, and too narrow to hear on a voice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from airmic.common.audio import RATE
from airmic.common.dsp.filters import Samples, Sos, SosFilter

MAINS = (50.0, 60.0)
HARMONICS = 10  # notches up to 500 or 600 Hz, where a ground loop's buzz has its energy
WIDTH = 4.0  # Hz, each notch's -3 dB width
DETECT_SECONDS = 1.0  # 1 Hz bins: each harmonic stands clear of the voice's harmonics
MIN_PROMINENCE_DB = 10.0  # how far the harmonics must stand above their neighbourhood


@dataclass(frozen=True)
class Hum:
    mains: float  # 50 or 60 Hz
    freqs: tuple[float, ...]  # the harmonics found, measured to a fraction of a bin
    level_db: float  # the strongest harmonic's level, dBFS (a sine's RMS, as level_dbfs)
    prominence_db: float  # mean height of the harmonics above their neighbourhood


def detect_hum(samples: Samples, harmonics: int = HARMONICS) -> Hum | None:
    """The mains hum in `samples` (at least a second is best), or None if there is none."""
    n = min(len(samples), round(4 * DETECT_SECONDS * RATE))
    if n < RATE // 4:
        return None
    window = np.hanning(n)
    spectrum = np.abs(np.fft.rfft(samples[-n:] * window)) ** 2
    spectrum *= 2 / np.sum(window) ** 2  # a sine of amplitude A reads A^2/2: its power
    bin_hz = RATE / n
    best: Hum | None = None
    for mains in MAINS:
        freqs, heights, powers = [], [], []
        for h in range(1, harmonics + 1):
            k = round(h * mains / bin_hz)
            near = spectrum[max(1, k - round(12 / bin_hz)) : k + round(12 / bin_hz) + 1]
            peak = k - 1 + int(np.argmax(spectrum[k - 1 : k + 2]))
            power = float(np.sum(spectrum[peak - 1 : peak + 2])) / 1.5  # Hann: 1.5 bins wide
            heights.append(10 * np.log10((power + 1e-30) / (2 * float(np.median(near)) + 1e-30)))
            freqs.append(_interpolate(spectrum, peak) * bin_hz)
            powers.append(power)
        strong = [i for i, height in enumerate(heights) if height > MIN_PROMINENCE_DB]
        # The fundamental or the third harmonic (full-wave buzz) must stand out.
        if not strong or not {0, 1, 2} & set(strong):
            continue
        prominence = float(np.mean([heights[i] for i in strong]))
        level = 10 * np.log10(max(powers[i] for i in strong) + 1e-30) + 3.0103  # as level_dbfs
        found = Hum(mains, tuple(freqs[i] for i in strong), float(level), prominence)
        if best is None or found.prominence_db > best.prominence_db:
            best = found
    return best


def _interpolate(spectrum: Samples, k: int) -> float:
    """A peak's position in bins, between bins (parabola through the log powers)."""
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-30)
    denominator = a - 2 * b + c
    return k + (0.5 * (a - c) / denominator if denominator < 0 else 0.0)


def notches(freqs: tuple[float, ...] | list[float], width: float = WIDTH) -> Sos:
    sections = [signal.tf2sos(*signal.iirnotch(f, f / width, fs=RATE)) for f in freqs]
    return np.vstack(sections) if sections else np.zeros((0, 6))


class HumFilter:
    """Notches the mains hum. With `mains=None` it listens first, re-checking each second
    until it hears hum, then notches the harmonics it found; with 50 or 60 it notches that
    frequency's harmonics from the start."""

    name = "hum"
    latency = 0

    def __init__(self, mains: float | None = None, harmonics: int = HARMONICS) -> None:
        self.harmonics = harmonics
        self.hum: Hum | None = None
        self._filter = SosFilter("hum", np.zeros((0, 6)))
        self._heard: list[Samples] = []
        self._heard_samples = 0
        if mains is not None:
            self._filter = SosFilter("hum", notches([mains * h for h in range(1, harmonics + 1)]))
            self.hum = Hum(mains, (), -120.0, 0.0)

    def process(self, block: Samples) -> Samples:
        if self.hum is None:
            self._listen(block)
        return self._filter.process(block)

    def _listen(self, block: Samples) -> None:
        self._heard.append(block.copy())
        self._heard_samples += len(block)
        if self._heard_samples < DETECT_SECONDS * RATE:
            return
        heard = np.concatenate(self._heard)
        self._heard, self._heard_samples = [], 0
        self.hum = detect_hum(heard, self.harmonics)
        if self.hum is not None:
            # Notched at exact multiples of the mains frequency (the grid holds it within
            # 0.1 %), not where one second measured them: a receiver's playout time-warps
            # what it plays by a few tenths of a percent, enough to move a measured peak.
            found = sorted({round(f / self.hum.mains) for f in self.hum.freqs})
            self._filter = SosFilter("hum", notches([self.hum.mains * h for h in found]))

    def activity(self) -> str:
        if self.hum is None:
            return "hum: listening"
        return f"hum: {self.hum.mains:g} Hz x{len(self._filter.sos)}"
