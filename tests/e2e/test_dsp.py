"""The DSP chain through the real commands: the probe on a simulated earbud, speaker and
mic, a speaker driver streamed with its preset, and the receiver's chain for a peer that
has none (ffmpeg)."""

from __future__ import annotations

import os
import re
import shlex
import shutil

import numpy as np
import pytest
import soundfile

from airmic.common.dsp import PRESETS
from airmic.common.peers import Peers
from airmic.sender.cli import build_parser
from airmic.sender.secure import RECEIVERS_FILE
from tests.conftest import command
from tests.dsp.test_presets import active_level_db
from tests.processes import Process, ReceiverProcess, send
from tests.transducer import clap, hum_level_db, simulate
from tests.voices import TEXTS, glottal_voice

pytestmark = pytest.mark.e2e
RATE = 48_000
STEADY = ("--latency", "100ms")
"""The receiver's buffer in these tests: fixed, and long enough to ride out a busy
machine's stalls, so that the file holds the sender's audio as processed. (On CI, with the
adaptive buffer run dry now and then, the concealment, voiced at the speaker's pitch near
120 Hz, read as hum: 23 dB down instead of 28.)"""


@pytest.fixture(scope="module")
def speaker_file(tmp_path_factory, speech_samples):
    """Two passes of speech as a loudspeaker driver gives it (inverted, -30 dB, hum...)."""
    talk = np.concatenate([np.zeros(RATE // 2), speech_samples, speech_samples])
    path = tmp_path_factory.mktemp("dsp") / "speaker.wav"
    soundfile.write(path, simulate(talk, "speaker"), RATE, subtype="PCM_16")
    return path


def check_processed(raw_path, out_path):
    """The second half of what came out: hum down against the voice, at the preset's level,
    no clipping. (The lock-in that measures the hum also hears the voice's own energy at
    the mains harmonics and the codec's noise there: through Opus it reads 29-31 dB down
    where tests/dsp, on the chain alone, reads 37.)"""
    raw, _ = soundfile.read(raw_path, dtype="float32")
    out, _ = soundfile.read(out_path, dtype="float32")
    assert len(out) > 0.9 * len(raw)
    tail_in, tail_out = raw[len(raw) // 2 :], out[len(out) // 2 :]
    hum_in, hum_out = hum_level_db(tail_in), hum_level_db(tail_out)
    level = active_level_db(tail_out)
    print(f"\nhum {hum_in:.1f} -> {hum_out:.1f} dB against the voice, level {level:.1f} dBFS")
    assert hum_out < hum_in - 25
    assert level == pytest.approx(PRESETS["speaker"].agc, abs=3)
    assert np.max(np.abs(out)) < 0.95


def test_probe_recommends_the_preset_gain_and_polarity(tmp_path):
    voice = glottal_voice(" ".join(TEXTS), "en", 115)
    path = tmp_path / "speaker.wav"
    soundfile.write(path, simulate(voice, "speaker", mains=60.0), RATE, subtype="PCM_16")
    probe = Process(
        [
            command("airmic-send"),
            "probe",
            "--input",
            f"file:{path}",
            "--seconds",
            "20",
            "--to",
            "pc.local",
        ],
        tmp_path,
        "probe",
    )
    assert probe.wait() == 0, probe.stderr
    report = probe.stdout
    print(report)
    assert "60 Hz" in report and "inverted" in report
    assert f"airmic-send --to pc.local --input file:{path} --preset speaker" in report
    assert "--invert" in report


def test_probe_on_digital_silence_says_so(tmp_path):
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros(RATE * 3), RATE, subtype="PCM_16")
    line = [command("airmic-send"), "probe", "--input", f"file:{path}", "--seconds", "3"]
    probe = Process(line, tmp_path, "probe")
    assert probe.wait() == 1, probe.stderr  # nothing to recommend
    assert "Warning" not in probe.stderr and "Traceback" not in probe.stderr
    assert re.search(r"peak\s+silence", probe.stdout) and "-240" not in probe.stdout
    assert "no sound at all" in probe.stdout and "recommended: nothing yet" in probe.stdout


def test_probe_reads_a_clap_and_prints_a_runnable_command(tmp_path, speech_samples):
    """A paired sender's recommended command needs no --to: as printed, it parses."""
    quiet = np.zeros(RATE // 2)
    talk = np.concatenate([quiet, clap(), quiet, speech_samples])
    path = tmp_path / "clap.wav"
    soundfile.write(path, simulate(talk, "speaker"), RATE, subtype="PCM_16")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    Peers(tmp_path / "config" / "airmic" / RECEIVERS_FILE).add("studio", bytes(32))
    line = [command("airmic-send"), "probe", "--input", f"file:{path}", "--seconds", "9"]
    probe = Process(line, tmp_path, "probe", env)
    assert probe.wait() == 0, probe.stderr
    print(probe.stdout)
    assert "clap once, wait a moment, then talk" in probe.stderr  # what to do, while it records
    assert re.search(r"polarity\s+inverted \(the clap at 0\.5 s\)", probe.stdout)
    printed = shlex.split(probe.stdout.split("recommended:")[1].splitlines()[1])
    assert printed[0] == "airmic-send" and "--to" not in printed
    args = build_parser().parse_args(printed[1:])
    assert (args.preset, args.invert, args.input) == ("speaker", True, f"file:{path}")


def test_sender_preset_cleans_a_speaker_driver(tmp_path, udp_port, speaker_file):
    receiver = ReceiverProcess(tmp_path, udp_port, *STEADY)
    sender = send(
        udp_port, "--input", f"file:{speaker_file}", "--preset", "speaker", folder=tmp_path
    )
    assert sender.wait() == 0, sender.stderr
    assert receiver.finish() == 0, receiver.stderr
    assert "DSP: dc > invert" not in sender.stderr  # the preset does not guess the polarity
    assert "DSP: dc > gain > highpass > hum > eq > denoise > gate" in sender.stderr
    check_processed(speaker_file, tmp_path / "out.wav")


def test_receiver_runs_the_chain_for_ffmpeg(tmp_path, udp_port, speaker_file):
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is missing: run scripts/test, which installs it"
    receiver = ReceiverProcess(tmp_path, udp_port, "--preset", "speaker", "--invert", *STEADY)
    peer = Process(
        [
            ffmpeg,
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-i",
            str(speaker_file),
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
            "-f",
            "rtp",
            f"rtp://127.0.0.1:{udp_port}",
        ],
        tmp_path,
        "ffmpeg",
    )
    assert peer.wait() == 0, peer.stderr
    assert receiver.stop() == 0, receiver.stderr  # it plays out what it holds
    check_processed(speaker_file, tmp_path / "out.wav")


def test_bad_dsp_options_are_refused_clearly(tmp_path, udp_port):
    config = tmp_path / "setup.toml"
    config.write_text('preset = "speaker"\ngain = "loud"\n')
    for args, message in [
        (["--eq", "presence:+6@3k"], "not an EQ band"),
        (["--preset", "speaker", "--denoise", "9"], "denoise must be 1-4"),
        (["--dsp-config", str(config)], "DSP setting gain: not a level in dB"),
        (["--dsp-config", str(tmp_path / "missing.toml")], "cannot read the DSP config"),
    ]:
        sender = send(udp_port, "--input", "tone:440", "--duration", "0.1", *args, folder=tmp_path)
        assert sender.wait() == 2, sender.stderr
        assert message in sender.stderr
