"""RTCP between real processes: the sender hears what the receiver hears, and says so
when the receiver is gone; a sender that stops ends its stream at the receiver at once."""

from __future__ import annotations

import heapq
import re
import select
import signal
import time

import pytest
import soundfile

from airmic.common.rtcp import is_rtcp
from tests.audio_match import match
from tests.processes import ReceiverProcess, send
from tests.relay import UdpRelay

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


class DelayLine(UdpRelay):
    """A relay that delays every datagram, both ways, by `delay`: a longer network path."""

    def __init__(self, port: int, delay: float) -> None:
        super().__init__(port)
        self.delay = delay

    def run(self) -> None:
        due: list[tuple[float, int, bytes, bool]] = []  # when, order, datagram, upstream
        sender, order, end = None, 0, time.monotonic() + self.seconds
        while not self.stopped.is_set() and time.monotonic() < end:
            wait = max(0.0, due[0][0] - time.monotonic()) if due else 0.05
            for sock in select.select([self.front, self.back], [], [], wait)[0]:
                try:
                    data, source = sock.recvfrom(2048)
                except ConnectionRefusedError:  # the receiver is gone: nothing to relay
                    continue
                sender = source if sock is self.front else sender
                order += 1
                heapq.heappush(
                    due, (time.monotonic() + self.delay, order, data, sock is self.front)
                )
            while due and due[0][0] <= time.monotonic():
                _, _, data, upstream = heapq.heappop(due)
                try:
                    if upstream:
                        self.back.send(data)
                    elif sender is not None:
                        self.front.sendto(data, sender)
                except ConnectionRefusedError:  # the receiver is gone (its port said so)
                    continue
        self.front.close()
        self.back.close()


def test_the_end_to_end_latency_moves_with_the_network(tmp_path, udp_port, speech):
    """The receiver places each packet's capture on its own clock (the reports give the
    clocks' offset): a path 40 ms longer each way makes the latency it reports 40 ms longer
    (the offset is NTP's: it holds for a symmetric path)."""
    measured = {}
    for delay in (0.0, 0.040):
        folder = tmp_path / f"{delay * 1000:.0f}ms"
        folder.mkdir()
        receiver = ReceiverProcess(folder, udp_port, idle=None)
        line = DelayLine(udp_port, delay)
        line.start()
        sender = send(line.port, "--input", f"file:{speech}", "--duration", "4", folder=folder)
        assert sender.wait() == 0, sender.stderr
        assert receiver.stop() == 0, receiver.stderr
        line.stopped.set()
        (stream,) = receiver.stats()["streams"]
        measured[delay] = stream["end_to_end_ms"], stream["delay_ms"]
        assert "end to end" in sender.stderr  # the sender was told it too
    print(f"\nend to end (ms, and of it the buffer): {measured}")
    (direct, direct_buffer), (longer, longer_buffer) = measured.values()
    assert 10 < direct < 100  # a 10 ms frame, loopback, the buffer, the paced output
    # The path, the buffer aside: the two runs' buffers settle a few ms apart (one CI run:
    # 6.2 ms more than the 40 added, all in the end-to-end figure, its buffer's included).
    assert abs((longer - longer_buffer) - (direct - direct_buffer) - 40) < 6


class LossyLine(UdpRelay):
    """A relay that loses 2 media packets in every 20, in a row (10 %, in bursts of 2)."""

    def run(self) -> None:
        sender, media, end = None, 0, time.monotonic() + self.seconds
        while not self.stopped.is_set() and time.monotonic() < end:
            for sock in select.select([self.front, self.back], [], [], 0.05)[0]:
                try:
                    data, source = sock.recvfrom(2048)
                except ConnectionRefusedError:  # the receiver is gone: nothing to relay
                    continue
                if sock is self.back and sender is not None:
                    self.front.sendto(data, sender)
                    continue
                sender = source
                if data[0] >> 6 == 2 and not is_rtcp(data):
                    media += 1
                    if media % 20 in (10, 11):
                        continue
                self.back.send(data)
        self.front.close()
        self.back.close()


def test_the_sender_protects_the_stream_as_the_receiver_loses_it(tmp_path, udp_port, speech,
                                                                 speech_samples):  # fmt: skip
    """10 % lost in bursts of 2: once the receiver reports it, the sender sends 2 copies
    in each packet, the one before and one from 4 packets back (it takes bursts to run on
    as a network's do: 90 % of bursts of 2 on average are within 4), and leaves FEC at its
    floor; from then on the copies bring the bursts back."""
    receiver = ReceiverProcess(tmp_path, udp_port, idle=None)
    line = LossyLine(udp_port)
    line.start()
    sender = send(line.port, "--input", f"file:{speech}", "--duration", "5", folder=tmp_path)
    assert sender.wait() == 0, sender.stderr
    assert receiver.stop() == 0, receiver.stderr
    line.stopped.set()
    assert "protection: 2 copies reaching 4 packets back, FEC for 1 % loss" in sender.stderr
    (stream,) = receiver.stats()["streams"]
    lost = stream["lost"] + stream["repaired"]
    print(f"\n{stream['repaired']} repaired from copies, {stream['recovered']} by FEC, "
          f"{stream['concealed']} concealed, of {lost} lost")  # fmt: skip
    assert stream["repaired"] > 0.6 * 0.1 * stream["received"]  # most after the first report
    out, _ = soundfile.read(tmp_path / "out.wav", dtype="float32")
    assert match(speech_samples[: len(out)], out, max_lag=len(out)).correlation > 0.9
