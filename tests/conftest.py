"""Shared fixtures: a speech sample, free UDP ports, and the installed commands."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
from make_speech import make_speech

BIN = Path(sys.executable).parent


def command(name: str) -> str:
    """The path of an installed airmic command (airmic-send, airmic-receive)."""
    path = BIN / name
    assert path.exists(), f"{name} is not installed in this environment"
    return str(path)


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 7 s of synthetic speech, 48 kHz mono 16-bit WAV, made with espeak-ng."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is missing: run scripts/test, which installs it")
    return make_speech(tmp_path_factory.mktemp("speech") / "speech.wav")


@pytest.fixture(scope="session")
def speech_samples(speech: Path) -> np.ndarray:
    return soundfile.read(speech, dtype="float32")[0]


@pytest.fixture(scope="session")
def short_speech(speech: Path) -> Path:
    """The speech's first sentence (3.3 s, cut in the pause after it), for tests whose
    point is not its length (interop: the peers' formats): each streams in real time."""
    audio, rate = soundfile.read(speech, dtype="int16")
    path = speech.with_name("short.wav")
    soundfile.write(path, audio[: int(3.3 * rate)], rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def short_speech_samples(short_speech: Path) -> np.ndarray:
    return soundfile.read(short_speech, dtype="float32")[0]


def free_udp_port() -> int:
    """A port free on 127.0.0.1 for UDP and for TCP too (the receiver's web page takes the
    same port number over TCP)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


@pytest.fixture(autouse=True, scope="session")
def private_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The commands keep their token and certificate in a folder of the test session's,
    never in the user's own configuration."""
    before = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config"))
    yield
    if before is None:
        del os.environ["XDG_CONFIG_HOME"]
    else:
        os.environ["XDG_CONFIG_HOME"] = before


REALTIME = ("e2e", "interop", "browser", "realtime")
"""The folders and marks of the tests whose clocks are real: processes, sound servers,
browsers."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """scripts/test runs the suite in two parts, as AIRMIC_TESTS says: `layers`, the tests
    of one layer (CPU-bound, spread over the cores), then `realtime`, one at a time, so
    that no other test's load lands on their clocks. Unset: every test."""
    part = os.environ.get("AIRMIC_TESTS")
    if not part:
        return
    keep, drop = [], []
    for item in items:
        realtime = item.path.parent.name in REALTIME or any(
            item.get_closest_marker(mark) for mark in REALTIME
        )
        (keep if realtime == (part == "realtime") else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True)
def reap_processes() -> Iterator[None]:
    yield
    from tests.processes import Process

    Process.reap()


@pytest.fixture
def udp_port() -> int:
    return free_udp_port()


@pytest.fixture
def pulse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private sound server for one test; the environment that reaches it. PulseAudio, or
    with `@pytest.mark.parametrize("pulse", SERVERS, indirect=True)` each of PulseAudio and
    a PipeWire desktop (PipeWire, WirePlumber, pipewire-pulse) in turn."""
    from tests.pipewire import private_pipewire
    from tests.pulse import private_pulseaudio

    if getattr(request, "param", "pulseaudio") == "pipewire":
        with private_pipewire() as env:
            yield env
        return
    folder = tmp_path / "pulse"
    folder.mkdir()
    with private_pulseaudio(folder) as env:
        yield env
