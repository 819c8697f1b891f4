"""The whole receiver (guard, demux, sessions, players, finisher) in virtual time: the
test is the output's clock, and pulls as a sound card would, 1000 ppm fast."""

from __future__ import annotations

import json
import random
import time

import numpy as np
import soundfile

from airmic.common import rtcp
from airmic.receiver.pipeline import Receiver, ReceiverConfig
from airmic.receiver.player import retire_stopped
from airmic.receiver.rooms import Room
from airmic.receiver.sinks import NullSinkFactory, WavSinkFactory
from tests.audio_match import match
from tests.receiver.test_session import datagrams

BLOCK = 240
PPM = 1000.0


class ClockedOutput:
    """An output whose clock is the test's: `beat(now)` pulls every attached stream once
    and keeps each stream's audio by name (silence while it has nothing to play)."""

    description = "test output"

    def __init__(self) -> None:
        self.pulled: list = []
        self.audio: dict[str, list[np.ndarray]] = {}

    def attach(self, pulled) -> None:
        self.pulled.append(pulled)

    def beat(self, now: float) -> None:
        self.pulled = retire_stopped(self.pulled)  # as the outputs' threads do
        for pulled in self.pulled:
            block = pulled.beat(BLOCK, now, now)
            silence = np.zeros(BLOCK, dtype=np.float32)
            self.audio.setdefault(pulled.session.name, []).append(
                silence if block is None else block
            )

    def close(self) -> None:
        pass


class Factory:
    spec = "test"

    def __init__(self, output: ClockedOutput) -> None:
        self.output = output

    def open(self, stream: str, room: str) -> ClockedOutput:
        return self.output

    def close(self) -> None:
        pass


def tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * 48_000)) / 48_000
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def jittered(packets, addr, rng, loss=0.0, start=0.0):
    """(arrival, datagram, addr): 10 ms apart, 0-15 ms of jitter (so some are reordered),
    `loss` of them gone (never the first two: the stream must open)."""
    return [
        (start + i * 0.01 + rng.uniform(0, 0.015), p, addr)
        for i, p in enumerate(packets)
        if i < 2 or rng.random() >= loss
    ]


async def test_streams_play_apart_through_loss_and_drift_and_one_ending_stalls_none(
    speech_samples,
):
    output = ClockedOutput()
    config = ReceiverConfig(("127.0.0.1", 0), [Factory(output), NullSinkFactory()], insecure=True)
    config.discovery = False
    receiver = Receiver(config)
    rng = random.Random(5)
    speech = speech_samples[: 48_000 * 6]
    short = tone(440, 2.0)
    a, b, c = ("127.0.0.1", 40_001), ("127.0.0.1", 40_002), ("127.0.0.1", 40_003)
    schedule = jittered(datagrams(speech, ssrc=1), a, rng, loss=0.05)
    schedule += jittered(datagrams(short, ssrc=2), b, rng)  # ends after 2 s
    schedule += jittered(datagrams(tone(660, 6.0), ssrc=3), c, rng, loss=0.02)
    schedule.sort(key=lambda s: s[0])

    beat = BLOCK / 48_000 / (1 + PPM * 1e-6)  # the output's clock runs 1000 ppm fast
    now, k = 0.0, 0
    while now < 6.6:
        while schedule and schedule[0][0] <= now:
            _, data, addr = schedule.pop(0)
            receiver.receive(data, addr, _)
        output.beat(now)
        if k % 20 == 0:
            receiver.tick(now)
        k += 1
        now = k * beat
    receiver.tick(now + 10)  # all silent long enough: every stream ends
    output.beat(now + 10)
    assert receiver.wait_finished(3, 5.0)

    by_name = {s["stream"]: s for s in receiver.finished}
    assert len(by_name) == 3
    heard = {name: np.concatenate(blocks) for name, blocks in output.audio.items()}
    name_a, name_b, name_c = (f"{h}:{p}/{ssrc:08x}" for (h, p), ssrc in ((a, 1), (b, 2), (c, 3)))
    assert match(speech, heard[name_a]).correlation > 0.85
    assert match(short, heard[name_b]).correlation > 0.9
    # The 660 Hz stream played on through the other's end without a hole.
    result = match(tone(660, 6.0), heard[name_c])
    assert result.correlation > 0.9 and result.longest_gap <= 1
    assert by_name[name_a]["lost"] > 0 and by_name[name_a]["recovered"] > 0
    # The sink's clock is 1000 ppm fast against the receiver's: the drift was followed.
    assert abs(by_name[name_c]["drift_ppm"] + PPM) < 150
    assert all(s["gaps"] == 0 for s in receiver.finished)
    await receiver.close()


async def test_a_rooms_gain_and_mute_reach_its_outputs_not_its_files(tmp_path):
    """A plain peer's room is its host. Muted: silence at the output (the mic), the file
    as it came; a gain of -6 dB: half the amplitude at the output."""
    output = ClockedOutput()
    sinks = [Factory(output), WavSinkFactory(tmp_path / "room.wav")]
    rooms = [Room("127.0.0.2", muted=True), Room("127.0.0.3", gain_db=-6.0206)]
    config = ReceiverConfig(("127.0.0.1", 0), sinks, insecure=True, rooms=rooms)
    config.discovery = False
    receiver = Receiver(config)
    rng = random.Random(7)
    muted, quieter = ("127.0.0.2", 40_001), ("127.0.0.3", 40_002)
    sent = {muted: tone(440, 2.0), quieter: tone(660, 2.0)}
    schedule = jittered(datagrams(sent[muted], ssrc=1), muted, rng)
    schedule += jittered(datagrams(sent[quieter], ssrc=2), quieter, rng)
    schedule.sort(key=lambda s: s[0])
    now, k = 0.0, 0
    while now < 2.5:
        while schedule and schedule[0][0] <= now:
            _, data, addr = schedule.pop(0)
            receiver.receive(data, addr, _)
        output.beat(now)
        k += 1
        now = k * BLOCK / 48_000
    receiver.tick(now + 10)
    output.beat(now + 10)
    assert receiver.wait_finished(2, 5.0)
    await receiver.close()

    heard = {name: np.concatenate(blocks) for name, blocks in output.audio.items()}
    assert not heard["127.0.0.2:40001/00000001"].any()  # muted: nothing at the mic
    half = heard["127.0.0.3:40002/00000002"]
    result = match(sent[quieter] * 0.5, half)
    assert result.correlation > 0.95
    aligned = half[result.lag : result.lag + 48_000]
    ratio = np.sqrt(np.mean(aligned**2) / np.mean(sent[quieter][:48_000] ** 2))
    assert abs(ratio - 0.5) < 0.02  # -6 dB
    files = {p.name: soundfile.read(p, dtype="float32")[0] for p in tmp_path.glob("room*.wav")}
    assert len(files) == 2
    for audio in files.values():  # each file as it came: full level, not muted
        best = max(match(s, audio).correlation for s in sent.values())
        level = np.sqrt(np.mean(audio**2))
        assert best > 0.9 and level > 0.15


async def test_a_senders_reports_are_answered_its_name_is_its_room_and_its_bye_ends_it():
    """A plain peer sends 2 s of tone, 5 packets lost, with a sender report (and its name)
    after its first packet and each second, then BYE. Each SR gets an RR about its stream,
    as of that moment; its name is its room; the BYE ends the stream at once, and nothing
    it had buffered is cut."""
    output = ClockedOutput()
    config = ReceiverConfig(("127.0.0.1", 0), [Factory(output)], insecure=True)
    config.discovery = False
    receiver = Receiver(config)
    addr, sent = ("127.0.0.5", 40_001), tone(440, 2.0)
    packets = datagrams(sent, ssrc=7)
    lost = {50, 51, 120, 121, 122}

    def report(i: int) -> bytes:
        return rtcp.sender_report(7, 1000.0 + i * 0.01, i * 480, i, i * 100, "kitchen")

    schedule = [(i * 0.01, p) for i, p in enumerate(packets) if i not in lost]
    schedule += [(i * 0.01 + 0.001, report(i)) for i in (0, 100, 199)]
    schedule.append((199 * 0.01 + 0.002, rtcp.goodbye(7, "kitchen")))
    schedule.sort(key=lambda s: s[0])
    answers = []
    now, k = 0.0, 0
    while receiver.demux.opened == 0 or output.pulled:  # until its player is retired
        while schedule and schedule[0][0] <= now:
            at, data = schedule.pop(0)
            answer = receiver.receive(data, addr, at)
            if answer is not None:
                answers.append((at, rtcp.parse(answer)))
        output.beat(now)
        k += 1
        now = k * BLOCK / 48_000
        assert now < 3.0  # ended by its BYE, long before the 5 s silence timeout
    assert receiver.wait_finished(1, 5.0)
    # --exit-after-idle counts from its last packet, not from the start: it is gone from
    # the live streams, and the receiver exited at once (a sender's restart missed).
    assert 1.98 <= receiver.last_activity(0.0) <= 1.992
    await receiver.close()

    (stream,) = receiver.finished
    assert stream["ended"] == "sender" and stream["lost"] == 5
    # The first SR came before the stream was confirmed (two packets in sequence): no RR.
    assert [round(at, 3) for at, _ in answers] == [1.001, 1.991]
    for (at, answer), lost_so_far in zip(answers, (2, 5), strict=True):
        (block,) = answer.blocks
        assert block.ssrc == 7 and block.packets_lost == lost_so_far
        assert block.lsr == rtcp.middle(rtcp.ntp(1000.0 + at - 0.001)) and block.dlsr == 0
        assert answer.view is not None and answer.view.delay_ms > 0
    assert receiver.rooms.keys() == {"kitchen"}
    heard = np.concatenate(output.audio["127.0.0.5:40001/00000007"])
    result = match(sent, heard)
    assert result.correlation > 0.9
    end = result.lag + len(sent) - 480  # the tone's last 10 ms: played out, not cut by BYE
    assert np.sqrt(np.mean(heard[end - 480 : end] ** 2)) > 0.1


async def recorded(tmp_path, times: list[float], packets: list[bytes]) -> tuple[dict, dict]:
    """Play `packets` from one sender at `times` (from now), then its goodbye, into a
    receiver recording rooms on a clocked output: the stream's stats, and its room's entry
    in session.json."""
    output = ClockedOutput()
    config = ReceiverConfig(("127.0.0.1", 0), [Factory(output)], insecure=True, record=tmp_path)
    config.discovery = False
    receiver = Receiver(config)
    start, addr = time.monotonic(), ("127.0.0.5", 40_001)
    schedule = [(start + t, p) for t, p in zip(times, packets, strict=True)]
    schedule.append((schedule[-1][0] + 0.001, rtcp.goodbye(7, "kitchen")))
    now, k = start, 0
    while receiver.demux.opened == 0 or output.pulled:  # until its player is retired
        while schedule and schedule[0][0] <= now:
            at, data = schedule.pop(0)
            receiver.receive(data, addr, at)
        output.beat(now)
        k += 1
        now = start + k * BLOCK / 48_000
    assert receiver.wait_finished(1, 5.0)
    await receiver.close()
    (stream,) = receiver.report()["streams"]
    (session,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (room,) = json.loads((session / "session.json").read_text())["rooms"]
    return stream, room


async def test_a_recorded_stream_that_comes_on_time_never_slips(tmp_path):
    """Packets exactly 10 ms apart into a room's file: the file keeps the stream where it
    began, and its alignment (every 2 s) finds nothing to move. (Placed by its second
    packet's arrival, as a stream is believed after two, each stream slipped one frame
    back 2 s in, and the frame it overlapped was left out of the file.)"""
    packets = datagrams(tone(440, 4.5), ssrc=7)
    _, room = await recorded(tmp_path, [i * 0.01 for i in range(len(packets))], packets)
    assert room["slips"] == 0, room


async def test_a_sender_that_stalls_after_its_first_packet_is_placed_by_the_rest(tmp_path):
    """Its first packet, then 0.7 s of nothing (a sender busy as it starts), then the
    stream at its pace: the room's file places the stream from the second packet, as if the
    first had come with it, not from the straggler (then every file slipped 0.7 s 2 s in)."""
    packets = datagrams(tone(440, 4.5), ssrc=7)
    times = [0.0] + [0.7 + i * 0.01 for i in range(len(packets) - 1)]
    stream, room = await recorded(tmp_path, times, packets)
    assert stream["underruns"] == 0 and stream["played"] == len(packets), stream
    assert room["slips"] == 0, room
