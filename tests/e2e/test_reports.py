"""RTCP between real processes: the sender hears what the receiver hears, and says so
when the receiver is gone; a sender that stops ends its stream at the receiver at once."""

from __future__ import annotations

import re
import signal

import pytest

from tests.processes import ReceiverProcess, send

pytestmark = pytest.mark.e2e


def test_the_sender_hears_the_receiver_and_knows_when_it_is_gone(tmp_path, udp_port):
    receiver = ReceiverProcess(tmp_path, udp_port, idle=None)
    sender = send(udp_port, "--input", "tone:440", "--duration", "60", folder=tmp_path)
    sender.wait_for("the receiver hears this stream: lost 0")
    receiver.stop(signal.SIGKILL)
    sender.wait_for("the receiver does not answer: no report for 3 s")
    assert sender.stop() == 0, sender.stderr
    assert "the receiver stopped answering" in sender.stderr  # in the summary, and
    assert "its last report: lost 0" in sender.stderr  # what it had heard until then


def test_a_stream_ends_when_its_sender_stops(tmp_path, udp_port, speech):
    """The receiver's silence timeout is 5 s; the sender's BYE ends the stream before it."""
    receiver = ReceiverProcess(tmp_path, udp_port, idle=None)
    sender = send(udp_port, "--input", f"file:{speech}", "--duration", "2", folder=tmp_path)
    assert sender.wait() == 0, sender.stderr
    receiver.wait_for("ended (the sender stopped)")
    assert receiver.stop() == 0
    (stream,) = receiver.stats()["streams"]
    sent = int(re.search(r"sent (\d+) packets", sender.stderr).group(1))
    assert stream["ended"] == "sender" and stream["received"] == sent  # nothing cut
