"""Access to sound devices through sounddevice (PortAudio), loaded only when needed."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from airmic.common.errors import DeviceError


def sounddevice() -> ModuleType:
    """The sounddevice module, or a DeviceError saying how to get PortAudio."""
    try:
        import sounddevice as sd
    except OSError as exc:
        raise DeviceError(
            f"PortAudio is missing ({exc}); install it, e.g. 'apt-get install libportaudio2'"
        ) from None
    return sd


def find_device(spec: str, kind: str) -> int | None:
    """The index of the input or output device named by `spec` (a name part or an index);
    None for the default device. `kind` is 'input' or 'output'."""
    sd = sounddevice()
    channels = f"max_{kind}_channels"
    devices: list[dict[str, Any]] = list(sd.query_devices())
    if spec in ("", "default"):
        try:
            default = sd.query_devices(kind=kind)
        except sd.PortAudioError:
            default = None
        if not default or not default[channels]:
            hint = "--input file:PATH or tone:FREQ" if kind == "input" else "--sink wav:PATH"
            raise DeviceError(
                f"there is no default {kind} device (see --list-devices, or use {hint})"
            )
        return None
    if spec.isdigit():
        index = int(spec)
        if index < len(devices) and devices[index][channels] > 0:
            return index
        raise DeviceError(f"no {kind} device with index {index} (see --list-devices)")
    matches = [
        i for i, d in enumerate(devices) if spec.lower() in d["name"].lower() and d[channels]
    ]
    if not matches:
        raise DeviceError(f"no {kind} device matches {spec!r} (see --list-devices)")
    exact = [i for i in matches if devices[i]["name"].lower() == spec.lower()]
    if len(matches) > 1 and not exact:
        names = ", ".join(repr(devices[i]["name"]) for i in matches)
        raise DeviceError(f"{spec!r} matches several {kind} devices: {names}")
    return (exact or matches)[0]


def describe_devices() -> str:
    """A listing of the sound devices, one line each, as `--list-devices` prints it."""
    sd = sounddevice()
    lines = []
    for index, dev in enumerate(sd.query_devices()):
        kinds = [
            f"{dev['max_input_channels']} in" if dev["max_input_channels"] else "",
            f"{dev['max_output_channels']} out" if dev["max_output_channels"] else "",
        ]
        lines.append(f"{index:3d}  {dev['name']}  ({', '.join(k for k in kinds if k)})")
    return "\n".join(lines) if lines else "no sound devices found"
