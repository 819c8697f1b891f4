"""Shared fixtures: a speech sample, free UDP ports, and the installed commands."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

BIN = Path(sys.executable).parent
SPEECH_TEXT = (
    "Hello, this is airmic, a wireless microphone. The quick brown fox jumps over the "
    "lazy dog. Seven, eight, nine, ten."
)


def command(name: str) -> str:
    """The path of an installed airmic command (airmic-send, airmic-receive)."""
    path = BIN / name
    assert path.exists(), f"{name} is not installed in this environment"
    return str(path)


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 7 s of synthetic speech, 48 kHz mono 16-bit WAV, made with espeak-ng."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.fail("espeak-ng is missing: run scripts/test, which installs it")
    folder = tmp_path_factory.mktemp("speech")
    raw = folder / "raw.wav"
    subprocess.run([espeak, "-v", "en", "-s", "150", "-w", str(raw), SPEECH_TEXT], check=True)
    data, rate = soundfile.read(raw, dtype="float32")
    data = soxr.resample(data, rate, 48_000)
    data = 0.5 * data / np.max(np.abs(data))
    path = folder / "speech.wav"
    soundfile.write(path, data, 48_000, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def speech_samples(speech: Path) -> np.ndarray:
    return soundfile.read(speech, dtype="float32")[0]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def udp_port() -> int:
    return free_udp_port()
