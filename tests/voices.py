"""Speech with a known polarity, for testing polarity estimation.

espeak-ng's voices make their voiced sounds from sine-phase harmonics (or, in its Klatt
variants, from sources of either sign), so their polarity is undefined. These voices keep
espeak's words, timing and formants (its spectral envelope, by linear prediction, frame by
frame) but voice them with Rosenberg glottal pulses: the flow's derivative has its sharp
negative peak at each glottal closure, which is positive polarity by definition (Drugman,
"Residual Excitation Skewness for Automatic Speech Polarity Detection", 2013).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import soundfile
import soxr
from scipy import signal
from scipy.linalg import solve_toeplitz

from scripts.make_speech import make_speech

RATE_LPC = 16_000
HOP = 160  # 10 ms frames
ORDER = 18


def espeak(text: str, voice: str) -> np.ndarray:
    """espeak-ng's speech at 16 kHz."""
    with tempfile.TemporaryDirectory() as folder:
        data = soundfile.read(make_speech(Path(folder) / "speech.wav", text, voice))[0]
    return soxr.resample(data, 48_000, RATE_LPC)


def rosenberg_derivative(
    period: int, open_share: float = 0.45, close_share: float = 0.15
) -> np.ndarray:
    """One period of the glottal flow's derivative (Rosenberg's model)."""
    tp, tn = max(2, round(open_share * period)), max(2, round(close_share * period))
    n = np.arange(period + 1)
    flow = np.where(
        n < tp,
        0.5 * (1 - np.cos(np.pi * n / tp)),
        np.where(n < tp + tn, np.cos(np.pi * (n - tp) / (2 * tn)), 0.0),
    )
    return np.diff(flow)


def glottal_voice(
    text: str, voice: str, f0: float, seed: int = 0, rate: int = 48_000
) -> np.ndarray:
    """espeak's `text` re-voiced at about `f0` Hz with positive-polarity glottal pulses."""
    rng = np.random.default_rng(seed)
    source = espeak(text, voice)
    frames = len(source) // HOP
    excitation = np.zeros(frames * HOP)
    voiced = np.zeros(frames, dtype=bool)
    window = np.hanning(400)
    coefficients, gains = [], []
    for i in range(frames):
        seg = source[max(0, i * HOP - 120) : i * HOP + 280]
        seg = np.pad(seg, (0, 400 - len(seg))) * window
        ac = np.correlate(seg, seg, "full")[399 : 400 + ORDER]
        ac[0] = ac[0] * 1.001 + 1e-9
        a = solve_toeplitz(ac[:ORDER], -ac[1 : ORDER + 1])
        coefficients.append(np.r_[1.0, a])
        gains.append(np.sqrt(max(ac[0] + np.dot(a, ac[1 : ORDER + 1]), 1e-12) / 400))
        centre = source[i * HOP : (i + 1) * HOP]
        crossings = np.mean(np.abs(np.diff(np.sign(centre)))) / 2 if len(centre) > 1 else 1
        voiced[i] = np.sqrt(np.mean(centre**2)) > 0.02 * np.max(np.abs(source)) and crossings < 0.15
    # A glottal pulse train with a gently moving pitch, over the voiced frames.
    t, pulses = 0, []
    while t < len(excitation):
        period = round(RATE_LPC / (f0 * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t / RATE_LPC))))
        pulses.append((t, period))
        t += period
    for start, period in pulses:
        if voiced[min(start // HOP, frames - 1)]:
            pulse = rosenberg_derivative(period)[: len(excitation) - start]
            excitation[start : start + len(pulse)] += pulse * period / 20
    noise = rng.standard_normal(len(excitation)) * 0.3
    for i in np.flatnonzero(~voiced):
        excitation[i * HOP : (i + 1) * HOP] += noise[i * HOP : (i + 1) * HOP]
    out = np.zeros_like(excitation)
    zi = np.zeros(ORDER)
    for i in range(frames):
        part = excitation[i * HOP : (i + 1) * HOP] * gains[i]
        out[i * HOP : (i + 1) * HOP], zi = signal.lfilter([1.0], coefficients[i], part, zi=zi)
    out = soxr.resample(out, RATE_LPC, rate)
    return 0.5 * out / np.max(np.abs(out))


VOICES = [  # (espeak voice, f0): men, women, other languages and texts
    ("en", 110),
    ("en-us", 125),
    ("en+f3", 210),
    ("en+f4", 230),
    ("de", 105),
    ("fr", 190),
    ("es", 140),
    ("it", 175),
    ("nl", 120),
    ("pt", 220),
]
TEXTS = [
    "The quick brown fox jumps over the lazy dog, while the band plays on.",
    "Seven bright mornings we walked along the river, and nobody noticed.",
    "Please call me back when you arrive at the station tonight.",
]
