"""The jitter buffer's decisions, packet by packet (the playout pulls frames in order)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from airmic.common.jitter import (
    Arrival,
    Fate,
    FrameKind,
    JitterBuffer,
    Limits,
    Operation,
    Status,
    decide,
)
from airmic.common.rtp import MediaPacket


def packet(i: int, seq0: int = 1000, ts0: int = 90_000, samples: int = 480, ts_extra: int = 0):
    """Packet number i of a 10 ms stream; its payload names it."""
    return MediaPacket(
        ssrc=1,
        seq=(seq0 + i) & 0xFFFF,
        timestamp=(ts0 + i * samples + ts_extra) & 0xFFFFFFFF,
        payload=f"p{i}".encode(),
        samples=samples,
    )


STRETCHED = {}


def pop(jb: JitterBuffer, n: int, now: float = 0.0) -> list[str]:
    """The next n decisions: a packet's name, or the kind of frame ('-' for idle). The
    samples by which the stream was delayed are summed in STRETCHED[jb]."""
    out = []
    for _ in range(n):
        frame = jb.pop(now)
        STRETCHED[jb] = STRETCHED.get(jb, 0) + (frame.stretched if frame is not None else 0)
        if frame is None:
            out.append("-")
        elif frame.kind is FrameKind.AUDIO:
            out.append(frame.payload.decode())
        elif frame.kind is FrameKind.COPY:
            out.append(f"{frame.payload.decode()} copy")
        else:
            out.append(frame.kind.value)
    return out


def filled(packets, **kw) -> JitterBuffer:
    jb = JitterBuffer(**kw)
    for i, p in enumerate(packets):
        jb.push(p, i * 0.01)
    return jb


def test_in_order_then_stretch_then_idle():
    jb = filled([packet(i) for i in range(5)])
    # 60 ms of concealment, then silence up to 300 ms, then idle.
    expected = ["p0", "p1", "p2", "p3", "p4"] + ["expand"] * 6 + ["wait"] * 24 + ["-", "-"]
    assert pop(jb, 37) == expected
    assert jb.idle and jb.stats.played == 5 and jb.stats.underruns == 1
    assert jb.stats.stretched == 30 * 480  # the 300 ms it played while dry


def test_reordered_packets_come_out_in_order():
    order = [0, 2, 1, 3, 5, 4, 6]
    jb = filled([packet(i) for i in order])
    assert pop(jb, 7) == [f"p{i}" for i in range(7)]
    assert jb.stats.lost == 0


def test_duplicates_are_dropped_and_counted():
    jb = filled([packet(i) for i in [0, 1, 1, 2, 0]])
    assert pop(jb, 3) == ["p0", "p1", "p2"]
    jb.push(packet(1), 1.0)  # a duplicate of a packet that already played
    assert jb.stats.duplicate == 3


def test_a_missing_packet_is_rebuilt_from_the_next_ones_fec_then_its_late_copy_dropped():
    jb = filled([packet(i) for i in range(10) if i != 5])
    assert pop(jb, 7, now=1.0) == ["p0", "p1", "p2", "p3", "p4", "fec", "p6"]
    arrival = jb.push(packet(5), 1.03)
    assert (jb.stats.lost, jb.stats.recovered, jb.stats.late) == (1, 1, 1)
    assert arrival == Arrival(Fate.LATE, 1.0 - 1.03)  # how late it came, for the delay control


def test_fec_frame_carries_the_next_packet():
    jb = filled([packet(0), packet(2)])
    jb.pop(0)
    fec = jb.pop(0)
    assert fec.kind is FrameKind.FEC and fec.payload == b"p2" and fec.samples == 480


def test_a_burst_is_concealed_then_its_last_packet_rebuilt_from_fec():
    jb = filled([packet(i) for i in [0, 1, 5, 6]])
    assert pop(jb, 7) == ["p0", "p1", "conceal", "conceal", "fec", "p5", "p6"]
    assert (jb.stats.lost, jb.stats.recovered, jb.stats.concealed) == (3, 1, 2)


def test_without_fec_every_loss_is_concealed():
    jb = filled([packet(0), packet(2)], fec=False)
    assert pop(jb, 3) == ["p0", "conceal", "p2"]


def test_sequence_and_timestamp_wrap_play_through():
    packets = [packet(i, seq0=65_530, ts0=0xFFFFFFFF - 4 * 480) for i in range(12)]
    packets[6], packets[7] = packets[7], packets[6]
    jb = filled(packets)
    assert pop(jb, 12) == [f"p{i}" for i in range(12)]
    assert jb.stats.lost == jb.stats.jumps == 0


def test_a_single_absurd_jump_is_dropped_and_the_stream_goes_on():
    jb = filled([packet(0), packet(1), packet(20_000), packet(2), packet(-5000), packet(3)])
    assert pop(jb, 4) == ["p0", "p1", "p2", "p3"]
    assert jb.stats.jumps == 2 and jb.stats.restarts == 0


def test_a_confirmed_jump_restarts_the_stream():
    new = [packet(i, seq0=40_000, ts0=7) for i in range(4)]
    jb = filled([packet(0), packet(1), *new])
    # The new numbering is believed at its second packet; the old one's leftovers are lost.
    assert pop(jb, 3) == ["p1", "p2", "p3"]
    assert jb.stats.jumps == 1 and jb.stats.restarts == 1 and jb.stats.lost == 2


def test_a_pause_in_the_timestamps_is_concealed_briefly_then_silent():
    # DTX: the sequence goes on, the timestamps jump by 200 ms.
    jb = filled([packet(0), packet(1, ts_extra=9600), packet(2, ts_extra=9600)])
    frames = pop(jb, 24)
    assert frames == ["p0"] + ["conceal"] * 6 + ["silence"] * 14 + ["p1", "p2", "expand"]
    assert jb.stats.lost == 0


def test_a_stretch_that_stood_for_a_lost_packet_is_merged_into_the_timeline():
    jb = filled([packet(0), packet(1)])
    assert pop(jb, 3) == ["p0", "p1", "expand"]
    jb.push(packet(3), 0.1)  # packet 2 never comes: the stretch played in its place
    assert pop(jb, 1) == ["p3"]
    assert (jb.stats.lost, jb.stats.concealed, STRETCHED.get(jb, 0)) == (1, 1, 0)


def test_a_power_save_stall_is_waited_out_not_restarted():
    jb = filled([packet(0)])
    assert pop(jb, 16) == ["p0"] + ["expand"] * 6 + ["wait"] * 9
    for i in range(1, 16):  # the stalled packets come in a burst, none lost
        jb.push(packet(i), 0.16)
    assert pop(jb, 15) == [f"p{i}" for i in range(1, 16)]
    assert jb.stats.lost == 0 and STRETCHED.get(jb, 0) == 15 * 480


def test_a_stretch_before_a_late_packet_delays_the_stream():
    jb = filled([packet(0), packet(1)])
    assert pop(jb, 4) == ["p0", "p1", "expand", "expand"]
    jb.push(packet(2), 0.1)
    assert pop(jb, 1) == ["p2"]
    assert jb.stats.lost == 0 and STRETCHED.get(jb, 0) == 960


def test_after_an_outage_the_buffer_idles_and_starts_afresh():
    jb = filled([packet(i) for i in range(3)])
    assert pop(jb, 34) == ["p0", "p1", "p2"] + ["expand"] * 6 + ["wait"] * 24 + ["-"]
    jb.push(packet(100), 2.0)
    jb.push(packet(101), 2.01)
    assert not jb.idle
    assert pop(jb, 2) == ["p100", "p101"]
    assert jb.stats.lost == 97


def test_packets_of_any_duration():
    jb = filled([packet(i, samples=2880) for i in range(3)])  # 60 ms packets
    assert pop(jb, 3) == ["p0", "p1", "p2"]
    assert jb.frame_samples == 2880


def with_copies(i: int, depth: int = 1):
    """Packet i carrying redundant copies of the `depth` packets before it (RFC 2198)."""
    copies = tuple(packet(k) for k in range(max(0, i - depth), i))
    return replace(packet(i), redundant=copies)


def test_a_redundant_copy_stands_in_for_a_lost_packet():
    jb = filled([with_copies(i) for i in range(6) if i != 3])
    assert pop(jb, 6) == ["p0", "p1", "p2", "p3 copy", "p4", "p5"]
    assert (jb.stats.lost, jb.stats.repaired, jb.stats.duplicate) == (0, 1, 0)


def test_redundant_copies_of_played_or_held_packets_count_for_nothing():
    jb = filled([with_copies(i, depth=2) for i in range(4)])
    assert pop(jb, 2) == ["p0", "p1"]
    jb.push(with_copies(2, depth=2), 0.1)  # a duplicate, with copies of played packets
    assert pop(jb, 3) == ["p2", "p3", "expand"]
    assert (jb.stats.repaired, jb.stats.duplicate, jb.stats.late) == (0, 1, 0)


def test_a_burst_longer_than_the_copies_is_concealed_and_fec_rebuilt():
    jb = filled([with_copies(i) for i in [0, 1, 5, 6]])
    assert pop(jb, 7) == ["p0", "p1", "conceal", "fec", "p4 copy", "p5", "p6"]
    assert (jb.stats.lost, jb.stats.repaired) == (2, 1)


LIMITS = Limits(fec=True, max_conceal=2880, max_wait=14_400)


def status(**kw) -> Status:
    """A buffer playing 10 ms frames, by default with the packet in turn here, on time."""
    base = dict(anchored=True, head=0, head_samples=480, missing=0, ahead=0, stretched=0)
    return Status(**{**base, **kw})


@pytest.mark.parametrize(
    ("snapshot", "operation"),
    [
        (status(anchored=False, head=None, ahead=None), Operation.IDLE),
        (status(), Operation.NORMAL),
        (status(head=960, ahead=960), Operation.PAUSE),  # DTX: the timestamps jump
        (status(head=-480, ahead=-480), Operation.DISCARD),  # its time was concealed
        (status(head=None, missing=1, ahead=480), Operation.FEC),
        (status(head=None, missing=2, ahead=960), Operation.CONCEAL),
        (status(head=None, missing=3, ahead=20_000), Operation.SKIP),  # too long to conceal
        (status(head=None, missing=1, ahead=0), Operation.SKIP),  # nothing left to fill
        (status(head=None, ahead=None), Operation.EXPAND),
        (status(head=None, ahead=None, stretched=14_400), Operation.IDLE),
        (status(head=None, missing=1, ahead=480, stretched=960), Operation.MERGE),
        (status(head=0, ahead=0, stretched=960), Operation.NORMAL),  # the one awaited came
    ],
)
def test_each_status_decides_one_operation(snapshot, operation):
    assert decide(snapshot, LIMITS) is operation


def test_without_fec_a_single_loss_is_concealed():
    lost = status(head=None, missing=1, ahead=480)
    assert decide(lost, replace(LIMITS, fec=False)) is Operation.CONCEAL


def test_an_arrival_says_what_became_of_it():
    jb = JitterBuffer()
    assert jb.push(packet(0), 0.0) == Arrival(Fate.STORED)
    assert jb.push(packet(0), 0.01) == Arrival(Fate.DUPLICATE)
    assert jb.push(packet(30_000), 0.02) == Arrival(Fate.JUMP)
    copy = replace(packet(2), redundant=(packet(1),))
    assert jb.push(copy, 0.03) == Arrival(Fate.STORED, repaired=1)
    assert [f.lost for f in (jb.pop(0.04), jb.pop(0.04), jb.pop(0.04))] == [0, 0, 0]
    assert pop(jb, 40)[-1] == "-"  # idle: the next packet resumes the stream
    assert jb.push(packet(10), 1.0) == Arrival(Fate.STORED, lost=7)
