"""The virtual mic's libpulse stream, on real PulseAudio and PipeWire (pipewire-pulse)
servers: the queue it reports is the server's own, so a stall is measured to the
millisecond; a resize loses nothing; a missing sink is an error, never a fallback."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import soundfile

from airmic.common.errors import DeviceError
from airmic.receiver.libpulse import PlaybackStream
from airmic.receiver.pulse_sink import _Timeline
from tests.processes import Process
from tests.pulse import SERVERS, pactl, record_source

pytestmark = pytest.mark.parametrize("pulse", SERVERS, indirect=True)
BLOCK = 240
TONE = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(BLOCK) / 48_000)).astype("<f4").tobytes()


@pytest.fixture
def null_sink(pulse, monkeypatch):
    for key, value in pulse.items():
        if key.startswith("PULSE_"):
            monkeypatch.setenv(key, value)
    pactl(pulse, "load-module", "module-null-sink", "sink_name=t", "rate=48000", "channels=1",
          "format=s16le", "norewinds=1")  # fmt: skip
    return pulse


@pytest.fixture
def tolerance(request) -> float:
    """How far, in ms, a measured loss may be from the one heard: 1 on PulseAudio; on
    PipeWire, whose reports move by whole quanta (5.3 ms here), one quantum, and now and
    then a quantum is measured that was not heard (after a stall, and as a stream starts)."""
    return 1.0 if request.node.callspec.params["pulse"] == "pulseaudio" else 6.0


START = 5
"""The blocks of a stream's start (25 ms)."""


def silent_runs(path) -> tuple[float, list[float]]:
    """The tone's length in the recording, and the silences inside it (ms)."""
    audio = soundfile.read(path, dtype="float32")[0]
    sounding = np.flatnonzero(np.abs(audio) > 0.05)
    inside = np.abs(audio[sounding[0] : sounding[-1]]) > 0.05
    edges = np.flatnonzero(np.diff(inside.astype(np.int8)))
    runs = [(b - a) / 48 for a, b in zip(edges[::2], edges[1::2], strict=False) if b - a > 48]
    return (sounding[-1] - sounding[0]) / 48, runs


def play(tmp_path, env, blocks: int, act) -> tuple[float, list[float], dict[int, float]]:
    """`blocks` of tone into the null sink, `act(i, stream)` before each; the recorded
    tone's length, its silences, and the losses the timeline saw by block (all in ms)."""
    recorder = Process(record_source("t.monitor", tmp_path / "m.wav"), tmp_path, "rec", env)
    time.sleep(0.5)
    stream = PlaybackStream("t", "test", 48_000, 2 * BLOCK * 4, BLOCK)
    timeline, losses = _Timeline(), {}
    try:
        stream.write(bytes(4 * BLOCK))  # primed as the output does: the buffer fills at once
        for i in range(blocks):
            act(i, stream)
            stream.write(TONE)
            asked = time.monotonic()
            latency = stream.latency()
            lost = timeline.wrote(BLOCK * (2 if i == 0 else 1), latency, asked, time.monotonic())
            if lost > 0.001 + timeline.doubt:
                losses[i] = lost * 1e3
        time.sleep(0.3)
    finally:
        stream.close()
    recorder.stop()
    length, runs = silent_runs(tmp_path / "m.wav")
    return length, runs, losses


def test_each_stall_is_measured_as_the_mic_hears_it(tmp_path, null_sink, tolerance):
    """Three stalls of 30 ms: each silence heard is the one measured, never less. (A hiccup
    of the machine's own, heard, must be measured too.)"""

    def stall(i, stream):
        if i in (100, 200, 300):  # 30 ms without a write: the 10 ms queue runs dry
            time.sleep(0.03)

    length, runs, by_block = play(tmp_path, null_sink, 400, stall)
    losses = list(by_block.values())
    print(f"\nheard silences {runs} ms; measured {losses} ms; tone {length:.1f} ms")
    assert len(runs) >= 3
    for heard in runs:
        assert any(heard - 1.0 <= measured <= heard + tolerance for measured in losses)
    # Not more than heard, but at the start: the sink takes a new stream in at its next
    # period, which the timeline sees as a move of 2-15 ms before anything is heard (an
    # over-count of one gap at a stream's start, left as it is).
    settled = [loss for block, loss in by_block.items() if block >= START]
    assert sum(settled) - sum(runs) <= tolerance * len(settled)
    assert abs(length - (2000 + sum(runs))) < tolerance  # nothing written was skipped


def test_a_resize_is_not_heard(tmp_path, null_sink, tolerance):
    def resize(i, stream):
        if i in (50, 150):
            stream.resize(4 * BLOCK * 4)
        if i in (100, 200):
            stream.resize(2 * BLOCK * 4)

    length, runs, by_block = play(tmp_path, null_sink, 300, resize)
    print(f"\nheard silences {runs} ms; measured {by_block} ms; tone {length:.1f} ms")
    # Nothing heard that was not measured: a busy machine may stall the writer (as in the
    # test above, and one CI run's did, 8 ms), but a resize cuts nothing (reopening the
    # stream cut 20-30 ms unmeasured): no loss at a resize, nothing written skipped.
    losses = list(by_block.values())
    for heard in runs:
        assert any(heard - 1.0 <= measured <= heard + tolerance for measured in losses), runs
    at_resizes = {i: by_block[i] for k in (50, 100, 150, 200) for i in (k, k + 1) if i in by_block}
    assert all(loss <= tolerance for loss in at_resizes.values()), at_resizes
    assert abs(length - (1500 + sum(runs))) < tolerance


def test_a_missing_sink_is_an_error(null_sink):
    assert os.environ["PULSE_SERVER"] == null_sink["PULSE_SERVER"]
    with pytest.raises(DeviceError, match=r"no\.such\.sink"):
        PlaybackStream("no.such.sink", "test", 48_000, 2 * BLOCK * 4, BLOCK)
