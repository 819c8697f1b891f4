"""The receiver's UDP thread on a real socket: datagrams keep the time they reached the
host, however late the thread reads them, and the handler's answer goes back."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from airmic.receiver.transport import STAMPED, listen


@pytest.mark.skipif(not STAMPED, reason="kernel arrival stamps are Linux's")
def test_a_datagram_read_late_keeps_its_arrival_time():
    got: list[tuple[bytes, float, float]] = []
    reading = threading.Event()  # the handler blocks the thread, as a busy process would

    def handler(data, addr, now):
        got.append((data, now, time.monotonic()))
        if data == b"first":
            reading.wait(5)
        return b"answer:" + data

    listener = listen("127.0.0.1", 0, handler)
    port = listener._sock.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.settimeout(5)
        peer.sendto(b"first", ("127.0.0.1", port))
        while not got:
            time.sleep(0.01)
        peer.sendto(b"second", ("127.0.0.1", port))  # arrives while the thread is busy
        sent = time.monotonic()
        time.sleep(0.3)
        reading.set()
        assert peer.recv(100) == b"answer:first"
        assert peer.recv(100) == b"answer:second"
    listener.close()
    data, stamped, handled = got[1]
    assert data == b"second"
    assert handled - stamped >= 0.25  # read 0.3 s late, stamped when it arrived
    assert abs(stamped - sent) < 0.05
