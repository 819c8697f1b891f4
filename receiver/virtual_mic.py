"""The virtual microphone: a source named "AirMic" that every app can pick.

macOS and Windows have no virtual audio device without a driver: there, `virtual` finds
a virtual cable (BlackHole, VB-CABLE) by name and plays into its input side.

On the PulseAudio server (or PipeWire's pipewire-pulse), a clocked null sink takes the
received audio and a remap source on its monitor is the microphone apps see (a null sink
needs `norewinds=1`, or the start of the audio is lost). Each stream plays into the null
sink through libpulse (`airmic.receiver.pulse_sink`: one thread writes every mic), so
PulseAudio delivers silence while no stream plays. The modules carry the tag
`airmic.mic=NAME` and the receiver's PID: they are unloaded on exit, and after a crash the
next start finds the stale ones and replaces them, touching no one else's.

Control goes through libpulse (pulsectl). Runs on the event loop's thread, at start and
exit only; each call blocks for a round trip to the server.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from dataclasses import dataclass
from typing import Any

from airmic.common.devices import sounddevice
from airmic.common.errors import DeviceError, UsageError
from airmic.common.playout import BLOCK
from airmic.receiver.player import Output
from airmic.receiver.pulse_sink import PulseOutput, PulseWriters
from airmic.receiver.sinks import DeviceSinkFactory, SinkFactory, SinkPlan

log = logging.getLogger(__name__)

NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
PLATFORM: str = sys.platform  # a plain str: mypy would call the other OSes' code unreachable
CABLES = {"darwin": ["BlackHole"], "win32": ["CABLE Input"]}
"""Virtual cables by the name of their playback side; apps record from the other side."""
CABLE_HINT = {
    "darwin": "install BlackHole (brew install blackhole-2ch) and pick 'BlackHole 2ch' as "
    "the microphone in apps",
    "win32": "install VB-CABLE (vb-audio.com/Cable) and pick 'CABLE Output' as the "
    "microphone in apps",
}
PULSE_HINT = (
    "the virtual mic needs a PulseAudio or PipeWire (pipewire-pulse) server and libpulse: "
    "'apt-get install libpulse0'"
)


class NoPulseServer(DeviceError):
    """There is no PulseAudio server to make a virtual mic on (or no libpulse to reach it)."""


def pulse_client() -> Any:
    """A connection to the PulseAudio server, or NoPulseServer saying what is missing."""
    try:
        import pulsectl
    except (ImportError, OSError) as exc:  # OSError: libpulse itself is missing
        raise NoPulseServer(f"cannot load libpulse ({exc}); {PULSE_HINT}") from None
    try:
        return pulsectl.Pulse("airmic-receive")
    except pulsectl.PulseError:
        if _pipewire_running():
            raise NoPulseServer(
                "PipeWire runs here but its PulseAudio server does not: start pipewire-pulse "
                "('systemctl --user start pipewire-pulse', or 'apt-get install pipewire-pulse')"
            ) from None
        raise NoPulseServer(f"no PulseAudio server is reachable; {PULSE_HINT}") from None


def _pipewire_running() -> bool:
    """Whether a PipeWire daemon's socket is there for this user."""
    folder = os.environ.get("PIPEWIRE_RUNTIME_DIR") or os.environ.get("XDG_RUNTIME_DIR")
    return bool(folder) and os.path.exists(os.path.join(str(folder), "pipewire-0"))


@dataclass(frozen=True)
class VirtualMic:
    """The names of one virtual mic: `airmic` / "AirMic", or `airmic_NAME` / "AirMic (NAME)"."""

    name: str = ""
    label: str = ""  # what apps show in "AirMic (LABEL)" (default: the name)

    def __post_init__(self) -> None:
        if self.name and not NAME.fullmatch(self.name):
            raise UsageError(
                f"bad virtual mic name {self.name!r}: use up to 32 letters, digits, - or _"
            )

    @property
    def source(self) -> str:
        return f"airmic_{self.name}" if self.name else "airmic"

    @property
    def sink(self) -> str:
        return f"{self.source}_feed"

    @property
    def description(self) -> str:
        label = (self.label or self.name).replace('"', "'")
        return f"AirMic ({label})" if label else "AirMic"

    @property
    def tag(self) -> str:
        return f"airmic.mic={self.name or '-'}"

    def create(self) -> None:
        """Load the null sink and the remap source, after removing stale ones of this name."""
        with pulse_client() as pulse:
            self._remove_stale(pulse)
            tags = f"{self.tag} airmic.pid={os.getpid()}"
            pulse.module_load(
                "module-null-sink",
                f"sink_name={self.sink} rate=48000 channels=1 format=s16le norewinds=1 "
                f"sink_properties='device.description=\"{self.description} (feed)\" {tags}'",
            )
            pulse.module_load(
                "module-remap-source",
                f"master={self.sink}.monitor source_name={self.source} channels=1 "
                f'source_properties=\'device.description="{self.description}" '
                f"device.icon_name=audio-input-microphone {tags}'",
            )
        log.info("virtual microphone %r (%s) is ready", self.description, self.source)

    def remove(self) -> None:
        """Unload this mic's modules (the source first: apps move to another one)."""
        with pulse_client() as pulse:
            for module in sorted(self._modules(pulse), key=lambda m: "remap" not in m.name):
                pulse.module_unload(module.index)

    def _modules(self, pulse: Any) -> list[Any]:
        tag = re.compile(rf"(?<![\w.]){re.escape(self.tag)}(?=[\s'\"]|$)")
        return [m for m in pulse.module_list() if tag.search(m.argument or "")]

    def _remove_stale(self, pulse: Any) -> None:
        stale = self._modules(pulse)
        for module in stale:
            found = re.search(r"\bairmic\.pid=(\d+)", module.argument)
            pid = int(found.group(1)) if found else 0
            if pid != os.getpid() and _alive(pid):
                raise DeviceError(
                    f"the virtual mic {self.description!r} belongs to a running receiver "
                    f"(PID {pid}); give this one another name: --sink virtual:NAME"
                )
        if stale:
            log.warning("replacing the virtual mic %r left by a receiver that died", self.source)
        for module in sorted(stale, key=lambda m: "remap" not in m.name):
            pulse.module_unload(module.index)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    return True


def _ours(pid: str | None) -> bool:
    """Whether a stream's process is this one, or one of its workers."""
    if pid == str(os.getpid()):
        return True
    try:  # /proc/PID/stat: "PID (NAME) STATE PPID ...", NAME may hold spaces
        with open(f"/proc/{int(pid or 0)}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1]) == os.getpid()
    except (OSError, ValueError, IndexError):
        return False


class VirtualMicSinkFactory:
    """`virtual[:NAME]`: the mic exists from start to exit; every stream is mixed into it.

    A watcher thread listens to the server's events: when the server goes away (a
    pipewire-pulse restart takes every module with it) or the mic's source is removed, it
    makes the mic again as soon as the server answers (within half a second), with a new
    output; streams that start then play into it. Nothing is played meanwhile: the server
    would route a stream whose sink is missing to the default output, the speakers. Streams
    that were playing when it broke go on into their files only.

    The feed is a sink like any other to the server: another app may play into it (picked
    by a user, or as the default output of a machine with no sound card, where WirePlumber
    makes it the default). The watcher mutes such a stream as it appears: only airmic plays
    into the mic."""

    RETRY = 0.5  # seconds between attempts while the server is away

    def __init__(
        self, name: str, block: int = BLOCK, label: str = "", writers: PulseWriters | None = None
    ) -> None:
        self.spec = f"virtual:{name}" if name else "virtual"
        self.mic = VirtualMic(name, label)
        self.block = block
        self._own_writers = writers is None
        self._writers = writers or PulseWriters(block)
        self.mic.create()
        try:
            self.output = self._new_output()
        except DeviceError:
            self.mic.remove()
            if self._own_writers:
                self._writers.close()
            raise
        self._broken: list[PulseOutput] = []  # outputs whose server went away
        self.muted = 0  # other apps' streams muted on the feed
        self._muted_apps: set[str] = set()
        self._closing = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="mic watcher", daemon=True)
        self._watcher.start()

    def _new_output(self) -> PulseOutput:
        output = self._writers.open(self.mic.sink, f"{self.mic.description} feed")
        output.description = f"virtual:{self.mic.source}"
        return output

    def open(self, stream: str, room: str) -> Output:
        output = self.output
        if output.failed is not None:
            raise DeviceError(f"the sound server went away ({output.failed})")
        return output

    def plan(self, stream: str, room: str) -> SinkPlan:
        output = self.open(stream, room)
        return SinkPlan("mic", self.mic.sink, f"{self.mic.description} feed", output.description)

    def _watch(self) -> None:
        """Until closed: follow the server's module and source events; heal the mic when it
        is gone. Idle, it wakes once a second and asks the server nothing."""
        import pulsectl

        removed = threading.Event()
        playing: set[int] = set()  # sink inputs that appeared or moved: whose are they?
        kinds = pulsectl.PulseEventTypeEnum

        def seen(event: Any) -> None:
            if event.facility == "sink_input":
                if event.t != kinds.remove:
                    playing.add(event.index)
                    raise pulsectl.PulseLoopStop  # at once: it may be playing into the mic
            elif event.t == kinds.remove:
                removed.set()

        while not self._closing.is_set():
            try:
                with pulse_client() as pulse:
                    pulse.event_mask_set("module", "source", "sink_input")
                    pulse.event_callback_set(seen)
                    removed.set()  # (re)connected: look once
                    playing.update(i.index for i in pulse.sink_input_list())
                    while not self._closing.is_set():
                        if removed.is_set():
                            removed.clear()
                            if self.mic.source not in [s.name for s in pulse.source_list()]:
                                self._heal()
                        if playing:
                            self._mute_others(pulse, list(playing))
                            playing.clear()
                        pulse.event_listen(timeout=1.0)
            except (NoPulseServer, pulsectl.PulseError, pulsectl.PulseDisconnected):  # away
                self._closing.wait(self.RETRY)
            except DeviceError as exc:  # back, but the mic cannot be made yet
                log.warning("the virtual microphone could not be made again yet: %s", exc)
                self._closing.wait(self.RETRY)

    def _mute_others(self, pulse: Any, indexes: list[int]) -> None:
        """Mute the streams among `indexes` that another process plays into the feed."""
        import pulsectl

        try:
            feed = pulse.get_sink_by_name(self.mic.sink).index
        except pulsectl.PulseIndexError:
            return  # gone: healed on its source's removal
        for index in indexes:
            try:
                stream = pulse.sink_input_info(index)
            except pulsectl.PulseIndexError:
                continue  # ended already
            ours = _ours(stream.proplist.get("application.process.id"))
            if stream.sink != feed or ours or stream.mute:
                continue
            pulse.sink_input_mute(index, True)
            self.muted += 1
            app = stream.proplist.get("application.name") or stream.name or f"#{index}"
            if app not in self._muted_apps:
                self._muted_apps.add(app)
                log.warning("muted %r: it played into %r, and only airmic plays into the mic",
                            app, f"{self.mic.description} (feed)")  # fmt: skip

    def _heal(self) -> None:
        log.warning("the virtual microphone %r is gone (the sound server restarted?): "
                    "making it again", self.description)  # fmt: skip
        self.mic.create()
        self._broken.append(self.output)  # its streams play on into their files till they end
        self.output = self._new_output()
        log.warning("virtual microphone %r is back", self.description)

    def close(self) -> None:
        self._closing.set()
        self._watcher.join(timeout=2.0)
        for output in [*self._broken, self.output]:
            output.close()
        if self._own_writers:
            self._writers.close()
        if self.muted:
            log.warning("%d streams of other apps were muted on %r", self.muted,
                        f"{self.mic.description} (feed)")  # fmt: skip
        try:
            self.mic.remove()
        except DeviceError as exc:  # the server went away first: nothing left to remove
            log.warning("could not remove the virtual microphone: %s", exc)
            return
        log.info("virtual microphone %r removed", self.description)

    @property
    def description(self) -> str:
        return self.mic.description


class RoomMicsSinkFactory:
    """`--mics per-room`: a virtual mic for each room, "AirMic (kitchen)", made when the
    room first streams and kept (delivering silence between its streams) until exit, so an
    app that picked it keeps it across the sender's reconnections."""

    spec = "virtual:per-room"

    def __init__(self, rooms: list[str], block: int = BLOCK) -> None:
        self.block = block
        self._mics: dict[str, VirtualMicSinkFactory] = {}
        self._writers = PulseWriters(block)  # one thread writes every room's mic
        pulse_client().close()  # no server: say so at start, not at the first stream
        for room in rooms:  # named at start: their mics are there for apps to pick at once
            self._mic(room)

    def open(self, stream: str, room: str) -> Output:
        return self._mic(room).open(stream, room)

    def plan(self, stream: str, room: str) -> SinkPlan:
        return self._mic(room).plan(stream, room)

    def _mic(self, room: str) -> VirtualMicSinkFactory:
        mic = self._mics.get(room)
        if mic is None:
            taken = {m.mic.name for m in self._mics.values()}
            mic = VirtualMicSinkFactory(_mic_name(room, taken), self.block, room, self._writers)
            self._mics[room] = mic
        return mic

    def close(self) -> None:
        for mic in self._mics.values():
            mic.close()
        self._writers.close()


def _mic_name(room: str, taken: set[str]) -> str:
    """A room's name as a mic's (source `airmic_NAME`): letters, digits, - and _ only."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", room).strip("_")[:28] or "room"
    return next(n for n in (base, *(f"{base}-{i}" for i in range(2, 1000))) if n not in taken)


def open_virtual(name: str) -> SinkFactory:
    """The `virtual[:NAME]` sink of this OS."""
    if PLATFORM == "linux":
        return VirtualMicSinkFactory(name)
    for cable in CABLES.get(PLATFORM, []):
        try:
            return DeviceSinkFactory(cable)
        except DeviceError:
            continue
    hint = CABLE_HINT.get(PLATFORM, "this OS has no virtual mic support yet")
    raise DeviceError(f"no virtual cable found: {hint} (see the README)")


def describe_sinks() -> str:
    """What `--list-sinks` prints: virtual mic backends, output devices, what is missing."""
    lines = ["virtual microphone (--sink virtual[:NAME]):"]
    lines += [f"  {line}" for line in _describe_virtual()]
    lines.append("output devices (--sink device:NAME|INDEX):")
    try:
        sd = sounddevice()
        outputs = [
            f"  {i:3d}  {d['name']}"
            for i, d in enumerate(sd.query_devices())
            if d["max_output_channels"]
        ]
        lines += outputs or ["  none found"]
    except DeviceError as exc:
        lines.append(f"  unavailable: {exc}")
    lines.append("files and tests: --sink wav:PATH, --sink null")
    return "\n".join(lines)


def _describe_virtual() -> list[str]:
    if PLATFORM != "linux":
        hint = CABLE_HINT.get(PLATFORM, "not supported on this OS yet")
        try:
            found = open_virtual("").spec
        except DeviceError:
            return [f"missing: {hint}"]
        return [f"virtual cable: {found}"]
    try:
        with pulse_client() as pulse:
            server = pulse.server_info()
            mics = [  # the mics apps see, not the feed's monitor
                f"  {s.name}  {s.description!r}"
                for s in pulse.source_list()
                if "airmic.mic" in s.proplist and s.proplist.get("device.class") != "monitor"
            ]
    except NoPulseServer as exc:
        return [f"missing: {exc}"]
    if "PipeWire" in server.server_name:  # "PulseAudio (on PipeWire 0.3.65)"
        version = server.server_name.split("PipeWire")[-1].strip(" )")
        lines = [f"sound server: PipeWire {version}, through pipewire-pulse"]
    else:
        lines = [f"sound server: PulseAudio {server.server_version}"]
    return lines + (["airmic mics on it now:", *mics] if mics else ["no airmic mic on it now"])
