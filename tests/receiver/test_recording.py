"""The session recording: Ogg Opus pages as RFC 7845 has them (ffmpeg decodes them), each
room on the session's timeline, losses and pauses filled, late packets put in place."""

from __future__ import annotations

import json
import struct
import subprocess

import numpy as np
import pytest

from airmic.common.ogg import OggOpusPages, crc, lost
from airmic.common.opus import OpusConfig, OpusEncoder
from airmic.common.rtp import MediaPacket
from airmic.receiver.recording import Recording
from tests.audio_match import match

RATE = 48_000
FRAME = 480


def encode(samples: np.ndarray) -> list[bytes]:
    encoder = OpusEncoder(OpusConfig(frame_ms=10))
    frames = len(samples) // FRAME
    return [encoder.encode(samples[i * FRAME : (i + 1) * FRAME]) for i in range(frames)]


def packets(payloads: list[bytes], first_ts: int = 4_000_000_000) -> list[MediaPacket]:
    """RTP packets with timestamps that wrap around 2^32 on the way."""
    return [
        MediaPacket(7, n & 0xFFFF, (first_ts + n * FRAME) % 2**32, p, FRAME)
        for n, p in enumerate(payloads)
    ]


def decode(path) -> np.ndarray:
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", "48000", "-"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert not out.stderr, out.stderr  # no complaint about the file
    return np.frombuffer(out.stdout, dtype=np.float32)


def test_pages_carry_ogg_s_crc_and_granule_positions():
    pages = OggOpusPages(serial=5)
    data = pages.header(b"OpusHead" + bytes(11), b"OpusTags" + bytes(8))
    for _ in range(300):  # more than one page's 255 segments
        data += pages.packet(b"\x08" + bytes(40), 480)
    data += pages.end()
    offset, granules, flags = 0, [], []
    while offset < len(data):
        assert data[offset : offset + 4] == b"OggS"
        count = data[offset + 26]
        size = 27 + count + sum(data[offset + 27 : offset + 27 + count])
        page = bytearray(data[offset : offset + size])
        stored = struct.unpack("<I", page[22:26])[0]
        page[22:26] = bytes(4)
        assert crc(bytes(page)) == stored
        flags.append(page[5])
        granules.append(struct.unpack("<q", page[6:14])[0])
        offset += size
    assert flags[0] == 0x02 and flags[-1] == 0x04  # the first page begins, the last ends
    assert granules[:2] == [0, 0] and granules[-1] == 300 * 480
    assert granules == sorted(granules)


def test_lost_packets_cover_any_gap_to_2_5_ms():
    def total(packets):
        return sum({31: 960, 30: 480, 29: 240, 28: 120}[p[0] >> 3] for p in packets)

    assert all(len(p) == 1 for p in lost(96_000))  # a TOC byte alone each
    for gap in (0, 120, 480, 961, 12_345, 96_000):
        assert abs(total(lost(gap)) - gap) <= 60


def test_rooms_line_up_with_losses_reordering_and_a_reconnection(tmp_path, speech_samples):
    voice = speech_samples[: 4 * RATE]
    payloads = encode(voice)
    recording = Recording(tmp_path, now=100.0)
    # Kitchen from the session's start: every 10th packet lost, pairs swapped on the way.
    kitchen = packets(payloads)
    arriving = [p for n, p in enumerate(kitchen) if n % 10 != 5]
    for n in range(0, len(arriving) - 1, 7):
        arriving[n], arriving[n + 1] = arriving[n + 1], arriving[n]
    recording.stream("k", "kitchen", "kitchen (127.0.0.1:4000)", now=100.0)
    for p in arriving:
        recording.packet("k", p, now=100.0)
    # Hall starts 1.5 s later, the same voice; its sender reconnects (a new stream) 2 s in.
    hall = packets(payloads, first_ts=123)
    recording.stream("h1", "hall", "hall (127.0.0.1:5000)", now=101.5)
    for p in hall[:200]:
        recording.packet("h1", p, now=101.5)
    restarted = packets(payloads[200:], first_ts=999)
    recording.stream("h2", "hall", "hall (127.0.0.1:5001)", now=103.5)
    for p in restarted:
        recording.packet("h2", p, now=103.5)
    recording.close()

    files = recording.paths()
    assert set(files) == {"kitchen", "hall"}
    k, h = decode(files["kitchen"]), decode(files["hall"])
    assert match(voice, k).correlation > 0.85  # nine packets in ten, the rest concealed
    assert abs(match(voice, k).lag) <= 2 * FRAME  # at the start of the file
    lag = match(voice, h).lag
    assert abs(lag - round(1.5 * RATE)) <= FRAME  # 1.5 s in: on the session's timeline
    assert match(voice, h[lag:]).correlation > 0.9  # one room, one file, no seam heard
    session = json.loads((recording.folder / "session.json").read_text())
    (hall_room,) = [r for r in session["rooms"] if r["room"] == "hall"]
    assert [s["start_s"] for s in hall_room["streams"]] == [1.5, 3.5]
    assert hall_room["file"] == "hall.opus"
    assert all(r["slips"] == 0 for r in session["rooms"])  # no clock moved: nothing slipped


def test_a_session_never_takes_an_existing_folder(tmp_path):
    first = Recording(tmp_path, now=0.0)
    second = Recording(tmp_path, now=0.0)
    first.close()
    second.close()
    assert first.folder != second.folder and first.folder.parent == second.folder.parent


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "\x00"])
def test_a_room_name_stays_inside_the_folder(tmp_path, name):
    recording = Recording(tmp_path, now=0.0)
    recording.stream("s", name, name, now=0.0)
    recording.packet("s", packets([b"\xf8" + bytes(10)])[0], now=0.0)
    recording.close()
    (path,) = recording.paths().values()
    assert path.parent == recording.folder


def test_a_sender_clock_that_runs_slow_stays_in_step(tmp_path, speech_samples):
    """A sender whose clock runs 1000 ppm slow (its 10 ms take 10.01 ms of ours), jitter
    on top: after 40 s its speech sits where it arrived, within a frame, not 40 ms early."""
    voice = np.tile(speech_samples, 7)[: 40 * RATE]
    payloads = encode(voice)
    jitter = np.random.default_rng(1).exponential(0.004, len(payloads))
    recording = Recording(tmp_path, now=0.0)
    recording.stream("s", "hall", "hall", now=0.0)
    for n, packet in enumerate(packets(payloads)):
        recording.packet("s", packet, now=n * 0.010 * 1.001 + jitter[n])
    recording.close()
    audio = decode(recording.paths()["hall"])
    tail = voice[-3 * RATE :]
    arrived = (len(voice) - len(tail)) * 1.001  # where that stretch arrived
    lag = match(tail, audio[-6 * RATE :], max_lag=6 * RATE).lag + len(audio) - 6 * RATE
    print(f"the last 3 s at {lag} samples, arrived at {arrived:.0f}")
    assert abs(lag - arrived) <= FRAME
    assert match(tail, audio[lag : lag + len(tail)]).correlation > 0.9
    (room,) = json.loads((recording.folder / "session.json").read_text())["rooms"]
    print(f"slips: {room['slips']}, {room['slip_ms']} ms")
    assert room["slips"] >= 5 and 25 <= room["slip_ms"] <= 45  # told: about 40 ms moved
