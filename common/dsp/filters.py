"""Linear filter stages: DC blocker, high-pass, parametric EQ; all second-order sections
run by scipy with their state carried from block to block.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal

from airmic.common.audio import RATE

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


KINDS = {
    "low-shelf": "low-shelf",
    "low": "low-shelf",
    "peak": "peak",
    "bell": "peak",
    "presence": "peak",
    "high-shelf": "high-shelf",
    "high": "high-shelf",
}
_BAND = re.compile(
    r"(?:(?P<kind>[a-z-]+):)?(?P<gain>[+-]?\d+(?:\.\d+)?)\s*dB\s*@\s*(?P<freq>\d+(?:\.\d+)?)"
    r"(?P<k>k)?(?:Hz)?(?:/(?P<q>\d+(?:\.\d+)?))?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class EqBand:
    """One band of the parametric equaliser: a shelf or a peak, in dB at a frequency."""

    kind: str  # "low-shelf", "peak" or "high-shelf"
    freq: float  # Hz: a shelf's midpoint, a peak's centre
    gain_db: float
    q: float = 0.707  # a shelf: steepest without overshoot; a peak: 1, about 1.4 octaves

    def __post_init__(self) -> None:
        if self.kind not in ("low-shelf", "peak", "high-shelf"):
            raise ValueError(f"unknown EQ band kind {self.kind!r}")
        if not 10 <= self.freq < RATE / 2:
            raise ValueError(f"EQ frequency {self.freq:g} Hz is outside 10 Hz-24 kHz")
        if not abs(self.gain_db) <= 24:
            raise ValueError(f"EQ gain {self.gain_db:+g} dB is beyond +-24 dB")
        if not 0.1 <= self.q <= 20:
            raise ValueError(f"EQ Q {self.q:g} is outside 0.1-20")

    @classmethod
    def parse(cls, text: str) -> EqBand:
        """'presence:+6dB@3k', 'low-shelf:-4dB@200', 'peak:-3dB@350/1.4' ('/Q' optional)."""
        match = _BAND.fullmatch(text.strip())
        if not match:
            raise ValueError(
                f"not an EQ band: {text!r} (expected KIND:GAINdB@FREQ[/Q], "
                "e.g. presence:+6dB@3k or low-shelf:-4dB@200)"
            )
        name = (match["kind"] or "peak").lower()
        if name not in KINDS:
            raise ValueError(f"unknown EQ band kind {name!r}: one of {', '.join(KINDS)}")
        kind = KINDS[name]
        freq = float(match["freq"]) * (1000 if match["k"] else 1)
        default_q = 1.0 if kind == "peak" else 0.707
        q = float(match["q"]) if match["q"] else default_q
        return cls(kind, freq, float(match["gain"]), q)

    def sos(self) -> Sos:
        return _cookbook(self.kind, self.freq, self.gain_db, self.q)

    def __str__(self) -> str:
        freq = f"{self.freq / 1000:g}k" if self.freq >= 1000 else f"{self.freq:g}"
        return f"{self.kind}:{self.gain_db:+g}dB@{freq}/{self.q:g}"


def equaliser(bands: list[EqBand] | tuple[EqBand, ...]) -> Sos:
    if not bands:
        return np.zeros((0, 6))
    return np.vstack([band.sos() for band in bands])
