"""Linear filter stages: DC blocker, high-pass, parametric EQ; all second-order sections
run by scipy with their state carried from block to block.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import signal

from airmic.common.audio import RATE
from airmic.common.dsp.settings import EqBand

Sos = npt.NDArray[np.float64]
"""Second-order sections, one [b0 b1 b2 a0 a1 a2] row each (scipy's layout)."""

Samples = npt.NDArray[np.float64]
"""The chain's working format: float64 samples at RATE (narrow notches need the precision)."""


class SosFilter:
    """A cascade of second-order sections as a chain stage; no latency of its own."""

    latency = 0

    def __init__(self, name: str, sos: Sos) -> None:
        self.name = name
        self.sos = np.atleast_2d(np.asarray(sos, dtype=np.float64))
        self._zi = np.zeros((len(self.sos), 2))

    def process(self, block: Samples) -> Samples:
        if not len(self.sos):
            return block
        out, self._zi = signal.sosfilt(self.sos, block, zi=self._zi)
        return np.asarray(out)

    def response_db(self, freqs: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The design's gain in dB at `freqs` (Hz)."""
        return response_db(self.sos, freqs)


def response_db(sos: Sos, freqs: npt.ArrayLike) -> npt.NDArray[np.float64]:
    _, h = signal.sosfreqz(sos, worN=np.asarray(freqs, dtype=np.float64), fs=RATE)
    return np.asarray(20 * np.log10(np.abs(h) + 1e-300))


def dc_blocker(corner: float = 5.0) -> Sos:
    """A first-order high-pass far below speech: takes out DC offset and drift."""
    return np.asarray(signal.butter(1, corner, "highpass", fs=RATE, output="sos"))


def high_pass(corner: float, order: int = 2) -> Sos:
    """Butterworth high-pass: rumble, handling noise and the boom of a driver's resonance."""
    return np.asarray(signal.butter(order, corner, "highpass", fs=RATE, output="sos"))


# scipy designs notches and band-passes, but not the shelving and peaking filters of an
# equaliser with a gain in dB: these are the Audio EQ Cookbook's (R. Bristow-Johnson).
def _cookbook(kind: str, freq: float, gain_db: float, q: float) -> Sos:
    a = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * freq / RATE
    cos, alpha = math.cos(w0), math.sin(w0) / (2 * q)
    if kind == "peak":
        b = [1 + alpha * a, -2 * cos, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cos, 1 - alpha / a]
    else:
        root = 2 * math.sqrt(a) * alpha
        sign = 1 if kind == "low-shelf" else -1
        b = [
            a * ((a + 1) - sign * (a - 1) * cos + root),
            sign * 2 * a * ((a - 1) - sign * (a + 1) * cos),
            a * ((a + 1) - sign * (a - 1) * cos - root),
        ]
        den = [
            (a + 1) + sign * (a - 1) * cos + root,
            -sign * 2 * ((a - 1) + sign * (a + 1) * cos),
            (a + 1) + sign * (a - 1) * cos - root,
        ]
    return np.asarray([[*(x / den[0] for x in b), 1.0, den[1] / den[0], den[2] / den[0]]])


def band_sos(band: EqBand) -> Sos:
    return _cookbook(band.kind, band.freq, band.gain_db, band.q)


def equaliser(bands: list[EqBand] | tuple[EqBand, ...]) -> Sos:
    if not bands:
        return np.zeros((0, 6))
    return np.vstack([band_sos(band) for band in bands])
