"""What the DSP chain does, as data: its settings (presets are instances) and EQ bands.
Kept apart from the stages (numpy, scipy) so that a command's options and --help load in
an instant."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NYQUIST = 24_000  # Hz, at airmic's 48 kHz (common.audio.RATE, which loads numpy)

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
        if not 10 <= self.freq < NYQUIST:
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

    def __str__(self) -> str:
        freq = f"{self.freq / 1000:g}k" if self.freq >= 1000 else f"{self.freq:g}"
        return f"{self.kind}:{self.gain_db:+g}dB@{freq}/{self.q:g}"


@dataclass(frozen=True)
class DspSettings:
    """What the chain does; every stage can be turned off. Presets are instances of it."""

    dc: bool = True  # DC blocker (5 Hz first-order high-pass)
    invert: bool = False  # polarity
    gain_db: float = 0.0  # fixed gain
    highpass: float | None = None  # Hz, second-order Butterworth
    hum: str = "off"  # "auto" (find 50 or 60 Hz by itself), "50", "60" or "off"
    eq: tuple[EqBand, ...] = ()
    denoise: int = 0  # WebRTC noise suppression level 1-4; 0 off
    gate: bool = False
    gate_open_db: float = -50.0
    gate_close_db: float = -58.0
    agc: float | None = None  # target voice level, dBFS RMS while speaking; None off
    compressor: bool = False
    limiter: bool = True  # at -1 dBFS: nothing the encoder gets can clip
    notes: tuple[str, ...] = field(default=(), compare=False)  # why, for --help and docs
