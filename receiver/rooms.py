"""Rooms: each sender is one, by its name (a paired sender's name, the phone page's Name,
a plain RTP peer's host). A room outlives its streams: a sender that reconnects continues
it. Its settings apply to every stream in it, live: mute and gain on the playout thread at
each block, the preset (the DSP chain) to the streams that start after a change.

    --room kitchen:gain=6dB,preset=earbuds     --room hall:mute
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from airmic.common.dsp import PRESETS, DspSettings
from airmic.common.dsp.presets import parse_db
from airmic.common.errors import UsageError

MAX_GAIN_DB = 40.0


@dataclass
class Room:
    """A room's settings, shared with its streams' playout (plain attributes: each is read
    whole, and a block's late view of a change is harmless)."""

    name: str
    gain_db: float = 0.0
    muted: bool = False
    preset: str | None = None  # None: the receiver's --preset (or none)

    @property
    def factor(self) -> float:
        """What the room's blocks are multiplied by: 0 when muted."""
        return 0.0 if self.muted else math.pow(10.0, self.gain_db / 20)

    def dsp(self, default: DspSettings | None) -> DspSettings | None:
        return PRESETS[self.preset] if self.preset else default

    def apply(self, changes: dict[str, object]) -> None:
        """Changes from the dashboard: muted, gain_db, preset (None: the receiver's).
        Raises UsageError, changing nothing."""
        muted, gain, preset = self.muted, self.gain_db, self.preset
        for key, value in changes.items():
            if key == "muted" and isinstance(value, bool):
                muted = value
            elif (
                key == "gain_db" and isinstance(value, int | float) and not isinstance(value, bool)
            ):
                if not -MAX_GAIN_DB <= value <= MAX_GAIN_DB:  # nan too
                    raise UsageError(f"gain from -40 to +40 dB, not {value}")
                gain = float(value)
            elif key == "preset" and (value is None or value in PRESETS):
                preset = value  # type: ignore[assignment]
            else:
                raise UsageError(f"{key}={value!r}? (muted, gain_db, preset)")
        self.muted, self.gain_db, self.preset = muted, gain, preset

    def describe(self) -> str:
        parts = [
            f"gain {self.gain_db:+g} dB" if self.gain_db else "",
            "muted" if self.muted else "",
        ]
        parts.append(f"preset {self.preset}" if self.preset else "")
        return ", ".join(p for p in parts if p) or "as received"


def parse_room(text: str) -> Room:
    """`NAME[:gain=6dB,preset=earbuds,mute]`. Raises UsageError."""
    name, _, spec = text.partition(":")
    name = name.strip()
    if not name:
        raise UsageError(f"--room {text!r}: NAME[:gain=6dB,preset=earbuds,mute]")
    room = Room(name)
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, _, value = item.partition("=")
        if key == "mute" and not value:
            room.muted = True
        elif key == "gain" and value:
            try:
                room.gain_db = parse_db(value)
            except ValueError as exc:
                raise UsageError(f"--room {name}: gain {value!r}: {exc}") from None
            if not -MAX_GAIN_DB <= room.gain_db <= MAX_GAIN_DB:
                raise UsageError(f"--room {name}: gain from -40 to +40 dB, not {value!r}")
        elif key == "preset" and value:
            if value not in PRESETS:
                raise UsageError(f"--room {name}: unknown preset {value!r}: {', '.join(PRESETS)}")
            room.preset = value
        else:
            raise UsageError(
                f"--room {name}: {item!r}? (gain=6dB, preset={'|'.join(PRESETS)}, mute)"
            )
    return room
