"""Demux and sessions in virtual time, with real Opus and list surgery on the packets."""

from __future__ import annotations

import random

import numpy as np

from airmic.common.delay import parse_latency
from airmic.common.opus import OpusConfig, OpusEncoder
from airmic.common.playout import Playout
from airmic.common.rtp import Packetizer
from airmic.receiver.demux import PER_HOST, Demux
from airmic.receiver.session import Origin, Session
from tests.audio_match import match


class ListSink:
    description = "list"

    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []
        self.idle_samples = 0
        self.closed = False

    def write(self, block):
        self.blocks.append(block)

    def idle(self, samples):
        self.idle_samples += samples

    def close(self):
        self.closed = True

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.blocks)


def datagrams(samples: np.ndarray, ssrc: int = 0xABC, seq: int = 65_000) -> list[bytes]:
    config = OpusConfig()
    encoder = OpusEncoder(config)
    packetizer = Packetizer(ssrc=ssrc, seq=seq)
    n = config.frame_samples
    return [
        packetizer.packetize(encoder.encode(samples[i : i + n]), n)
        for i in range(0, len(samples) - n + 1, n)
    ]


class Harness:
    """A demux whose sessions write to ListSinks, driven by a 10 ms virtual clock."""

    def __init__(self, max_streams: int = 16) -> None:
        self.sinks: dict[int, ListSink] = {}
        self.demux = Demux(self.open, max_streams, finish=self.finish)
        self.finished: list[tuple[int, str]] = []

    def open(self, key, now):
        sink = ListSink()
        self.sinks[key[1]] = sink
        return Session(Origin(str(key), encrypted=False), Playout(parse_latency("40ms")), now)

    def finish(self, key, why):
        self.demux.close(key)
        self.finished.append((key[1], why))

    def run(self, schedule: list[tuple[float, bytes, tuple[str, int]]], until: float) -> None:
        schedule = sorted(schedule, key=lambda s: s[0])
        t = 0.0
        while t < until:
            while schedule and schedule[0][0] <= t:
                at, data, addr = schedule.pop(0)
                self.demux.receive(data, addr, at)
            for (_, ssrc), session in self.demux.sessions.items():
                block = session.read(480, t)  # the sink's clock pulls
                if block is None:
                    self.sinks[ssrc].idle(480)
                else:
                    self.sinks[ssrc].write(block)
            t = round(t + 0.01, 6)


ADDR = ("127.0.0.1", 40_000)


def test_a_stream_through_demux_and_session_matches_its_input(speech_samples):
    harness = Harness()
    packets = datagrams(speech_samples)
    harness.run(
        [(i * 0.01, p, ADDR) for i, p in enumerate(packets)], until=len(packets) * 0.01 + 0.5
    )
    (session,) = harness.demux.sessions.values()
    result = match(speech_samples, harness.sinks[0xABC].audio)
    assert result.correlation > 0.9 and result.longest_gap == 0
    assert session.playout.jitter.stats.lost == 0 and session.playout.jitter.stats.played == len(
        packets
    )


def test_loss_is_recovered_and_the_audio_still_matches(speech_samples):
    harness = Harness()
    packets = datagrams(speech_samples)
    rng = random.Random(7)
    kept = [(i * 0.01, p, ADDR) for i, p in enumerate(packets) if i < 2 or rng.random() > 0.05]
    harness.run(kept, until=len(packets) * 0.01 + 0.5)
    (session,) = harness.demux.sessions.values()
    stats = session.playout.jitter.stats
    assert stats.lost == len(packets) - len(kept)
    assert stats.recovered > 0 and stats.recovered + stats.concealed == stats.lost
    result = match(speech_samples, harness.sinks[0xABC].audio)
    assert result.correlation > 0.85 and result.longest_gap <= 1


def test_garbage_interleaved_with_a_stream_is_dropped_by_kind(speech_samples):
    harness = Harness()
    packets = datagrams(speech_samples[: 48_000 * 2])
    rng = random.Random(1)
    garbage = [rng.randbytes(rng.randint(0, 300)) for _ in range(2000)]  # random bytes
    garbage += [bytes([0x80, 0x60]) + rng.randbytes(10)] * 50  # RTP headers with no payload
    garbage += [bytes([0x80, 0x00]) + rng.randbytes(40)] * 50  # PCMU, PT 0
    garbage += [bytes(20_000)] * 10  # oversized
    schedule = [(i * 0.01, p, ADDR) for i, p in enumerate(packets)]
    schedule += [
        (rng.random() * 2, g, ("127.0.0.1", 50_000 + i % 7)) for i, g in enumerate(garbage)
    ]
    harness.run(schedule, until=2.5)
    assert list(harness.sinks) == [0xABC]  # no stream made up from garbage
    session = harness.demux.sessions[(ADDR, 0xABC)]
    assert session.playout.jitter.stats.lost == 0 and session.malformed == 0
    dropped = harness.demux.dropped.counts
    assert (
        dropped["bad_opus"] >= 50 and dropped["payload_type"] >= 50 and dropped["oversized"] == 10
    )
    assert sum(dropped.values()) >= len(garbage) - 40  # a few random datagrams wait in probation
    assert match(speech_samples[: 48_000 * 2], harness.sinks[0xABC].audio).correlation > 0.9


def test_two_streams_from_one_address_stay_apart(speech_samples):
    harness = Harness()
    a = datagrams(speech_samples[: 48_000 * 2], ssrc=1)
    tone = (0.3 * np.sin(np.arange(96_000) * 2 * np.pi * 440 / 48_000)).astype(np.float32)
    b = datagrams(tone, ssrc=2, seq=10)
    schedule = [(i * 0.01, p, ADDR) for i, p in enumerate(a)]
    schedule += [(0.003 + i * 0.01, p, ADDR) for i, p in enumerate(b) if i % 10]  # b loses 10 %
    harness.run(schedule, until=2.5)
    assert match(speech_samples[: 48_000 * 2], harness.sinks[1].audio).correlation > 0.9
    assert match(tone, harness.sinks[2].audio).correlation > 0.9
    streams = harness.demux.sessions
    assert streams[(ADDR, 1)].playout.jitter.stats.lost == 0
    assert streams[(ADDR, 2)].playout.jitter.stats.lost == 19


def test_streams_beyond_the_limit_are_refused():
    harness = Harness(max_streams=2)
    silence = np.zeros(4800, dtype=np.float32)
    schedule = []
    for ssrc in (1, 2, 3):
        schedule += [(i * 0.01, p, ADDR) for i, p in enumerate(datagrams(silence, ssrc=ssrc))]
    harness.run(schedule, until=0.3)
    assert sorted(harness.sinks) == [1, 2]
    assert harness.demux.dropped.counts["too_many_streams"] > 0


def test_a_stream_needs_two_packets_in_sequence_to_start():
    harness = Harness()
    packets = datagrams(np.zeros(4800, dtype=np.float32))
    harness.run([(0.0, packets[0], ADDR), (0.01, packets[2], ADDR)], until=0.1)
    assert not harness.demux.sessions
    harness.run([(0.0, packets[3], ADDR)], until=0.1)
    assert list(harness.sinks) == [0xABC]


def test_a_stream_that_stops_does_not_end_in_silence(speech_samples):
    harness = Harness()
    packets = datagrams(speech_samples[: 48_000 * 2])
    harness.run([(i * 0.01, p, ADDR) for i, p in enumerate(packets)], until=3.0)
    sink = harness.sinks[0xABC]
    tail = sink.audio[-2400:]  # the last 50 ms written: the end of the stream, concealed
    assert len(sink.audio) <= 48_000 * 2 + 0.1 * 48_000  # its audio, the delay, concealment
    assert tail.any()
    assert sink.idle_samples >= 0.3 * 48_000  # the wait for more, then the idle time


def test_plain_streams_from_one_host_are_bounded_and_churn_replaces():
    """--insecure: a host that churns SSRCs (each a few packets, from one socket) holds
    one stream at a time, each replacing the last, and opens a new one every 5 s once its
    first PER_HOST are spent; one that opens many at once from many ports gets PER_HOST;
    another host's stream opens all the while."""
    harness = Harness()
    silence = np.zeros(4800, dtype=np.float32)
    churner, spreader, good = ("10.0.0.6", 5000), "10.0.0.7", ("10.0.0.8", 5000)
    schedule = []
    for n in range(20):  # a new SSRC every 0.5 s, 3 packets each
        packets = datagrams(silence, ssrc=100 + n)[:3]
        schedule += [(n * 0.5 + i * 0.01, p, churner) for i, p in enumerate(packets)]
    ten_seconds = np.zeros(480_000, dtype=np.float32)
    for n in range(12):  # 12 streams at once from 12 ports, for 10 s
        packets = datagrams(ten_seconds, ssrc=200 + n)
        schedule += [(i * 0.01, p, (spreader, 6000 + n)) for i, p in enumerate(packets)]
    schedule += [(i * 0.01, p, good) for i, p in enumerate(datagrams(silence, ssrc=300))]
    harness.run(schedule, until=10.0)
    live = harness.demux.sessions
    assert len([k for k in live if k[0] == churner]) <= 1  # each new SSRC replaced the last
    assert len([k for k in live if k[0][0] == spreader]) == PER_HOST
    assert 300 in harness.sinks  # the other host's stream opened
    dropped = harness.demux.dropped.counts
    assert dropped["too_many_from_host"] > 0 and "too_many_streams" not in dropped
    churned = [why for ssrc, why in harness.finished if ssrc < 200]  # 19 tried
    assert set(churned) == {"replaced"} and len(churned) <= PER_HOST + 2  # then one per 5 s
    assert dropped["stream_churn"] > 0
