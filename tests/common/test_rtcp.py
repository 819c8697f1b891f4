"""RTCP (common/rtcp.py) and what the sender makes of it (sender/feedback.py), in virtual
time: reports built and read back, RFC 3550's loss and jitter figures, the round trip."""

from __future__ import annotations

import logging
import random

import pytest
from aiortc.rtp import RtcpSenderInfo

from airmic.common import rtcp
from airmic.common.rtp import DroppedPacket
from airmic.sender.feedback import NO_ANSWER, Feedback


def test_a_sender_report_names_its_sender_and_a_goodbye_its_stream():
    report = rtcp.parse(rtcp.sender_report(0xABC, 1_700_000_000.25, 48_000, 100, 16_000, "hall"))
    assert report.ssrc == 0xABC and report.name == "hall" and report.bye == []
    assert report.sender.rtp_timestamp == 48_000 and report.sender.packet_count == 100
    seconds = report.sender.ntp_timestamp / (1 << 32) - rtcp.NTP_EPOCH
    assert abs(seconds - 1_700_000_000.25) < 1e-6
    bye = rtcp.parse(rtcp.goodbye(0xABC, "hall"))
    assert bye.bye == [0xABC] and bye.sender is None


def test_a_receiver_report_carries_airmics_view():
    view = rtcp.View(23.4, 3, 5, 1, 2, 12.5)
    block = rtcp.Reception().block(0xABC, 0.0)
    report = rtcp.parse(rtcp.receiver_report(0xDEF, block, view))
    assert report.ssrc == 0xDEF and report.blocks[0].ssrc == 0xABC and report.view == view


@pytest.mark.parametrize(
    "data", [b"\x80\xc8\x00\x06" + bytes(8), b"\x80\xc9\x00\x09" + bytes(4), b"\x40\xc8\x00\x00"]
)
def test_malformed_rtcp_is_dropped(data):
    with pytest.raises(DroppedPacket):
        rtcp.parse(data)


def test_loss_and_jitter_are_rfc_3550s():
    """200 packets across the sequence numbers' wrap, 10 lost, some reordered, arriving
    with a uniform 0-4 ms of jitter: RFC 3550's estimator reads about a third of the
    jitter's span (its mean |D| is 4/3 ms for a uniform 0-4 ms delay)."""
    rng = random.Random(1)
    reception = rtcp.Reception()
    gone = set(rng.sample(range(2, 200), 10))
    arrivals = [
        (i * 0.01 + rng.uniform(0, 0.004), (65_500 + i) & 0xFFFF, i * 480)
        for i in range(200)
        if i not in gone
    ]
    for now, seq, timestamp in sorted(arrivals):
        reception.packet(seq, timestamp, now)
    reception.sender_report(RtcpSenderInfo(rtcp.ntp(1e9), 0, 0, 0), 2.0)
    block = reception.block(0xABC, 2.5)
    assert block.packets_lost == 10 and block.fraction_lost == 10 * 256 // 200
    assert block.highest_sequence == 65_500 + 199  # extended past the wrap
    assert 0.9 < block.jitter / 48 < 1.8  # ms
    assert block.lsr == rtcp.middle(rtcp.ntp(1e9)) and block.dlsr == 0.5 * 65536
    assert reception.block(0xABC, 3.0).fraction_lost == 0  # nothing since the last block


def test_the_sender_reads_the_round_trip_and_the_clocks_offset_and_says_when_reports_stop(
    caplog,
):
    """The receiver's wall clock is 5 s ahead. An SR sent at 100.000 s (the sender's clock)
    arrives at 105.003 (the receiver's), is answered at 105.007, and the answer is back at
    100.010: a 6 ms round trip, an offset of 5 s. Then no report for NO_ANSWER seconds:
    said once, as a warning."""
    caplog.set_level(logging.INFO)
    feedback = Feedback(0xABC, now=0.0)
    assert feedback.offset is None
    reception = rtcp.Reception()
    reception.packet(1, 0, 0.0)
    reception.sender_report(RtcpSenderInfo(rtcp.ntp(100.0), 0, 1, 1), 0.003)
    block = reception.block(0xABC, 0.007)
    view = rtcp.View(20.0, 0, 0, 0, 0, 0.0, end_to_end_ms=41.5, sent=rtcp.middle(rtcp.ntp(105.007)))
    feedback.received(rtcp.parse(rtcp.receiver_report(0xDEF, block, view)), 100.010, 0.5)
    assert feedback.heard.round_trip_ms == pytest.approx(6.0, abs=0.05)
    assert feedback.offset == pytest.approx(5.0, abs=0.0001)
    assert "buffer 20 ms" in feedback.describe() and "end to end 42 ms" in feedback.describe()
    feedback.check(0.5 + NO_ANSWER - 0.1)
    assert "does not answer" not in caplog.text
    for now in (0.6 + NO_ANSWER, 5 + NO_ANSWER):
        feedback.check(now)
    assert caplog.text.count("the receiver does not answer") == 1
    assert "does not answer" in feedback.status(10.0)
    feedback.received(rtcp.parse(rtcp.receiver_report(0xDEF, block, view)), 110.0, 10.0)
    assert "answers again" in caplog.text and "heard 0.5 s ago" in feedback.status(10.5)


def test_reports_about_another_stream_are_not_taken():
    feedback = Feedback(0xABC, now=0.0)
    block = rtcp.Reception().block(0x123, 0.0)
    feedback.received(
        rtcp.parse(rtcp.receiver_report(0xDEF, block, rtcp.View(0, 0, 0, 0, 0, 0))), 1.0, 1.0
    )
    assert feedback.heard is None


def test_a_plain_peer_that_never_reports_is_no_alarm(caplog):
    caplog.set_level(logging.INFO)
    feedback = Feedback(0xABC, now=0.0, plain=True)
    feedback.check(NO_ANSWER + 0.1)
    assert feedback.silent and not feedback.alarming and "WARNING" not in caplog.text
    assert "may send none" in feedback.status(NO_ANSWER + 1)
