"""A UDP relay on loopback between a sender and a receiver, for tests that stand on the
path: it listens on `port` (any free one) and forwards to the receiver's `target` port;
the receiver's answers go back to whoever sent last. A thread, bounded in time."""

from __future__ import annotations

import socket
import threading


class UdpRelay(threading.Thread):
    def __init__(self, target: int, seconds: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.connect(("127.0.0.1", target))
        self.port = self.front.getsockname()[1]
        self.seconds = seconds
        self.stopped = threading.Event()
