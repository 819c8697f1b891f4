"""Sender and receiver processes through the impairment proxy on loopback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import soundfile

from tests.audio_match import match
from tests.conftest import free_udp_port
from tests.processes import IDLE, Process, ReceiverProcess, send

pytestmark = pytest.mark.e2e

PROXY = Path(__file__).parent.parent.parent / "scripts" / "impair_proxy.py"


def test_bursty_loss_and_jitter_through_a_real_proxy(tmp_path, udp_port, speech, speech_samples):
    receiver = ReceiverProcess(tmp_path, udp_port, "--latency", "60")
    proxy_port = free_udp_port()
    proxy = Process(
        [
            sys.executable,
            str(PROXY),
            "--listen",
            f"127.0.0.1:{proxy_port}",
            "--to",
            f"127.0.0.1:{udp_port}",
            "--profile",
            "bursty-10",
            "--jitter",
            "0.004",
            "--seed",
            "11",
            "--exit-after-idle",
            str(IDLE),  # as long as the receiver waits for the sender's first packet
        ],
        tmp_path,
        "proxy",
    )
    proxy.wait_for("impairing")
    sender = send(proxy_port, "--input", f"file:{speech}", folder=tmp_path)
    assert sender.wait() == 0, sender.stderr
    assert receiver.finish() == 0, receiver.stderr
    assert proxy.wait() == 0, proxy.stderr

    (stream,) = receiver.stats()["streams"]
    sent = int(sender.stderr.split("sent ")[1].split()[0])
    print(f"\nsent {sent}, {stream}")
    missed = stream["lost"] + stream["repaired"]
    assert 0.06 < missed / sent < 0.14  # the proxy's bursty 10 %
    assert stream["repaired"] > 0 and stream["recovered"] > 0  # copies, then FEC
    out, _ = soundfile.read(tmp_path / "out.wav", dtype="float32")
    result = match(speech_samples, out)
    print(f"correlation {result.correlation:.3f}, longest gap {result.longest_gap}")
    assert result.correlation >= 0.8
