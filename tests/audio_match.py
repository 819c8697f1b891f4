"""Comparing what came out with what went in: alignment by cross-correlation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Match:
    correlation: float  # normalised cross-correlation at the best lag
    lag: int  # samples by which `out` lags `ref`
    longest_gap: int  # longest run of 10 ms windows where ref has sound and out has none


def best_lag(ref: np.ndarray, out: np.ndarray) -> int:
    n = 1 << (len(ref) + len(out)).bit_length()
    spectrum = np.fft.rfft(out, n) * np.conj(np.fft.rfft(ref, n))
    xcorr = np.fft.irfft(spectrum, n)
    lag = int(np.argmax(xcorr))  # signed: an inverted output must not count as a match
    return lag - n if lag > n // 2 else lag


def match(ref: np.ndarray, out: np.ndarray, window: int = 480) -> Match:
    """How well `out` reproduces `ref`, once aligned."""
    ref = ref.astype(np.float64)
    out = out.astype(np.float64)
    lag = best_lag(ref, out)
    if lag >= 0:
        a, b = ref, out[lag:]
    else:
        a, b = ref[-lag:], out
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    corr = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return Match(corr, lag, _longest_gap(a, b, window))


def _longest_gap(ref: np.ndarray, out: np.ndarray, window: int) -> int:
    frames = len(ref) // window
    r = np.sqrt(np.mean(ref[: frames * window].reshape(frames, window) ** 2, axis=1))
    o = np.sqrt(np.mean(out[: frames * window].reshape(frames, window) ** 2, axis=1))
    loud = r > 10 ** (-40 / 20)
    missing = loud & (o < 0.1 * r)
    longest = run = 0
    for m in missing:
        run = run + 1 if m else 0
        longest = max(longest, run)
    return longest
