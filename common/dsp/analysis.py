"""What an input needs: level, peak, noise floor, clipping, DC offset, mains hum,
bandwidth and polarity of a few seconds of talking, and the preset and gain that suit it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import signal

from airmic.common.audio import RATE
from airmic.common.dsp.filters import Samples, high_pass
from airmic.common.dsp.hum import Hum, detect_hum, notches
from airmic.common.dsp.polarity import Clap, Polarity, estimate_polarity, find_clap
from airmic.common.dsp.presets import PRESETS

TARGET_DB = -20.0  # the voice level the presets aim at (dBFS RMS while speaking)
FRAME = RATE // 20  # 50 ms level frames
Mask = npt.NDArray[np.bool_]  # over the 50 ms frames
CLIP = 0.999  # a sample this close to full scale was clipped (or about to be)
SILENCE_DB = -90.0  # a peak below this: nothing reached the input (16 bits' last step)


@dataclass(frozen=True)
class InputReport:
    seconds: float
    voice_db: float | None  # RMS while speaking, dBFS; None: no voice heard
    peak_db: float
    noise_db: float  # the floor between words (10th percentile of 50 ms levels)
    clipped: int  # samples at full scale
    dc: float  # mean, in full-scale units
    hum: Hum | None
    low_hz: float | None  # where the voice's long-term spectrum falls off, below and above
    high_hz: float | None
    polarity: Polarity  # from the voice's waveform
    clap: Clap | None  # from a hand clap's first peak: the surer test

    @property
    def snr_db(self) -> float | None:
        return None if self.voice_db is None else self.voice_db - self.noise_db

    @property
    def silent(self) -> bool:
        return self.peak_db < SILENCE_DB

    @property
    def inverted(self) -> bool:
        return (self.clap.sign if self.clap else self.polarity.sign) < 0


@dataclass(frozen=True)
class Recommendation:
    preset: str
    gain_db: float
    invert: bool
    reasons: list[str] = field(default_factory=list)

    def options(self) -> list[str]:
        out = ["--preset", self.preset]
        if self.gain_db:
            out += ["--gain", f"{self.gain_db:g}dB"]
        if self.invert:
            out.append("--invert")
        return out


def _db(power: float) -> float:
    return 10 * math.log10(power + 1e-12) + 3.0103  # as level_dbfs: a full-scale sine is 0


def analyse(samples: Samples) -> InputReport:
    """The report for a recording of someone talking (a few seconds, at RATE)."""
    x = np.asarray(samples, dtype=np.float64)
    dc = float(np.mean(x)) if len(x) else 0.0
    hum = detect_hum(x - dc)
    # Levels, bandwidth and polarity are the voice's: hum, offset and rumble out first.
    centred = signal.sosfiltfilt(high_pass(40.0), x - dc)
    if hum is not None:
        centred = signal.sosfiltfilt(notches(hum.freqs), centred)
    frames = len(centred) // FRAME
    powers = (
        np.mean(centred[: frames * FRAME].reshape(frames, FRAME) ** 2, axis=1)
        if frames
        else np.zeros(1)
    )
    levels = np.array([_db(p) for p in powers])
    noise = float(np.quantile(levels, 0.1))
    voiced = levels > max(noise + 12, float(levels.max()) - 40)
    voice = (
        _db(float(np.mean(powers[voiced]))) if voiced.any() and levels.max() > noise + 12 else None
    )
    low = high = None
    if voice is not None:
        low, high = _bandwidth(centred, voiced, levels <= noise + 3)
    return InputReport(
        seconds=len(x) / RATE,
        voice_db=voice,
        peak_db=20 * math.log10(float(np.max(np.abs(x), initial=0.0)) + 1e-12),
        noise_db=noise,
        clipped=int(np.count_nonzero(np.abs(x) >= CLIP)),
        dc=dc,
        hum=hum,
        low_hz=low,
        high_hz=high,
        polarity=estimate_polarity(centred) if voice is not None else Polarity(0, 0.0, 0),
        clap=find_clap(x - dc),
    )


def _spectrum(x: Samples, mask: Mask) -> tuple[Samples, Samples]:
    parts = [x[i * FRAME : (i + 1) * FRAME] for i in np.flatnonzero(mask)]
    data = np.concatenate(parts) if parts else np.zeros(4096)
    freqs, psd = signal.welch(data, RATE, nperseg=4096)
    # Third-octave smoothing, so single harmonics and hum lines do not count as edges.
    smooth = np.array(
        [np.mean(psd[(freqs >= f / 1.12) & (freqs <= f * 1.12)] + 1e-30) for f in freqs[1:]]
    )
    return freqs[1:], 10 * np.log10(smooth)


def _bandwidth(x: Samples, voiced: Mask, quiet: Mask) -> tuple[float | None, float | None]:
    freqs, speech = _spectrum(x, voiced)
    _, noise = _spectrum(x, quiet)
    band = (freqs >= 200) & (freqs <= 4000)
    ref = float(np.max(speech[band]))
    audible = (speech >= ref - 30) & (speech >= noise + 6)
    low_band = audible & (freqs >= 40) & (speech >= ref - 20)
    low = float(freqs[np.argmax(low_band)]) if low_band.any() else None
    high = float(freqs[len(freqs) - 1 - np.argmax(audible[::-1])]) if audible.any() else None
    return low, high


def recommend(report: InputReport) -> Recommendation:
    """The preset, gain and polarity for the input the report describes."""
    reasons = []
    if report.silent:
        return Recommendation(
            "mic", 0.0, False, ["no sound at all: is the input muted, or another one?"]
        )
    if report.voice_db is None:
        return Recommendation("mic", 0.0, False, ["no voice heard: talk while it records"])
    high = report.high_hz or 0.0
    low = report.low_hz or 0.0
    if report.voice_db >= -42 and high >= 7000:
        preset = "mic"
        reasons.append("full level and treble: a real microphone")
    elif high < 4500:
        preset = "speaker"
        reasons.append(f"weak treble (falls off at {high / 1000:.1f} kHz): a loudspeaker driver")
    elif low > 130:
        preset = "earbuds"
        reasons.append(f"no bass below {low:.0f} Hz and {report.voice_db:.0f} dBFS: earbuds")
    else:
        preset = "headphones"
        reasons.append(f"{report.voice_db:.0f} dBFS with some bass and treble: headphones")
    # The fixed gain that brings the voice to the target (AGC, where on, fine-tunes it).
    gain = TARGET_DB - report.voice_db
    gain = max(0.0, min(48.0, 2 * round(gain / 2)))
    if abs(gain - PRESETS[preset].gain_db) < 3:
        gain = PRESETS[preset].gain_db
    invert = report.inverted
    voice, clap = report.polarity.sign, report.clap
    if clap is not None and voice and voice != clap.sign:
        reasons.append("the voice's waveform and the clap disagree on polarity: the clap wins")
    if invert:
        reasons.append(f"the {'clap' if clap else 'voice'}'s polarity is inverted")
    if clap is None and not voice:
        reasons.append("polarity unsure: probe again and clap once, sharply, before you talk")
    if report.clipped:
        reasons.append(f"{report.clipped} clipped samples: turn the input down in the system mixer")
    if report.hum is not None:
        reasons.append(
            f"{report.hum.mains:g} Hz mains hum at {report.hum.level_db:.0f} dBFS: notched"
        )
    if abs(report.dc) > 0.001:
        reasons.append(f"DC offset {report.dc:+.4f}: removed by the DC blocker")
    return Recommendation(preset, gain, invert, reasons)
