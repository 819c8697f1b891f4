"""Presets for each kind of transducer, and the overrides a user gives on top of one: as
command-line options or as a TOML file with the same names.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airmic.common.dsp.settings import DspSettings, EqBand
from airmic.common.errors import UsageError

# What every preset for a makeshift transducer does after its own gain and EQ.
_SHAPED = DspSettings(hum="auto", gate=True, agc=-20.0, compressor=True)

PRESETS: dict[str, DspSettings] = {
    "mic": DspSettings(
        notes=(
            "nearly transparent: DC blocker and a -1 dBFS limiter, nothing else",
            "a real microphone already has the level, the response and the polarity",
        ),
    ),
    "headphones": dataclasses.replace(
        _SHAPED,
        gain_db=24.0,
        highpass=80.0,
        eq=(EqBand("peak", 3000, 4.0, 1.0), EqBand("high-shelf", 6000, 4.0)),
        denoise=2,
        notes=(
            "+24 dB: a 40 mm driver gives about 20 dB less than a microphone",
            "high-pass 80 Hz against handling noise; presence +4 dB at 3 kHz, shelf +4 dB "
            "from 6 kHz for the treble a driver's heavy membrane loses",
            "mains hum found and notched; noise suppression (WebRTC, level 2) for the hiss "
            "the gain brings up; gate, compressor, AGC to -20 dBFS, limiter",
        ),
    ),
    "earbuds": dataclasses.replace(
        _SHAPED,
        gain_db=30.0,
        highpass=120.0,
        eq=(EqBand("peak", 3000, 6.0, 1.0), EqBand("high-shelf", 5000, 6.0)),
        denoise=2,
        notes=(
            "+30 dB: a 10 mm earbud driver is weaker still",
            "high-pass 120 Hz (a tiny membrane gives no bass, only rumble and handling); "
            "presence +6 dB at 3 kHz, shelf +6 dB from 5 kHz",
            "hum, noise suppression level 2, gate, compressor, AGC, limiter",
        ),
    ),
    "speaker": dataclasses.replace(
        _SHAPED,
        gain_db=30.0,
        highpass=100.0,
        eq=(
            EqBand("peak", 220, -6.0, 1.4),
            EqBand("peak", 2800, 8.0, 0.9),
            EqBand("high-shelf", 4000, 8.0),
        ),
        denoise=3,
        notes=(
            "+30 dB: a loudspeaker driver as a mic gives about -50 dBFS of voice",
            "high-pass 100 Hz and -6 dB at 220 Hz against the cone's resonance (the boom); "
            "+8 dB at 2.8 kHz and a +8 dB shelf from 4 kHz, where its heavy cone falls off",
            "hum, stronger noise suppression (level 3), gate, compressor, AGC, limiter",
        ),
    ),
}


def parse_db(text: str | float) -> float:
    """'30dB', '+6 dB', '-3' or a number, in dB."""
    if isinstance(text, int | float):
        return float(text)
    match = re.fullmatch(r"\s*([+-]?\d+(?:\.\d+)?)\s*(?:dB)?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a level in dB: {text!r} (e.g. 30dB or -6dB)")
    return float(match[1])


def _hertz_or_off(value: Any) -> float | None:
    if value in (False, "off", "none", None):
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(k)?(?:Hz)?\s*", str(value), re.IGNORECASE)
    if not match:
        raise ValueError(f"not a frequency: {value!r} (e.g. 100 or 100Hz, or off)")
    return float(match[1]) * (1000 if match[2] else 1)


def _hum(value: Any) -> str:
    text = (
        {True: "auto", False: "off"}.get(value, str(value))
        if isinstance(value, bool)
        else str(value)
    )
    text = text.lower().removesuffix("hz")
    if text not in ("auto", "50", "60", "off"):
        raise ValueError(f"hum must be auto, 50, 60 or off, not {value!r}")
    return text


def _denoise(value: Any) -> int:
    if value in (False, "off", 0, "0"):
        return 0
    if value is True:
        return 2
    level = int(value)
    if not 1 <= level <= 4:
        raise ValueError(f"denoise must be 1-4 or off, not {value!r}")
    return level


def _agc(value: Any) -> float | None:
    if value in (False, "off", None):
        return None
    return -20.0 if value is True else parse_db(value)


def _bands(value: Any) -> tuple[EqBand, ...]:
    return tuple(EqBand.parse(band) for band in ([value] if isinstance(value, str) else value))


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, not {value!r}")
    return value


_FIELDS: dict[str, Any] = {
    "dc": _flag,
    "invert": _flag,
    "gain": parse_db,
    "highpass": _hertz_or_off,
    "hum": _hum,
    "eq": _bands,
    "denoise": _denoise,
    "gate": _flag,
    "gate_open": parse_db,
    "gate_close": parse_db,
    "agc": _agc,
    "compressor": _flag,
    "limiter": _flag,
}
_NAMES = {"gain": "gain_db", "gate_open": "gate_open_db", "gate_close": "gate_close_db"}


def settings(preset: str = "mic", overrides: Mapping[str, Any] | None = None) -> DspSettings:
    """A preset with overrides (names as in the TOML file and the options) applied."""
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}: one of {', '.join(PRESETS)}")
    changes = {}
    for key, value in (overrides or {}).items():
        name = key.replace("-", "_")
        if name not in _FIELDS:
            raise UsageError(f"unknown DSP setting {key!r}: one of {', '.join(_FIELDS)}")
        try:
            changes[_NAMES.get(name, name)] = _FIELDS[name](value)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"DSP setting {key}: {exc}") from None
    try:
        return dataclasses.replace(PRESETS[preset], **changes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def load_config(path: Path) -> tuple[str, dict[str, Any]]:
    """A saved setup: `preset = "speaker"` and any overrides, e.g. `gain = "34dB"`."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read the DSP config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"the DSP config {path} is not valid TOML: {exc}") from None
    table = data.get("dsp", data)  # a [dsp] table, or the settings at the top level
    preset = str(table.pop("preset", "mic"))
    return preset, table


_OPTIONS = (
    "gain",
    "invert",
    "eq",
    "highpass",
    "hum",
    "denoise",
    "agc",
    "gate",
    "compressor",
    "limiter",
)


def add_dsp_options(parser: argparse.ArgumentParser, default_preset: str | None = "mic") -> None:
    """The DSP options; with `default_preset` None the chain is off unless one is given."""
    default = (
        f"default {default_preset}: nearly transparent"
        if default_preset
        else "default: no processing, airmic-send does it"
    )
    group = parser.add_argument_group(
        "DSP chain",
        "A preset for the transducer, then overrides. Stages in order: DC blocker, polarity, "
        "gain, high-pass, hum notches, EQ, noise suppression, gate, compressor, AGC, limiter.",
    )
    group.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=None,
        help=f"what is used as the microphone ({default})",
    )
    group.add_argument("--dsp-config", metavar="TOML", type=Path, help="a saved setup (see README)")
    group.add_argument("--gain", metavar="DB", help="fixed gain, e.g. 30dB")
    group.add_argument("--invert", action="store_true", default=None, help="invert the polarity")
    group.add_argument(
        "--eq",
        metavar="BAND",
        action="append",
        help="an EQ band KIND:GAINdB@FREQ[/Q], KIND low-shelf, peak (presence) or high-shelf, "
        "e.g. presence:+6dB@3k; repeatable; replaces the preset's bands",
    )
    group.add_argument("--highpass", metavar="HZ", help="high-pass corner in Hz, or off")
    group.add_argument("--hum", metavar="MODE", help="mains hum removal: auto, 50, 60 or off")
    group.add_argument("--denoise", metavar="LEVEL", help="noise suppression 1-4, or off")
    group.add_argument(
        "--agc", metavar="DB", help="automatic gain to this voice level (dBFS), or off"
    )
    for stage in ("gate", "compressor", "limiter"):
        group.add_argument(
            f"--no-{stage}", dest=stage, action="store_false", default=None, help=f"no {stage}"
        )
    group.add_argument("--no-dsp", action="store_true", help="no processing at all")


def settings_from_args(
    args: argparse.Namespace, default_preset: str | None = "mic"
) -> DspSettings | None:
    """The settings the options ask for: the config file, then the preset, then each option.
    None for --no-dsp, or when nothing is asked for and there is no default preset."""
    if args.no_dsp:
        return None
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in _OPTIONS if getattr(args, name) is not None
    }
    preset = default_preset
    if args.dsp_config is not None:
        preset, saved = load_config(args.dsp_config)
        overrides = saved | overrides
    preset = args.preset or preset
    if preset is None and not overrides:
        return None
    return settings(preset or "mic", overrides)
