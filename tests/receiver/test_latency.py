"""The end-to-end latency from the sender's reports, in virtual time."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtcpSenderInfo

from airmic.common.rtcp import ntp
from airmic.receiver.latency import EndToEnd


def test_capture_to_output_is_transit_wait_and_output():
    """The receiver's wall clock is 1000 s ahead of its monotonic one, the sender's 5 s
    behind the receiver's; packets of 10 ms take 12 ms (+0-4 ms of jitter), wait 20 ms in the
    buffer, and the output holds a block 10 ms before it is heard. From the capture of a
    packet's first sample: the frame, 10 ms, then 12 + 2 (the median jitter) + 20 + 10."""
    latency = EndToEnd()
    assert latency.estimate(0.02, 0.01, 0.0) is None  # no report yet
    rtp0 = 4_294_000_000  # RTP time wraps during the test

    def sender_wall(timestamp: int) -> float:
        return 50.0 + ((timestamp - rtp0) % 2**32) / 48_000

    for i in range(200):
        timestamp = (rtp0 + 480 * i) % 2**32
        if i % 100 == 0:  # its report: the RTP time of the sample being captured, and when
            info = RtcpSenderInfo(ntp(sender_wall(timestamp)), timestamp, i, i)
            latency.sender_report(info, offset=5.0, ahead=1000.0)
        arrival = sender_wall(timestamp) + 5.0 - 1000.0 + 0.010 + 0.012 + (i % 5) * 0.001
        latency.packet(timestamp, arrival)
    assert latency.estimate(0.020, 0.010, 0.0) == pytest.approx(0.054, abs=1e-4)


def test_a_sender_that_stamps_its_audio_late_is_not_heard_before_it_arrives():
    """A browser stamps its reports up to tens of ms after it captured the audio they
    describe, and its clock's offset is measured to a few ms: its packets then seem to
    arrive before they were captured. The latency is then at least what the receiver itself
    holds them (the buffer, the output, the DSP), never less."""
    latency = EndToEnd()
    latency.sender_report(RtcpSenderInfo(ntp(100.0), 0, 0, 0), offset=0.0, ahead=0.0)
    for i in range(50):  # each packet "arrives" 40 ms before its capture
        latency.packet(480 * i, 100.0 + 0.01 * i - 0.040)
    assert latency.estimate(0.030, 0.010, 0.002) == pytest.approx(0.042)
