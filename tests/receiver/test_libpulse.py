"""The virtual mic's libpulse stream, on real PulseAudio and PipeWire (pipewire-pulse)
servers: the queue it reports is the server's own, so a stall is measured to the
millisecond; a resize loses nothing; a missing sink is an error, never a fallback."""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import numpy as np
import pytest
import soundfile

from airmic.common.errors import DeviceError
from airmic.receiver.libpulse import PlaybackStream
from airmic.receiver.pulse_sink import _Timeline
from tests.processes import Process
from tests.pulse import SERVERS, pactl, record_sink

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
    PipeWire, whose reports move by whole quanta (5.3 ms here), one quantum either way (a
    quantum is measured that was not heard, or a silence heard a quantum longer)."""
    return 1.0 if request.node.callspec.params["pulse"] == "pulseaudio" else 6.0


def silent_runs(paths) -> tuple[float, list[float]]:
    """The tone's length as two recorders heard it, and the silences inside it (ms): runs of
    more than 8 samples under a tenth of its peak (a 1 kHz tone crosses zero in one sample)
    in both. A recorder misses a quantum of its own now and then on PipeWire (a 5.3 ms
    silence in place of the tone: 2 runs in 26 with one recorder), not seen in both at
    once; the files, on one clock, line up at the tone's start."""
    sounding = []
    for path in paths:
        audio = np.abs(soundfile.read(path, dtype="float32")[0]) > 0.05
        start, end = np.flatnonzero(audio)[[0, -1]]
        sounding.append(audio[start : end + 1])
    n = max(len(heard) for heard in sounding)
    inside = np.zeros(n, dtype=bool)
    for heard in sounding:
        inside[: len(heard)] |= heard
    edges = np.flatnonzero(np.diff(inside.astype(np.int8)))
    runs = [(a, b) for a, b in zip(edges[::2], edges[1::2], strict=False) if b - a > 8]
    return (n - 1) / 48, together(runs)


def together(runs: list[tuple[int, int]]) -> list[float]:
    """The silences' lengths (ms), those less than two blocks of tone apart as one: they
    may have ended between the same two reports of the server's, which then count one
    underrun as long as both (a 0.6 ms and a 9.1 ms one, once)."""
    lengths: list[float] = []
    end = None
    for a, b in runs:
        if end is not None and a - end < 2 * BLOCK:
            lengths[-1] += (b - a) / 48
        else:
            lengths.append((b - a) / 48)
        end = b
    return lengths


class Loss(NamedTuple):
    """An underrun the server reported, as PulseOutput measures it (ms): its length, from the
    move of the timeline, and by how much that may be off (half of each of the round trips
    of the two reports around it: a busy machine's take a millisecond now and then)."""

    ms: float
    doubt: float


def play(tmp_path, env, blocks: int, act) -> tuple[float, list[float], dict[int, Loss]]:
    """`blocks` of tone into the null sink, `act(i, stream)` before each; the recorded
    tone's length and its silences (ms), and the underruns measured, by block."""
    files = [tmp_path / "m1.wav", tmp_path / "m2.wav"]
    recorders = [Process(record_sink("t", f, env), tmp_path, f.stem, env) for f in files]
    time.sleep(0.5)
    stream = PlaybackStream("t", "test", 48_000, 2 * BLOCK * 4, BLOCK)
    timeline, losses, dry_for, before = _Timeline(), {}, 0.0, 0.0
    try:
        stream.write(bytes(4 * BLOCK))  # primed as the output does: the buffer fills at once
        # Silence after the tone (measured as the tone is): a server holds back the last bit
        # of a stream that ran dry until its prebuffer (PulseAudio) or a quantum (PipeWire)
        # is full, and the tone's last 5 ms once went missing so.
        for i in range(blocks + 4):
            act(i, stream)
            underruns = stream.underruns
            stream.write(TONE if i < blocks else bytes(4 * BLOCK))
            asked = time.monotonic()
            latency = stream.latency()
            answered = time.monotonic()
            lost = timeline.wrote(BLOCK * (2 if i == 0 else 1), latency, asked, answered)
            half_trip = (answered - asked) / 2 * 1e3
            if stream.dry or stream.underruns > underruns:  # as PulseOutput measures
                dry_for += lost
            else:
                before = half_trip
            if stream.underruns > underruns:
                losses[i] = Loss(dry_for * 1e3, before + half_trip)
                dry_for, before = 0.0, half_trip
        time.sleep(0.3)
    finally:
        stream.close()
    for recorder in recorders:
        recorder.stop()
    length, runs = silent_runs(files)
    return length, runs, losses


def measured(heard: float, losses: dict[int, Loss], tolerance: float) -> bool:
    """Whether a silence heard was measured, to within the tolerance and the loss's doubt."""
    return any(
        heard - tolerance - loss.doubt <= loss.ms <= heard + tolerance + loss.doubt
        for loss in losses.values()
    )


def test_each_stall_is_measured_as_the_mic_hears_it(tmp_path, null_sink, tolerance):
    """Three stalls of 30 ms: each silence heard is the one measured, never less. (A hiccup
    of the machine's own, heard, must be measured too: 1-2 ms ones, on a busy day.)"""

    def stall(i, stream):
        if i in (100, 200, 300):  # 30 ms without a write: the 10 ms queue runs dry
            time.sleep(0.03)

    length, runs, losses = play(tmp_path, null_sink, 400, stall)
    print(f"\nheard silences {runs} ms; measured {losses}; tone {length:.1f} ms")
    assert len(runs) >= 3
    assert all(measured(heard, losses, tolerance) for heard in runs)
    # Not more than heard: every underrun is the server's own (the sink taking a new stream
    # in at its next period, 2-15 ms after it was written, is not one).
    over = sum(loss.ms for loss in losses.values()) - sum(runs)
    assert over <= sum(tolerance + loss.doubt for loss in losses.values())
    assert abs(length - (2000 + sum(runs))) < 1.0  # nothing written was skipped


def test_a_resize_is_not_heard(tmp_path, null_sink, tolerance):
    def resize(i, stream):
        if i in (50, 150):
            stream.resize(4 * BLOCK * 4)
        if i in (100, 200):
            stream.resize(2 * BLOCK * 4)

    length, runs, losses = play(tmp_path, null_sink, 300, resize)
    print(f"\nheard silences {runs} ms; measured {losses}; tone {length:.1f} ms")
    # Nothing heard that was not measured, and nothing written skipped. A resize cuts
    # nothing (reopening the stream cut 20-30 ms unmeasured): a loss at a resize is no
    # more than the machine's own hiccups elsewhere in the run (a busy one stalls the
    # writer now and then, 1-9 ms in CI, and once 2 ms just after a resize).
    assert all(measured(heard, losses, tolerance) for heard in runs), runs
    near = {i for k in (50, 100, 150, 200) for i in (k, k + 1)}
    hiccups = [loss.ms for i, loss in losses.items() if i not in near]
    at_resizes = {i: loss for i, loss in losses.items() if i in near}
    assert all(loss.ms <= max([tolerance + loss.doubt, *hiccups]) for loss in at_resizes.values())
    assert abs(length - (1500 + sum(runs))) < 1.0


def test_a_missing_sink_is_an_error(null_sink):
    assert os.environ["PULSE_SERVER"] == null_sink["PULSE_SERVER"]
    with pytest.raises(DeviceError, match=r"no\.such\.sink"):
        PlaybackStream("no.such.sink", "test", 48_000, 2 * BLOCK * 4, BLOCK)
