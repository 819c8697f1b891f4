"""The sender in virtual time: speech encoded as airmic-send encodes it, sent through a
seeded network model, its protection following the receiver's reports as it does over
UDP (a closed loop). For tests and benchmarks: a whole stream's packet trace in seconds.

A report is RFC 3550's statistics (`airmic.common.rtcp.Reception`) of the packets that had
arrived by its time; it depends only on the network, not on the playout, so the whole
trace is known before anything plays and any receiver can be given it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from airmic.common import rtcp
from airmic.common.audio import RATE
from airmic.common.impair import Impairment
from airmic.common.opus import OpusConfig, OpusEncoder
from airmic.common.rtp import Packetizer, parse_media
from airmic.sender.protection import Level, Protection

FRAME = 480
REPORT_EVERY, REPORT_DELAY = 1.0, 0.005
"""The receiver's reports: once a second, reaching the sender 5 ms later."""


@dataclass
class Trace:
    arrivals: list[tuple[float, bytes]]  # (arrival time, datagram), by arrival
    wire_kbits: float  # what the sender sent: RTP, with IP and UDP's 28 bytes per packet
    levels: list[str]  # the protection the sender chose, as it changed


def send(
    speech: np.ndarray,
    network: Impairment,
    redundancy: int | None = None,
    *,
    sender_ppm: float = 0.0,
    cap: int | None = None,
) -> Trace:
    """Send `speech` (48 kHz) in 10 ms packets through `network`. With `redundancy` None
    the copies follow the receiver's reports, as airmic-send's default does (under `cap`
    bit/s on the wire, if given); else that many copies in a row, with FEC for 10 %."""
    encoder = OpusEncoder(OpusConfig())
    adaptive = redundancy is None
    packetizer = Packetizer(
        ssrc=0xA1, seq=1000, timestamp=123_456, redundancy=redundancy or 0, red=True
    )
    protection = Protection(redundancy, None if adaptive else 10, now=0.0, cap=cap)

    def follow(level: Level) -> None:
        packetizer.protect(level.copies or 0, level.reach or 0)
        encoder.expected_loss = level.expected_loss or 0
        if level.bitrate:
            encoder.bitrate = level.bitrate

    if adaptive:
        follow(protection.level)
    reception = rtcp.Reception()
    arrivals: list[tuple[float, bytes]] = []
    heard: list[tuple[float, int, int]] = []  # (arrival, seq, timestamp) not yet reported
    levels, sent, report_at = [protection.level.describe()], 0, REPORT_EVERY
    for i in range(0, len(speech) - FRAME + 1, FRAME):
        now = 0.0037 + i / RATE / (1 + sender_ppm * 1e-6)
        while adaptive and now >= report_at + REPORT_DELAY:
            heard.sort()
            while heard and heard[0][0] <= report_at:
                arrival, seq, timestamp = heard.pop(0)
                reception.packet(seq, timestamp, arrival)
            block = reception.block(0xA1, report_at)
            level = protection.report(
                block.fraction_lost / 256, reception.burst, report_at + REPORT_DELAY
            )
            if level is not None:
                follow(level)
                levels.append(f"{report_at:.0f} s: {level.describe()}")
            report_at += REPORT_EVERY
        datagram = packetizer.packetize(encoder.encode(speech[i : i + FRAME]), FRAME)
        sent += len(datagram) + 28
        packet = parse_media(datagram)
        for arrival in network.deliveries(now):
            arrivals.append((arrival, datagram))
            heard.append((arrival, packet.seq, packet.timestamp))
    arrivals.sort(key=lambda a: a[0])
    return Trace(arrivals, sent * 8 / 1000 / (len(speech) / RATE), levels)
