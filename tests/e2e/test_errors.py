"""Bad usage and missing things: one clear line, the right exit code, no traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import numpy as np
import pytest
import soundfile

from tests.conftest import command

pytestmark = pytest.mark.e2e


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )


def assert_clean_error(result, code: int, *words: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_port_in_use(udp_port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", udp_port))
        result = run(
            command("airmic-receive"), "--listen", f"127.0.0.1:{udp_port}", "--sink", "null"
        )
    assert_clean_error(result, 1, f"UDP port {udp_port}", "in use", "--listen")


def test_missing_input_file(tmp_path):
    result = run(
        command("airmic-send"), "--to", "127.0.0.1", "--input", f"file:{tmp_path}/nope.wav"
    )
    assert_clean_error(result, 1, "cannot read", "nope.wav", "no such file")


def test_unreadable_input_file(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file")
    result = run(command("airmic-send"), "--to", "127.0.0.1", "--input", f"file:{junk}")
    assert_clean_error(result, 1, "cannot read", "junk.wav")


def test_missing_device():
    result = run(command("airmic-send"), "--to", "127.0.0.1", "--input", "device:No Such Mic 9000")
    assert_clean_error(result, 1, "No Such Mic 9000")


def test_missing_output_device(tmp_path):
    result = run(command("airmic-receive"), "--sink", "device:No Such Speaker")
    assert_clean_error(result, 1, "No Such Speaker")


@pytest.mark.parametrize("loop", [[], ["--loop"]])
def test_an_input_file_with_no_audio(tmp_path, loop):
    """A header and nothing else: refused at start (it made --loop spin at a full core,
    deaf to Ctrl-C), and by probe."""
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype="float32"), 48_000)
    result = run(command("airmic-send"), "--to", "127.0.0.1", "--input", f"file:{empty}", *loop)
    assert_clean_error(result, 1, "empty.wav", "holds no audio")
    result = run(command("airmic-send"), "probe", "--input", f"file:{empty}")
    assert_clean_error(result, 1, "empty.wav", "holds no audio")


def test_a_damaged_identity_stops_both_commands(tmp_path):
    """Never a new key behind the user's back: that would break every pairing silently."""
    folder = tmp_path / "airmic"
    folder.mkdir()
    (folder / "identity.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}
    for line in (["airmic-receive", "--sink", "null", "--web", "off"],
                 ["airmic-send", "--to", "127.0.0.1:9", "--input", "tone:440"]):  # fmt: skip
        result = subprocess.run([command(line[0]), *line[1:]], capture_output=True, text=True,
                                timeout=30, env=env, stdin=subprocess.DEVNULL)  # fmt: skip
        assert_clean_error(result, 2, "identity.key is damaged", "backup")
    assert (folder / "identity.key").read_bytes().endswith(b"MC4CAQAw\n")


def test_a_corrupted_list_of_paired_senders_stops_the_receiver_at_start(tmp_path):
    folder = tmp_path / "airmic"
    folder.mkdir()
    (folder / "paired-senders.json").write_text('[{"name": "laptop", "key": ')
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}
    result = subprocess.run([command("airmic-receive"), "--sink", "null", "--web", "off"],
                            capture_output=True, text=True, timeout=30, env=env,
                            stdin=subprocess.DEVNULL)  # fmt: skip
    assert_clean_error(result, 2, "paired-senders.json is unreadable", "pair again")


def test_unknown_host():
    result = run(command("airmic-send"), "--to", "no-such-host.invalid:5004", "--input", "tone:440")
    assert_clean_error(result, 1, "cannot resolve", "no-such-host.invalid")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["airmic-send", "--to", "127.0.0.1", "--transport", "webrtc"], ["link", "token"]),
        (["airmic-send", "--to", "127.0.0.1", "--input", "mp3:x"], ["unknown input", "file:PATH"]),
        (["airmic-send", "--to", "127.0.0.1", "--frame-ms", "7"], ["--frame-ms", "invalid choice"]),
        (["airmic-send", "--to", "127.0.0.1:99999"], ["out of range"]),
        (["airmic-send", "--to", "127.0.0.1", "--bitrate", "100"], ["bitrate"]),
        (["airmic-receive", "--sink", "flac:x"], ["unknown sink", "wav:PATH"]),
        (["airmic-receive", "--sink", "wav:/no/such/folder/out.wav"], ["no folder"]),
        (["airmic-receive", "--latency", "-5"], ["--latency"]),
        # Every number an option takes, beyond its range or not finite: one line, at once.
        (["airmic-send", "--to", "127.0.0.1", "--duration", "nan"], ["--duration", "'nan'"]),
        (["airmic-send", "--to", "127.0.0.1", "--duration", "inf"], ["--duration", "'inf'"]),
        (["airmic-send", "--to", "127.0.0.1", "--duration", "-1"], ["--duration", "more than 0"]),
        (["airmic-send", "--to", "127.0.0.1", "--bitrate", "nan"], ["--bitrate"]),
        (
            ["airmic-send", "--to", "127.0.0.1", "--expected-loss", "500"],
            ["--expected-loss", "0 to 100"],
        ),
        (["airmic-send", "--to", "127.0.0.1", "--redundancy", "7"], ["--redundancy", "0 to 3"]),
        (["airmic-send", "--to", "127.0.0.1", "--payload-type", "7"], ["--payload-type"]),
        (["airmic-send", "--to", "127.0.0.1", "--input", "tone:nan"], ["tone frequency"]),
        (["airmic-send", "--to", "127.0.0.1", "--gain", "nandB"], ["gain"]),
        (["airmic-send", "--to", "127.0.0.1", "--highpass", "1e9"], ["highpass"]),
        (["airmic-send", "--to", "127.0.0.1", "--denoise", "9"], ["denoise"]),
        (["airmic-send", "probe", "--seconds", "nan"], ["--seconds"]),
        (["airmic-receive", "--clock-ppm", "-1000000"], ["--clock-ppm", "from -10000"]),
        (["airmic-receive", "--clock-ppm", "1e12"], ["--clock-ppm"]),
        (["airmic-receive", "--clock-ppm", "nan"], ["--clock-ppm"]),
        (["airmic-receive", "--exit-after-idle", "nan"], ["--exit-after-idle"]),
        (["airmic-receive", "--exit-after-idle", "inf"], ["--exit-after-idle"]),
        (["airmic-receive", "--max-streams", "0"], ["--max-streams", "from 1"]),
        (["airmic-receive", "--max-streams", "many"], ["--max-streams", "whole number"]),
        (["airmic-receive", "--latency", "nanms"], ["--latency"]),
        (["airmic-receive", "--latency", "200ms..20ms"], ["--latency"]),
        (["airmic-receive", "--latency", "5ms"], ["--latency", "at least 15ms"]),
        (["airmic-send", "--to", "127.0.0.1", "--bitrate", "1M"], ["--bitrate", "64k"]),
        (
            ["airmic-send", "--to", "127.0.0.1", "--max-bandwidth", "20k"],
            ["--max-bandwidth", "at least 64k"],
        ),
        (["airmic-send", "pair", "882", "03"], ["6 digits"]),
    ],
)
def test_bad_usage_exits_2(args, words):
    result = run(command(args[0]), *args[1:])
    assert_clean_error(result, 2, *words)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one line, no usage


def test_a_bitrate_takes_units(udp_port):
    line = ["--to", f"127.0.0.1:{udp_port}", "--bitrate", "32k", "--input", "tone:440",
            "--duration", "0.2", "--insecure"]  # fmt: skip
    result = run(command("airmic-send"), *line)
    assert result.returncode == 0, result.stderr
    assert "32 kbit/s" in result.stderr


@pytest.mark.parametrize("name", ["airmic-send", "airmic-receive"])
def test_help_teaches_with_examples(name):
    result = run(command(name), "--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout and name in result.stdout.split("examples:")[1]


def test_a_ctrl_c_while_the_receiver_exits_on_its_own_is_not_a_crash(udp_port):
    """Ctrl-C pressed again and again as the receiver exits when idle: it exits 0, with no
    traceback (once its work was done, a Ctrl-C in the interpreter's teardown killed it:
    exit -2, 5 runs of 5)."""
    receiver = subprocess.Popen(
        [command("airmic-receive"), "--listen", f"127.0.0.1:{udp_port}", "--sink", "null",
         "--exit-after-idle", "0.5", "--no-advertise", "--web", "off"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert receiver.stderr is not None
    try:
        said = ""
        while "exiting" not in said:  # read as it comes: the teardown is short
            line = receiver.stderr.readline()
            assert line, said  # it ended before it said so
            said += line
        deadline = time.monotonic() + 30
        while receiver.poll() is None and time.monotonic() < deadline:
            receiver.send_signal(signal.SIGINT)
            time.sleep(0.005)
        assert receiver.wait(5) == 0
        assert "Traceback" not in receiver.stderr.read()
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
