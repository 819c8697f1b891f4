"""Comparing what came out with what went in, aligned by cross-correlation.

A receiver that follows clock drift and the network's jitter time-warps its output by a
few parts per thousand at most; so the output is aligned once as a whole, then followed
window by window (each within a few milliseconds of the last), as speech-quality measures
do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

WINDOW = 4_800  # 0.1 s (Opus itself scores about 0.95 on speech, window by window)
SEARCH = 480  # +-10 ms of local realignment
WIDE = 14_400  # +-300 ms, when the track is lost
CLEAN = 0.92
"""How well speech that the receiver played clean into a file matches its input, window by
window: Opus itself scores about 0.95, and the delay control's few drops and inserts on a
busy machine a little less (CI runs: 0.940-0.9495 with nothing lost or late)."""


@dataclass
class Match:
    correlation: float  # energy-weighted mean of the windows' normalised correlations
    lag: int  # samples by which `out` lags `ref`, as a whole
    longest_gap: int  # longest run of 10 ms frames where ref has sound and out has none
    worst_window: float  # the lowest correlation of a window with sound in it
    aligned: np.ndarray  # `out`, realigned window by window to `ref` (zeros where ref is)


def best_lag(ref: np.ndarray, out: np.ndarray, max_lag: int = 96_000) -> int:
    """The delay of `out` against `ref` (at most `max_lag`: repeated material has many)."""
    n = 1 << (len(ref) + len(out)).bit_length()
    spectrum = np.fft.rfft(out, n) * np.conj(np.fft.rfft(ref, n))
    xcorr = np.fft.irfft(spectrum, n)
    lags = np.concatenate((xcorr[: max_lag + 1], xcorr[n - max_lag :]))
    lag = int(np.argmax(lags))  # signed: an inverted output must not count as a match
    return lag if lag <= max_lag else lag - len(lags)


def match(
    ref: np.ndarray, out: np.ndarray, frame: int = 480, window: int = WINDOW, max_lag: int = 96_000
) -> Match:
    """How well `out` reproduces `ref` (delayed by at most `max_lag`)."""
    ref = ref.astype(np.float64)
    out = out.astype(np.float64)
    lag = follow = best_lag(ref, out, max_lag)
    weights, scores, aligned = [], [], np.zeros_like(ref)
    for start in range(0, len(ref) - window // 4, window):
        a = ref[start : start + window]
        energy = float(np.dot(a, a))
        if energy < 1e-9 * len(a):
            continue
        at, score = _locate(a, out, start + follow, SEARCH)
        if score < 0.5:  # lost track: the receiver may have jumped (a stall, a restart)
            wide = _locate(a, out, start + follow, WIDE)
            if wide[1] > 0.8:
                at, score = wide
        if at < 0:
            continue
        follow = at - start  # the next window is searched around this one's delay
        aligned[start : start + len(a)] = out[at : at + len(a)]
        scores.append(score)
        weights.append(energy)
    correlation = float(np.average(scores, weights=weights)) if scores else 0.0
    loud = [s for s, w in zip(scores, weights, strict=True) if w > 1e-3 * max(weights)]
    gap = _longest_gap(ref, aligned, frame)
    return Match(correlation, lag, gap, min(loud, default=0.0), aligned)


def _locate(a: np.ndarray, out: np.ndarray, center: int, search: int) -> tuple[int, float]:
    """Where in `out`, within `search` of `center`, `a` correlates best, and how well."""
    lo = max(0, center - search)
    b = out[lo : center + len(a) + search]
    if len(b) < len(a):
        return -1, 0.0
    # scipy picks direct or FFT: the same figures as np.correlate (to 1e-13), but the wide
    # search (a window against 0.7 s) takes 2.5 ms a window instead of 21.
    local = signal.correlate(b, a, mode="valid")
    power = np.concatenate(([0.0], np.cumsum(b * b)))
    local /= np.sqrt(power[len(a) :] - power[: len(b) - len(a) + 1]) + 1e-12
    shift = int(np.argmax(local))
    return lo + shift, float(local[shift] / (np.linalg.norm(a) + 1e-12))


def _longest_gap(ref: np.ndarray, out: np.ndarray, frame: int) -> int:
    frames = len(ref) // frame
    r = np.sqrt(np.mean(ref[: frames * frame].reshape(frames, frame) ** 2, axis=1))
    o = np.sqrt(np.mean(out[: frames * frame].reshape(frames, frame) ** 2, axis=1))
    return _longest_run((r > 10 ** (-40 / 20)) & (o < 0.1 * r))


def _longest_run(flags: np.ndarray) -> int:
    longest = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        longest = max(longest, run)
    return longest


def silences(
    reference: np.ndarray, aligned: np.ndarray, frame: int = 240
) -> tuple[int, float, float]:
    """How many times, for how many ms in all, and for how long at most, the recording
    falls silent where the reference sounds (in 5 ms frames)."""
    frames = len(reference) // frame
    power = [(x[: frames * frame].reshape(frames, frame) ** 2).mean(axis=1)
             for x in (reference, aligned)]  # fmt: skip
    missing = (power[0] > 1e-4) & (power[1] < 0.01 * power[0])
    runs = int(np.sum(missing[1:] & ~missing[:-1]) + missing[0])
    return runs, float(missing.sum() * frame / 48), _longest_run(missing) * frame / 48


def as_counted(result: Match, stream: dict, clean: float) -> bool:
    """Whether a mic's recording shows what the receiver counted for its stream (a
    `--stats-json` entry). A stream it calls clean (no gap at the output, nothing lost or
    stretched) matches to `clean` with no gap over one 10 ms frame. Where it counted damage,
    a busy machine may lower the match (never below 0.8), and a gap of N frames needs
    (N - 1) x 10 ms counted: gaps at the output, or the stream stretched while its buffer
    was dry (a file's "gap" is then the 10 ms frames it is out of step). Damage it did not
    count fails."""
    counted = stream["gaps"] or stream["underruns"] or stream["lost"]
    counted_ms = stream["gap_ms"] + stream["stretched"] / 48
    if result.longest_gap > 1 and counted_ms < 10 * (result.longest_gap - 1):
        return False
    return result.correlation >= (0.8 if counted else clean)


def from_first_sound(audio: np.ndarray) -> np.ndarray:
    """`audio` from its first sound on: a mic or a room's file holds silence before its
    stream begins, which is not a gap."""
    return audio[int(np.argmax(np.abs(audio) > 0.01)) :]
