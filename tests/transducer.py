"""A simulator of makeshift microphones: what clean speech becomes through a driver used
the wrong way round (polarity, level, response), with mains hum, DC offset and noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

RATE = 48_000


@dataclass(frozen=True)
class Transducer:
    gain_db: float  # against the clean speech
    low_hz: float  # second-order bass roll-off
    high_hz: float  # fourth-order treble loss
    boom_db: float = 0.0  # the cone's resonance, a peak at 200 Hz
    invert: bool = False


KINDS = {
    "mic": Transducer(0.0, 30, 16_000),
    "headphones": Transducer(-22.0, 90, 6_000, invert=True),
    "earbuds": Transducer(-26.0, 300, 5_500, invert=True),
    "speaker": Transducer(-30.0, 150, 2_800, boom_db=8.0, invert=True),
}


def simulate(
    speech: np.ndarray,
    kind: str = "speaker",
    mains: float = 50.0,
    hum_db: float = -56.0,
    dc: float = 0.02,
    noise_db: float = -72.0,
    seed: int = 0,
) -> np.ndarray:
    """`speech` (clean, at 48 kHz) as the transducer `kind` would deliver it."""
    t = KINDS[kind]
    x = speech.astype(np.float64) * 10 ** (t.gain_db / 20) * (-1 if t.invert else 1)
    x = signal.sosfilt(signal.butter(2, t.low_hz, "highpass", fs=RATE, output="sos"), x)
    x = signal.sosfilt(signal.butter(4, t.high_hz, "lowpass", fs=RATE, output="sos"), x)
    if t.boom_db:
        b, a = signal.iirpeak(200, 2.0, fs=RATE)
        x = x + (10 ** (t.boom_db / 20) - 1) * signal.lfilter(b, a, x)
    n = np.arange(len(x)) / RATE
    hum = sum(
        10 ** ((hum_db - drop) / 20) * np.sqrt(2) * np.sin(2 * np.pi * mains * h * n + h)
        for h, drop in ((1, 0), (2, 8), (3, 3), (5, 8), (7, 12))
    )
    noise = np.random.default_rng(seed).standard_normal(len(x)) * 10 ** (noise_db / 20)
    return (x + hum + dc + noise).astype(np.float32)


HUM_HARMONICS = (1, 2, 3, 5, 7)


def hum_level_db(x: np.ndarray, mains: float = 50.0) -> float:
    """The hum's power (lock-in at each harmonic), in dB against the whole signal's power."""
    n = np.arange(len(x)) / RATE
    power = 0.0
    for h in HUM_HARMONICS:
        phasor = np.exp(-2j * np.pi * mains * h * n)
        power += 2 * abs(np.mean(x * phasor)) ** 2
    return 10 * np.log10(power / np.mean(np.square(x.astype(np.float64))))


def clap(seed: int = 0, peak: float = 0.9) -> np.ndarray:
    """A hand clap as a microphone of normal polarity hears it: a sharp compression (the
    air pushed out from between the palms, about 0.6 ms), then the palms' decaying ring."""
    rng = np.random.default_rng(seed)
    n = int(0.08 * RATE)
    pulse = np.zeros(n)
    width = int(0.0006 * RATE)
    pulse[:width] = np.sin(np.pi * np.arange(width) / width)
    band = signal.butter(2, [800, 3000], "bandpass", fs=RATE, output="sos")
    ring = signal.sosfilt(band, rng.standard_normal(n) * np.exp(-np.arange(n) / RATE / 0.012))
    return peak * (pulse + 0.35 * ring)
