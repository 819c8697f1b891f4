"""Level-dependent stages: noise gate, automatic gain, compressor, limiter.

Each measures the level of 0.5 ms sub-blocks with numpy, runs its (non-linear) envelope or
state machine once per sub-block in plain Python (twenty steps per 10 ms, not 480), and
applies the gain as a per-sample line between sub-block boundaries, so no step is heard.
The state carries over from block to block: blocks that are whole sub-blocks give exactly
the output of one piece.
"""

from __future__ import annotations

import math

import numpy as np

from airmic.common.audio import RATE
from airmic.common.dsp.filters import Samples

SUB = 24  # samples: 0.5 ms; divides every frame size Opus has at 48 kHz (2.5 ms up)


def _coefficient(seconds: float) -> float:
    """One-pole smoothing factor per sub-block for a time constant."""
    return 1.0 - math.exp(-SUB / (RATE * seconds)) if seconds > 0 else 1.0


def _db(power: Samples) -> Samples:
    return 10 * np.log10(power + 1e-12)


def _sub_blocks(block: Samples) -> Samples:
    """Mean square of each sub-block (the last may be short)."""
    starts = np.arange(0, len(block), SUB)
    return np.add.reduceat(np.square(block), starts) / np.diff([*starts, len(block)])


def _ramp(block: Samples, gains: list[float], first: float) -> Samples:
    """Apply linear gain, moving from `first` to gains[i] across sub-block i."""
    n = len(block)
    ends = [min(n, (i + 1) * SUB) for i in range(len(gains))]
    curve = np.interp(np.arange(1, n + 1), [0, *ends], [first, *gains])
    return block * curve


class Gain:
    """A fixed gain, in dB."""

    name = "gain"
    latency = 0

    def __init__(self, db: float) -> None:
        self.db = db
        self._factor = 10 ** (db / 20)

    def process(self, block: Samples) -> Samples:
        return block * self._factor


class Invert:
    """Polarity inversion: a driver wired the other way round, or a speaker used as a mic."""

    name = "invert"
    latency = 0

    def process(self, block: Samples) -> Samples:
        return -block


class Gate:
    """Noise gate with hysteresis and hold: opens when the level rises above `open_db`,
    closes only after it has stayed below `close_db` for `hold` seconds; closed, it lowers
    the signal by `range_db` (not to silence, which sounds like a dropout)."""

    name = "gate"
    latency = 0

    def __init__(
        self,
        open_db: float = -50.0,
        close_db: float = -58.0,
        hold: float = 0.15,
        range_db: float = -30.0,
        attack: float = 0.001,
        release: float = 0.08,
    ) -> None:
        if close_db > open_db:
            raise ValueError("the gate's close threshold must be at or below its open one")
        self.open_db, self.close_db, self.range_db = open_db, close_db, range_db
        self._hold_subs = round(hold * RATE / SUB)
        self._attack, self._release = _coefficient(attack), _coefficient(release)
        self._level = _coefficient(0.005)  # the detector: ~5 ms RMS
        self.is_open = False
        self._power = 0.0
        self._below = 0
        self._gain = 10 ** (range_db / 20)
        self._floor = self._gain

    def process(self, block: Samples) -> Samples:
        powers = _sub_blocks(block)
        first, gains = self._gain, []
        for power in powers.tolist():
            self._power += self._level * (power - self._power)
            level = 10 * math.log10(self._power + 1e-12) + 3.0103  # dBFS, as level_dbfs
            if level > self.open_db:
                self.is_open, self._below = True, 0
            elif level < self.close_db:
                self._below += 1
                self.is_open = self.is_open and self._below <= self._hold_subs
            else:  # between the thresholds: the gate stays as it is, the hold restarts
                self._below = 0
            target = 1.0 if self.is_open else self._floor
            rate = self._attack if target > self._gain else self._release
            self._gain += rate * (target - self._gain)
            gains.append(self._gain)
        return _ramp(block, gains, first)

    def activity(self) -> str:
        return "gate open" if self.is_open else "gate closed"


class Compressor:
    """Feed-forward compressor: above `threshold_db` the level rises 1/`ratio` as fast;
    `makeup_db` restores the loudness it takes."""

    name = "compressor"
    latency = 0

    def __init__(
        self,
        threshold_db: float = -24.0,
        ratio: float = 3.0,
        attack: float = 0.005,
        release: float = 0.12,
        makeup_db: float = 0.0,
    ) -> None:
        self.threshold_db, self.ratio, self.makeup_db = threshold_db, ratio, makeup_db
        self._attack, self._release = _coefficient(attack), _coefficient(release)
        self.reduction_db = 0.0  # current gain reduction (positive dB)

    def process(self, block: Samples) -> Samples:
        levels = _db(_sub_blocks(block)) + 3.0103  # RMS in dBFS, as level_dbfs
        first = 10 ** ((self.makeup_db - self.reduction_db) / 20)
        gains = []
        slope = 1 - 1 / self.ratio
        for level in levels.tolist():
            wanted = max(0.0, level - self.threshold_db) * slope
            rate = self._attack if wanted > self.reduction_db else self._release
            self.reduction_db += rate * (wanted - self.reduction_db)
            gains.append(10 ** ((self.makeup_db - self.reduction_db) / 20))
        return _ramp(block, gains, first)

    def activity(self) -> str:
        return _reduction("comp", self.reduction_db)


class Agc:
    """Automatic gain: brings the voice's level (the RMS while it speaks) to `target_db`,
    slowly (at most `rate_db` per second), within `max_gain_db`. Pauses do not count: the
    level is only measured while the signal stands well above the noise floor it tracks."""

    name = "agc"
    latency = 0

    def __init__(
        self,
        target_db: float = -20.0,
        max_gain_db: float = 24.0,
        min_gain_db: float = -12.0,
        rate_db: float = 6.0,
        speech_above_floor_db: float = 15.0,
    ) -> None:
        self.target_db, self.max_gain_db, self.min_gain_db = target_db, max_gain_db, min_gain_db
        self._step = rate_db * SUB / RATE
        self._speech_margin = speech_above_floor_db
        self._smooth = _coefficient(0.02)  # syllable-rate level
        self._voice = _coefficient(1.5)  # the voice's running level
        self._power = 0.0
        self.floor_db = -90.0
        self.voice_db: float | None = None
        self._voice_power = 0.0
        self.gain_db = 0.0

    def process(self, block: Samples) -> Samples:
        powers = _sub_blocks(block)
        first = 10 ** (self.gain_db / 20)
        gains = []
        for power in powers.tolist():
            self._power += self._smooth * (power - self._power)
            level = 10 * math.log10(self._power + 1e-12) + 3.0103
            # Noise floor: falls at once, rises 3 dB a second (minimum tracking).
            self.floor_db = min(level, self.floor_db + 3.0 * SUB / RATE)
            now_db = 10 * math.log10(power + 1e-12) + 3.0103
            if min(level, now_db) > self.floor_db + self._speech_margin and now_db > -80:
                # The voice's level: mean power of the sub-blocks where it speaks.
                self._voice_power += self._voice * (power - self._voice_power)
                if self.voice_db is None:
                    self._voice_power = power
                self.voice_db = 10 * math.log10(self._voice_power + 1e-12) + 3.0103
                wanted = min(
                    self.max_gain_db, max(self.min_gain_db, self.target_db - self.voice_db)
                )
                self.gain_db += max(-self._step * 4, min(self._step, wanted - self.gain_db))
            gains.append(10 ** (self.gain_db / 20))
        return _ramp(block, gains, first)

    def activity(self) -> str:
        return f"agc {self.gain_db:+.0f} dB"


class Limiter:
    """Look-ahead peak limiter: no sample leaves above `ceiling_db`. The signal is delayed
    by one sub-block so the gain is already down when a peak arrives (0.5 ms of latency);
    the gain then recovers with `release`."""

    name = "limiter"
    latency = SUB

    def __init__(self, ceiling_db: float = -1.0, release: float = 0.05) -> None:
        self.ceiling = 10 ** (ceiling_db / 20)
        self._release = _coefficient(release)
        self._delay = np.zeros(SUB)
        self._allowed = 1.0  # the gain the delayed sub-block allows
        self._gain = 1.0
        self.reduction_db = 0.0

    def process(self, block: Samples) -> Samples:
        data = np.concatenate((self._delay, block))
        out, self._delay = data[: len(block)], data[len(block) :]
        starts = list(range(0, len(data), SUB))
        peaks = np.maximum.reduceat(np.abs(data), starts)
        allowed = np.minimum(1.0, self.ceiling / np.maximum(peaks, 1e-12)).tolist()
        first, gains = self._gain, []
        # A sub-block's gain moves linearly from its start value to its end value; both are
        # kept at or below what it allows, and its end also below what the next allows.
        for i in range(-(-len(out) // SUB)):
            released = self._gain + self._release * (1.0 - self._gain)
            self._gain = min(released, allowed[i], allowed[i + 1] if i + 1 < len(allowed) else 1.0)
            gains.append(self._gain)
        self.reduction_db = max(0.0, -20 * math.log10(min(gains, default=1.0)))
        return _ramp(out, gains, first)  # at or below the ceiling by construction

    def activity(self) -> str:
        return _reduction("limit", self.reduction_db)


def _reduction(name: str, db: float) -> str:
    """A gain reduction for the meters: 'limit -3 dB', or 'limit idle' (never '-0 dB')."""
    db = abs(db)
    return f"{name} -{db:.0f} dB" if db >= 0.5 else f"{name} idle"
