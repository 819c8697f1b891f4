"""A private PulseAudio daemon for tests: its own socket and null sinks, nothing shared."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CONFIG = """\
load-module module-native-protocol-unix auth-anonymous=1 socket={folder}/native
load-module module-null-sink sink_name=speaker rate=48000 channels=1 format=s16le norewinds=1
load-module module-null-sink sink_name=feed rate=48000 channels=1 format=s16le norewinds=1
set-default-sink speaker
set-default-source feed.monitor
"""
"""Two clocked null sinks: `feed` (what a "microphone" hears: its monitor is the default
source) and `speaker` (the default output: its monitor records what was played)."""
SERVERS = ["pulseaudio", "pipewire"]
"""The sound servers the virtual mic is tested on: `pulse`'s parameters."""


def record_source(source: str, path: Path) -> list[str]:
    """The command that records `source` as a 48 kHz mono WAV (until SIGINT). In 20 ms
    pieces: on pipewire-pulse, parecord's default 2 s ones lose the last 2 s at SIGINT."""
    return ["parecord", f"--device={source}", "--rate=48000", "--channels=1",
            "--format=s16le", "--file-format=wav", "--latency-msec=20", str(path)]  # fmt: skip


def record_sink(sink: str, path: Path, env: dict[str, str]) -> list[str]:
    """The command that records what plays into `sink` (its monitor), as `record_source`
    does; on a PipeWire server with PipeWire's own recorder. A recorder's capture now and
    then misses one quantum of its own (a 5.3 ms silence in place of what played): through
    pipewire-pulse in 3 runs of 6 of tests/receiver/test_libpulse.py, pw-record's in 2 of 26."""
    if "PIPEWIRE_RUNTIME_DIR" not in env:
        return record_source(f"{sink}.monitor", path)
    return ["pw-record", f"--target={sink}", "--properties={ stream.capture.sink = true }",
            "--rate=48000", "--channels=1", "--format=s16", "--latency=256", str(path)]  # fmt: skip


def record_pair(first: str, second: str, path: Path) -> list[str]:
    """The command that records two sources side by side, on one clock, as a stereo WAV.

    Two parecords would start at different moments; one GStreamer pipeline timestamps both
    on the system clock (provide-clock=false) in 2 ms pieces, so the delay between the
    channels is the delay between the sources, to within a few ms (stop it with SIGINT).
    A channel is its pad's place in the command. The mixer's positions from its inputs are
    off: each input's caps set its position as they come, and the mixer orders its channels
    by position when the first buffer goes out, so an input whose caps came late was put
    first (one CI run in ~20 recorded the pair swapped: a latency of -56 ms)."""
    caps = "audio/x-raw,rate=48000,channels=1,format=S16LE"
    src = "pulsesrc provide-clock=false latency-time=2000 buffer-time=20000"
    return (
        f"gst-launch-1.0 -e audiointerleave name=mix channel-positions-from-input=false "
        f"! audioconvert ! wavenc "
        f"! filesink location={path} {src} device={first} ! {caps} ! mix.sink_0 "
        f"{src} device={second} ! {caps} ! mix.sink_1"
    ).split()


def pactl(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        ["pactl", *args], env=env, check=True, capture_output=True, text=True, timeout=30
    ).stdout


def record_speaker(path: Path) -> list[str]:
    """The command that records what plays into `speaker`, as a 48 kHz mono WAV."""
    return record_source("speaker.monitor", path)


@contextmanager
def private_pulseaudio(folder: Path) -> Iterator[dict[str, str]]:
    """Start a PulseAudio daemon in `folder`; yield the environment that reaches it."""
    binary = shutil.which("pulseaudio")
    if binary is None:
        pytest.fail("pulseaudio is missing: run scripts/test, which installs it")
    (folder / "airmic.pa").write_text(CONFIG.format(folder=folder))
    env = {**os.environ, "PULSE_RUNTIME_PATH": str(folder), "PULSE_SERVER": f"unix:{folder}/native"}
    subprocess.run(
        [
            binary,
            "-n",
            "-F",
            str(folder / "airmic.pa"),
            "--daemonize=yes",
            "--exit-idle-time=-1",
            "--use-pid-file=yes",
            "--log-target=stderr",
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=30,
    )
    deadline = time.monotonic() + 10
    while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode:
        if time.monotonic() > deadline:
            raise AssertionError("the private PulseAudio daemon did not come up")
        time.sleep(0.05)
    try:
        yield env
    finally:
        subprocess.run([binary, "-k"], env=env, capture_output=True, timeout=30)
