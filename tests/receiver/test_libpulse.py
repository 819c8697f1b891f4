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

pytestmark = [pytest.mark.realtime, pytest.mark.parametrize("pulse", SERVERS, indirect=True)]
BLOCK = 240
MS = 5.0  # a block's
TONE = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(BLOCK) / 48_000)).astype("<f4").tobytes()


@pytest.fixture
def null_sink(pulse, monkeypatch):
    for key, value in pulse.items():
        if key.startswith("PULSE_"):
            monkeypatch.setenv(key, value)
    pactl(pulse, "load-module", "module-null-sink", "sink_name=t", "rate=48000", "channels=1",
          "format=s16le", "norewinds=1")  # fmt: skip
    return pulse


class Silence(NamedTuple):
    """A silence inside the tone as a recorder heard it (ms): after `at` of the tone (so
    while block at / 5 was due), `ms` long."""

    at: float
    ms: float


def heard_in(path) -> tuple[float, list[Silence]]:
    """The tone a recorder heard, silences left out (ms), and its silences: runs of more
    than 8 samples under a tenth of its peak (a 1 kHz tone crosses zero in one sample)."""
    audio = np.abs(soundfile.read(path, dtype="float32")[0]) > 0.05
    sounding = np.flatnonzero(audio)
    edges = np.flatnonzero(np.diff(audio[sounding[0] : sounding[-1] + 1].astype(np.int8)))
    found, silent = [], 0
    for a, b in zip(edges[::2], edges[1::2], strict=False):
        if b - a > 8:
            found.append(Silence((a - silent) / 48, (b - a) / 48))
            silent += b - a
    return (sounding[-1] - sounding[0] - silent) / 48, found


def heard(paths) -> tuple[list[float], list[Silence]]:
    """What two recorders heard: the tone each heard, and the silences both heard. A
    recorder misses a quantum of its own now and then on PipeWire (a 5.3 ms silence in
    place of the tone, or the tone 5.3 ms short: 2 runs in 26 with one recorder), not
    seen in both at once; a silence heard by both within a block of the tone is one."""
    (tone, first), (other, second) = (heard_in(path) for path in paths)
    both = [s for s in first if any(abs(s.at - t.at) <= MS + 1 for t in second)]
    return [tone, other], both


class Loss(NamedTuple):
    """An underrun the server reported, as PulseOutput measures it (ms): its length, from the
    move of the timeline, and by how much that may be off (half of each of the round trips
    of the two reports around it: a busy machine's take a millisecond now and then)."""

    ms: float
    doubt: float


def play(tmp_path, env, blocks: int, act) -> tuple[list[float], list[Silence], dict[int, Loss]]:
    """`blocks` of tone into the null sink, `act(i, stream)` before each; the tone each
    recorder heard and the silences both heard (ms), and the underruns measured, by block."""
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
                if i < blocks + 2:  # later, it ran dry in the silence after the tone: unheard
                    losses[i] = Loss(dry_for * 1e3, before + half_trip)
                dry_for, before = 0.0, half_trip
        time.sleep(0.3)
    finally:
        stream.close()
    for recorder in recorders:
        recorder.stop()
    return *heard(files), losses


def counted(silences: list[Silence], losses: dict[int, Loss], tolerance: float) -> list[Silence]:
    """Checks that no loss was counted that was not heard, and that the silences heard add
    up to the losses, to within the tolerance and each loss's doubt; the silences heard that
    no loss counted. An underrun that began as block at / 5 was due is reported with one of
    the next writes: 1-3 blocks on (the queue's), 5 after a burst of four short ones on a
    busy day. (Each one's own length is not compared: two underruns a block or two apart
    are heard as one silence, or one as two, each off by a few ms and their sum right.)"""
    missed = [s for s in silences if not any(-1 <= i - s.at / MS <= 8 for i in losses)]
    for i, loss in losses.items():
        if loss.ms > tolerance + loss.doubt:
            assert any(-1 <= i - s.at / MS <= 8 for s in silences), (i, loss, silences)
    error = sum(loss.ms for loss in losses.values()) - sum(
        s.ms for s in silences if s not in missed
    )
    assert abs(error) <= sum(tolerance + loss.doubt for loss in losses.values()) + 0.5
    return missed


def unseen(request, missed: list[Silence]) -> float:
    """The silences heard that the stream never reported, which must be none (ms in all).
    On PipeWire, the graph's own xruns: a cycle in which the stream's node was not run is
    silence at the mic (and the tone after it moved, or cut) while the stream never ran
    dry, so its server cannot report it. Seen on this machine in 2 runs of 14 (10.7 ms); a
    native PipeWire node would see them (issue 16). Printed, and allowed there."""
    if request.node.callspec.params["pulse"] == "pulseaudio":
        assert not missed, missed
    if missed:
        print(f"not reported by the stream (the graph's xruns): {missed}")
    return sum(s.ms for s in missed)


def test_each_stall_is_measured_as_the_mic_hears_it(request, tmp_path, null_sink, tolerance):
    """Three stalls of 30 ms: each silence heard is counted, as long as heard. (A hiccup of
    the machine's own, heard, must be counted too: 1-2 ms ones, on a busy day.)"""

    def stall(i, stream):
        if i in (100, 200, 300):  # 30 ms without a write: the 10 ms queue runs dry
            time.sleep(0.03)

    tones, silences, losses = play(tmp_path, null_sink, 400, stall)
    print(f"\nheard silences {silences}; measured {losses}; tone {tones} ms")
    missed = counted(silences, losses, tolerance)
    reported = [s.at / MS for s in silences if s not in missed]
    assert all(any(abs(at - k) <= 2 for at in reported) for k in (100, 200, 300))
    # Nothing written was skipped (but by the graph, on PipeWire).
    assert any(abs(tone - 2000) < 1.0 + unseen(request, missed) for tone in tones)


def test_a_resize_is_not_heard(request, tmp_path, null_sink, tolerance):
    def resize(i, stream):
        if i in (50, 150):
            stream.resize(4 * BLOCK * 4)
        if i in (100, 200):
            stream.resize(2 * BLOCK * 4)

    tones, silences, losses = play(tmp_path, null_sink, 300, resize)
    print(f"\nheard silences {silences}; measured {losses}; tone {tones} ms")
    # Nothing heard that was not counted, and nothing written skipped. A resize cuts
    # nothing (reopening the stream cut 20-30 ms unmeasured): a loss at a resize is no
    # more than the machine's own hiccups elsewhere in the run (a busy one stalls the
    # writer now and then, 1-9 ms in CI, and once 2 ms just after a resize).
    missed = counted(silences, losses, tolerance)
    near = {i for k in (50, 100, 150, 200) for i in (k, k + 1)}
    hiccups = [loss.ms for i, loss in losses.items() if i not in near]
    at_resizes = {i: loss for i, loss in losses.items() if i in near}
    assert all(loss.ms <= max([tolerance + loss.doubt, *hiccups]) for loss in at_resizes.values())
    assert any(abs(tone - 1500) < 1.0 + unseen(request, missed) for tone in tones)


def test_a_missing_sink_is_an_error(null_sink):
    assert os.environ["PULSE_SERVER"] == null_sink["PULSE_SERVER"]
    with pytest.raises(DeviceError, match=r"no\.such\.sink"):
        PlaybackStream("no.such.sink", "test", 48_000, 2 * BLOCK * 4, BLOCK)
