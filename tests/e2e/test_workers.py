"""`airmic-receive --workers N`: the streams play in worker processes (real ones, spawned
by the receiver), each whole into its own file; a worker that dies ends its streams, is
replaced, and its senders' next packets play again in the new one."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.audio_match import as_counted, match
from tests.processes import IDLE, ReceiverProcess, send

pytestmark = pytest.mark.e2e

TONES = [440, 660, 880]
RATE = 48_000


def tone(hz: float, seconds: float) -> np.ndarray:
    """The sender's `tone:HZ`, -12 dBFS."""
    return 10 ** (-12 / 20) * np.sin(2 * np.pi * hz * np.arange(round(RATE * seconds)) / RATE)


def workers_of(pid: int) -> list[int]:
    """The worker processes `pid` started."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        command = (stat.parent / "cmdline").read_bytes()
        if fields[1] == str(pid) and b"spawn_main" in command:  # not its resource tracker
            children.append(int(stat.parent.name))
    return children


def test_streams_play_in_workers_each_into_its_own_file(
    tmp_path, udp_port, short_speech, short_speech_samples
):
    # Four senders start at once: on two cores their first packets take twice as long.
    receiver = ReceiverProcess(tmp_path, udp_port, "--workers", "2", idle=2 * IDLE)
    assert len(workers_of(receiver.proc.pid)) == 2
    senders = [send(udp_port, "--input", f"file:{short_speech}", folder=tmp_path, name="voice")]
    senders += [
        send(udp_port, "--input", f"tone:{hz}", "--duration", "2", folder=tmp_path, name=f"{hz}")
        for hz in TONES
    ]
    assert all(s.wait() == 0 for s in senders), [s.stderr for s in senders]
    assert receiver.finish(streams=4) == 0, receiver.stderr
    # Both workers played streams, and each stream went whole into a file of its own.
    placed = re.findall(r"plays in airmic worker (\d)", receiver.stderr)
    assert sorted(placed) == ["1", "1", "2", "2"], receiver.stderr
    outputs = [soundfile.read(p, dtype="float32")[0] for p in sorted(tmp_path.glob("out*.wav"))]
    streams = sorted(receiver.stats()["streams"], key=lambda s: s["seconds"])
    print(streams)
    assert len(outputs) == len(streams) == 4 and all(s["lost"] == 0 for s in streams)
    assert all(s["seconds"] > 1.9 for s in streams)  # the figures came back from the workers
    references = [tone(hz, 2) for hz in TONES] + [short_speech_samples]
    for reference in references:
        fits = [match(reference, out) for out in outputs]
        print(f"{len(reference) / RATE:.1f} s: {[round(f.correlation, 3) for f in fits]}")
        best, second = sorted(fits, key=lambda f: f.correlation)[-1:-3:-1]
        assert second.correlation < 0.5  # in one file only
        # whole, or its damage counted (four senders starting at once on two cores)
        assert any(as_counted(best, stream, 0.9) for stream in streams), streams


def test_a_killed_worker_is_replaced_and_its_stream_plays_on(tmp_path, udp_port):
    receiver = ReceiverProcess(tmp_path, udp_port, "--workers", "1", idle=None)
    (worker,) = workers_of(receiver.proc.pid)
    sender = send(udp_port, "--input", "tone:440", "--duration", "6", folder=tmp_path)
    receiver.wait_for("plays in airmic worker 1")
    time.sleep(1.0)  # a second of it in the file
    os.kill(worker, signal.SIGKILL)
    receiver.wait_for("airmic worker 1 started again")
    # The sender's next packets are a new stream, in the new worker.
    deadline = time.monotonic() + 15
    while receiver.stderr.count("plays in airmic worker 1") < 2:
        assert time.monotonic() < deadline, receiver.stderr
        time.sleep(0.05)
    assert sender.wait() == 0, sender.stderr
    assert receiver.finish(streams=2) == 0, receiver.stderr
    assert "airmic worker 1 ended (exit code -9): its 1 streams end" in receiver.stderr
    first, second = receiver.stats()["streams"]
    assert first["ended"] == "worker" and second["ended"] != "worker"
    # What the killed worker had written is a valid file; the rest of the tone is whole.
    before = soundfile.read(tmp_path / "out.wav", dtype="float32")[0]
    after = soundfile.read(tmp_path / "out-2.wav", dtype="float32")[0]
    assert len(before) > 0.5 * RATE
    assert match(tone(440, len(after) / RATE), after).correlation >= 0.9
    # 6 s, less the new worker's start (about 2 s here: it imports what plays afresh)
    print(f"before the kill {len(before) / RATE:.2f} s, after {len(after) / RATE:.2f} s")
    assert len(before) + len(after) > 3 * RATE
