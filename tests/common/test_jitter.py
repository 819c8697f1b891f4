"""The fixed-delay jitter buffer, driven in virtual time."""

from __future__ import annotations

import itertools

from airmic.common.jitter import FixedJitterBuffer, Frame, FrameKind
from airmic.common.rtp import MediaPacket

TICK = 0.01  # the playout clock's beat: 10 ms blocks


def packet(i: int, seq0: int = 1000, ts0: int = 90_000, samples: int = 480, ts_extra: int = 0):
    """Packet number i of a 10 ms stream; its payload names it."""
    return MediaPacket(
        ssrc=1,
        seq=(seq0 + i) & 0xFFFF,
        timestamp=(ts0 + i * samples + ts_extra) & 0xFFFFFFFF,
        payload=f"p{i}".encode(),
        samples=samples,
    )


def run(jb: FixedJitterBuffer, arrivals: list[tuple[float, MediaPacket]], until: float):
    """Push each packet at its arrival time and pop at every tick; return (time, frame)."""
    arrivals = sorted(arrivals, key=lambda a: a[0])
    out: list[tuple[float, Frame | None]] = []
    t = 0.0
    while t < until:
        while arrivals and arrivals[0][0] <= t:
            at, pkt = arrivals.pop(0)
            jb.push(pkt, at)
        frame = jb.pop(t + TICK)
        out.append((t, frame))
        t = round(t + TICK, 6)
    return out


def steady(n: int, start: float = 0.0, **kw) -> list[tuple[float, MediaPacket]]:
    return [(start + i * TICK, packet(i, **kw)) for i in range(n)]


def kinds(out) -> list[str]:
    return [
        "-" if f is None else f.payload.decode() if f.kind is FrameKind.AUDIO else f.kind.value
        for _, f in out
    ]


def played(out) -> list[str]:
    return [k for k in kinds(out) if k != "-"]


def test_in_order_stream_plays_every_packet_after_the_delay():
    jb = FixedJitterBuffer(delay=0.03)
    out = run(jb, steady(50), until=0.6)
    assert played(out) == [f"p{i}" for i in range(50)] + ["conceal"] * 6
    first = next(t for t, f in out if f is not None)
    assert abs(first - 0.03) < 1e-9  # the block that starts 30 ms after the first arrival
    assert jb.stats.received == jb.stats.played == 50
    assert jb.stats.lost == jb.stats.late == jb.stats.duplicate == 0


def test_reordered_packets_come_out_in_order():
    arrivals = steady(40)
    for i in range(5, 35, 4):  # swap neighbours: packet i arrives after packet i + 1
        (ta, a), (tb, b) = arrivals[i], arrivals[i + 1]
        arrivals[i], arrivals[i + 1] = (tb + 0.001, a), (ta, b)
    jb = FixedJitterBuffer(delay=0.03)
    out = run(jb, arrivals, until=0.5)
    assert played(out)[:40] == [f"p{i}" for i in range(40)]
    assert jb.stats.lost == 0


def test_duplicates_are_dropped_and_counted():
    arrivals = steady(30) + [(i * TICK + 0.002, packet(i)) for i in range(0, 30, 3)]
    arrivals += [(0.2, packet(1))]  # a duplicate of a packet that already played
    jb = FixedJitterBuffer(delay=0.03)
    out = run(jb, arrivals, until=0.4)
    assert played(out)[:30] == [f"p{i}" for i in range(30)]
    assert jb.stats.duplicate == 11


def test_a_late_packet_is_rebuilt_from_fec_and_then_dropped():
    arrivals = steady(30)
    arrivals[10] = (0.25, packet(10))  # 150 ms late with a 30 ms buffer
    jb = FixedJitterBuffer(delay=0.03)
    out = run(jb, arrivals, until=0.4)
    expected = [f"p{i}" for i in range(30)]
    expected[10] = "fec"
    assert played(out)[:30] == expected
    fec = next(f for _, f in out if f is not None and f.kind is FrameKind.FEC)
    assert fec.payload == b"p11" and fec.samples == 480  # FEC data travels in the next packet
    assert (jb.stats.lost, jb.stats.recovered, jb.stats.late) == (1, 1, 1)


def test_a_burst_of_loss_is_concealed_then_recovered_from_fec():
    arrivals = [a for a in steady(30) if not 10 <= a[1].seq - 1000 <= 12]
    jb = FixedJitterBuffer(delay=0.03)
    out = run(jb, arrivals, until=0.4)
    assert played(out)[8:15] == ["p8", "p9", "conceal", "conceal", "fec", "p13", "p14"]
    assert (jb.stats.lost, jb.stats.recovered, jb.stats.concealed) == (3, 1, 2)


def test_without_fec_every_loss_is_concealed():
    arrivals = [a for a in steady(20) if a[1].seq != 1005]
    jb = FixedJitterBuffer(delay=0.03, fec=False)
    out = run(jb, arrivals, until=0.3)
    assert played(out)[4:7] == ["p4", "conceal", "p6"]


def test_sequence_and_timestamp_wrap_play_through():
    jb = FixedJitterBuffer(delay=0.03)
    arrivals = steady(40, seq0=65_520, ts0=0xFFFFFFFF - 10 * 480)
    arrivals[25], arrivals[26] = (
        (arrivals[26][0], arrivals[25][1]),
        (arrivals[25][0], arrivals[26][1]),
    )
    out = run(jb, arrivals, until=0.5)
    assert played(out)[:40] == [f"p{i}" for i in range(40)]
    assert jb.stats.lost == jb.stats.late == jb.stats.jumps == 0


def test_a_single_absurd_jump_is_dropped_and_the_stream_goes_on():
    arrivals = steady(30)
    arrivals.insert(10, (0.095, packet(20_000)))  # seq 20000 ahead
    arrivals.insert(20, (0.195, packet(-5000)))  # far behind
    jb = FixedJitterBuffer(delay=0.03)
    out = run(jb, arrivals, until=0.4)
    assert played(out)[:30] == [f"p{i}" for i in range(30)]
    assert jb.stats.jumps == 2 and jb.stats.restarts == 0


def test_a_confirmed_jump_restarts_the_stream():
    arrivals = steady(10) + [(0.1 + i * TICK, packet(i, seq0=40_000, ts0=7)) for i in range(10)]
    jb = FixedJitterBuffer(delay=0.03)
    out = run(jb, arrivals, until=0.4)
    # The new numbering is believed at its second packet; what the old one still had
    # buffered then (p8, p9) is given up, counted as lost.
    assert played(out)[:8] == [f"p{i}" for i in range(8)]
    assert [k for k in played(out)[8:] if k != "conceal"] == [f"p{i}" for i in range(1, 10)]
    assert jb.stats.jumps == 1 and jb.stats.restarts == 1 and jb.stats.lost == 2


def test_a_sender_pause_is_concealed_briefly_then_silent_then_resumes_on_time():
    # DTX: the sequence goes on, the timestamps jump by 500 ms.
    arrivals = steady(10) + [(0.6 + i * TICK, packet(10 + i, ts_extra=24_000)) for i in range(10)]
    jb = FixedJitterBuffer(delay=0.03, max_conceal=0.06)
    out = run(jb, arrivals, until=1.0)
    k = kinds(out)
    first = k.index("p10")
    assert k[k.index("p9") + 1 : k.index("p9") + 7] == ["conceal"] * 6
    assert set(k[k.index("p9") + 7 : first]) == {"-"}
    # p10 was meant to play 0.5 s + 100 ms after p0: the timeline held through the pause.
    assert abs(out[first][0] - out[k.index("p0")][0] - 0.6) < 1e-6
    assert jb.stats.lost == 0


def test_after_an_outage_the_buffer_idles_and_anchors_afresh():
    # The network drops 1 s of packets (seq 10..109); the buffer must not conceal all of it.
    arrivals = steady(10) + [(1.1 + i * TICK, packet(110 + i)) for i in range(10)]
    jb = FixedJitterBuffer(delay=0.03, max_conceal=0.06)
    out = run(jb, arrivals, until=1.5)
    k = kinds(out)
    resumed = k.index("p110")
    assert k[:resumed].count("conceal") == 6
    assert abs(out[resumed][0] - (1.1 + 0.03)) < 1e-6  # a fresh 30 ms delay
    assert [k for k in played(out) if k != "conceal"][-10:] == [f"p{i}" for i in range(110, 120)]
    assert jb.stats.lost == 100 and jb.stats.underruns == 2  # the outage, and the end


def test_packets_of_several_durations_keep_the_timeline():
    # 20 ms packets played by a 10 ms clock: one frame every other tick.
    arrivals = [(i * 0.02, packet(i, samples=960)) for i in range(20)]
    jb = FixedJitterBuffer(delay=0.04)
    out = run(jb, arrivals, until=0.6)
    frames = [(t, f) for t, f in out if f is not None and f.kind is FrameKind.AUDIO]
    assert [f.payload for _, f in frames] == [f"p{i}".encode() for i in range(20)]
    gaps = {round(b[0] - a[0], 6) for a, b in itertools.pairwise(frames)}
    assert gaps == {0.02}
