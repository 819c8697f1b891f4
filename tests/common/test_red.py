"""Redundant audio (RFC 2198): the wire format, and what parse_media makes of it."""

from __future__ import annotations

import numpy as np
import pytest
from aiortc.rtp import RtpPacket

from airmic.common.opus import OpusConfig, OpusEncoder
from airmic.common.red import RED_PAYLOAD_TYPE, RedBlock, RedEncoder, RedPayload, spaced
from airmic.common.rtp import Drop, DroppedPacket, Packetizer, parse_media

ENCODER = OpusEncoder(OpusConfig())
OPUS = [ENCODER.encode(np.full(480, 0.01 * i, dtype=np.float32)) for i in range(4)]


def test_the_rfc_2198_example_layout():
    # RFC 2198 section 3: one redundant block (PT 0, 4 bytes, offset 160), then primary PT 5.
    payload = RedPayload((RedBlock(0, 160, b"abcd"), RedBlock(5, 0, b"xyz")))
    data = bytes(payload)
    assert data[:4] == bytes([0x80, 0x02, 0x80, 0x04]) and data[4] == 5
    assert data[5:] == b"abcdxyz"
    assert RedPayload.parse(data) == payload


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes([0x80, 0x02]),  # a redundant header cut short
        bytes([0x80, 0x02, 0x80, 0x10, 96]) + b"abc",  # a block of 16 bytes, 3 there
        bytes([0x80, 0x02, 0x80, 0x10]),  # no primary header
        bytes([96]),  # a primary header and no primary
    ],
)
def test_malformed_red_is_refused(data):
    with pytest.raises(ValueError):
        RedPayload.parse(data)


def test_encoder_sends_the_last_packets_oldest_first():
    red = RedEncoder(96, depth=2)
    red.encode(OPUS[0], 1000)
    red.encode(OPUS[1], 1480)
    payload = RedPayload.parse(red.encode(OPUS[2], 1960))
    assert [(b.offset, b.data) for b in payload.blocks] == [
        (960, OPUS[0]),
        (480, OPUS[1]),
        (0, OPUS[2]),
    ]


def test_encoder_leaves_out_copies_its_fields_cannot_hold():
    red = RedEncoder(96, depth=2)
    red.encode(bytes(1100), 0)  # longer than a 10-bit length
    red.encode(OPUS[1], 480)
    blocks = RedPayload.parse(red.encode(OPUS[2], 960)).blocks
    assert [b.data for b in blocks] == [OPUS[1], OPUS[2]]
    red.encode(OPUS[3], 960 + 20_000)  # older than a 14-bit offset
    assert len(RedPayload.parse(red.encode(OPUS[0], 960 + 20_480)).blocks) == 2


@pytest.mark.parametrize(
    ("copies", "reach", "backs"),
    [(1, 1, (1,)), (2, 2, (1, 2)), (2, 4, (1, 4)), (3, 6, (1, 3, 6)), (3, 8, (1, 5, 8)),
     (3, 3, (1, 2, 3)), (0, 5, ()), (5, 3, (1, 2, 3))],
)  # fmt: skip
def test_spaced_copies_keep_the_one_before_and_reach_back(copies, reach, backs):
    assert spaced(copies, reach) == backs


def test_spaced_copies_are_numbered_by_their_place_through_empty_blocks():
    """Copies of the 1st and 4th packets before: the 2nd and 3rd get empty blocks (4 bytes
    of header each), so that a receiver that numbers copies by place numbers them right."""
    packetizer = Packetizer(payload_type=111, seq=10, timestamp=0, redundancy=1)
    packetizer.protect(2, 4)
    opus = OPUS * 2
    datagrams = [packetizer.packetize(p, 480) for p in opus[:6]]
    blocks = RedPayload.parse(RtpPacket.parse(datagrams[5]).payload).blocks
    assert [(b.offset, b.data) for b in blocks] == [
        (1920, opus[1]), (1440, b""), (960, b""), (480, opus[4]), (0, opus[5])
    ]  # fmt: skip
    last = parse_media(datagrams[5])
    assert [(c.seq, c.timestamp, c.payload) for c in last.redundant] == [
        (11, 480, opus[1]),
        (14, 1920, opus[4]),
    ]
    early = parse_media(datagrams[2])  # fewer packets sent than the reach: what there is
    assert [c.seq for c in early.redundant] == [11]


def test_parse_media_unpacks_the_copies_with_their_numbers():
    packetizer = Packetizer(payload_type=111, seq=0xFFFF, timestamp=100, redundancy=2)
    datagrams = [packetizer.packetize(p, 480) for p in OPUS[:3]]
    assert RtpPacket.parse(datagrams[2]).payload_type == RED_PAYLOAD_TYPE
    first, last = parse_media(datagrams[0]), parse_media(datagrams[2])
    assert first.redundant == () and first.payload == OPUS[0] and first.payload_type == 111
    assert (last.seq, last.timestamp, last.payload) == (1, 1060, OPUS[2])
    assert [(c.seq, c.timestamp, c.payload, c.samples) for c in last.redundant] == [
        (0xFFFF, 100, OPUS[0], 480),
        (0, 580, OPUS[1], 480),
    ]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (bytes([0x80, 0x02]), Drop.BAD_RED),
        (
            bytes(RedPayload((RedBlock(0, 480, OPUS[0]), RedBlock(96, 0, OPUS[1])))),
            Drop.PAYLOAD_TYPE,
        ),
        (
            bytes(RedPayload((RedBlock(96, 480, b"\x02\xff"), RedBlock(96, 0, OPUS[1])))),
            Drop.BAD_OPUS,
        ),
    ],
)
def test_parse_media_refuses_bad_red(payload, reason):
    datagram = RtpPacket(payload_type=RED_PAYLOAD_TYPE, payload=payload, ssrc=7).serialize()
    with pytest.raises(DroppedPacket) as refused:
        parse_media(datagram)
    assert refused.value.reason is reason and refused.value.ssrc == 7
