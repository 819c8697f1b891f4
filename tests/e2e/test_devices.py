"""Real sound devices: PortAudio through ALSA's pulse plugin into a private PulseAudio.

speech ─paplay─► null sink `feed` ─monitor─► airmic-send --input device:pulse ─UDP─►
airmic-receive --sink device:pulse ─► null sink `speaker` ─monitor─► parecord
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import soundfile

from tests.audio_match import as_counted, match
from tests.processes import Process, ReceiverProcess, send
from tests.pulse import record_speaker

pytestmark = pytest.mark.e2e


def test_device_to_device_through_the_network(tmp_path, udp_port, pulse, speech, speech_samples):
    recorded = tmp_path / "recorded.wav"
    parecord = Process(
        record_speaker(recorded),
        tmp_path,
        "parecord",
        pulse,
    )
    receiver = ReceiverProcess(
        tmp_path,
        udp_port,
        env=pulse,
        sinks=("device:pulse", f"wav:{tmp_path / 'out.wav'}"),
    )
    duration = len(speech_samples) / 48_000 + 1.5
    sender = send(
        udp_port,
        "--input",
        "device:pulse",
        "--duration",
        f"{duration:.1f}",
        folder=tmp_path,
        env=pulse,
    )
    sender.wait_for("sending")
    subprocess.run(["paplay", "--device=feed", str(speech)], env=pulse, check=True, timeout=60)
    assert sender.wait() == 0, sender.stderr
    assert receiver.finish() == 0, receiver.stderr
    parecord.stop()

    (stream,) = receiver.stats()["streams"]
    assert stream["lost"] == 0
    for path in (tmp_path / "out.wav", recorded):
        out, _ = soundfile.read(path, dtype="float32")
        result = match(speech_samples, out, max_lag=len(out))  # parecord starts long before
        print(f"\n{path.name}: correlation {result.correlation:.4f}; {stream}")
        # Clean, or no worse than the receiver counted (one CI run: the card underran
        # twice, 20 ms counted, and the recording matched 0.887)
        assert as_counted(result, stream, 0.9)


def test_a_sound_card_that_cannot_start_leaves_the_files_playing(tmp_path, udp_port, pulse):
    """The card is found at start, then its server goes away: the next stream cannot play
    on it, says so once, and its file is still written whole on the paced clock."""
    receiver = ReceiverProcess(
        tmp_path, udp_port, idle=None, env=pulse, sinks=("device:pulse", f"wav:{tmp_path}/out.wav")
    )
    subprocess.run(["pulseaudio", "-k"], env=pulse, check=True, timeout=30)
    sender = send(udp_port, "--input", "tone:440", "--duration", "2", folder=tmp_path)
    assert sender.wait() == 0, sender.stderr
    subprocess.run(["sleep", "0.5"], check=True)
    assert receiver.stop() == 0, receiver.stderr
    assert "cannot open output" in receiver.stderr and "Traceback" not in receiver.stderr
    out, _ = soundfile.read(tmp_path / "out.wav", dtype="float32")
    assert len(out) > 1.8 * 48_000
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 48_000 / len(out) - 440) < 2
