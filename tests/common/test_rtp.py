import numpy as np
import pytest
from aiortc.rtp import RtpPacket

from airmic.common.opus import OpusConfig, OpusEncoder
from airmic.common.rtp import Drop, DroppedPacket, Packetizer, difference, parse_media, unwrap

OPUS = OpusEncoder(OpusConfig()).encode(np.zeros(480, dtype=np.float32))


def test_packetizer_output_parses_back():
    packetizer = Packetizer(payload_type=97, ssrc=0x1234ABCD, seq=100, timestamp=5000)
    first = parse_media(packetizer.packetize(OPUS, 480))
    second = parse_media(packetizer.packetize(OPUS, 480))
    assert (first.ssrc, first.seq, first.timestamp, first.payload_type) == (
        0x1234ABCD,
        100,
        5000,
        97,
    )
    assert first.marker and not second.marker
    assert (second.seq, second.timestamp) == (101, 5480)
    assert first.payload == OPUS and first.samples == 480


def test_packetizer_wraps_sequence_and_timestamp():
    packetizer = Packetizer(seq=0xFFFF, timestamp=0xFFFFFFFF - 479)
    packets = [parse_media(packetizer.packetize(OPUS, 480)) for _ in range(3)]
    assert [p.seq for p in packets] == [0xFFFF, 0, 1]
    assert [p.timestamp for p in packets] == [0xFFFFFFFF - 479, 0, 480]


def test_random_start_values():
    a, b = Packetizer(), Packetizer()
    assert (a.ssrc, a.seq, a.timestamp) != (b.ssrc, b.seq, b.timestamp)


@pytest.mark.parametrize(
    ("value", "reference", "bits", "expected"),
    [
        (2, 65534, 16, 65538),  # just past the wrap
        (65534, 65538, 16, 65534),  # a late packet from before the wrap
        (65535, 0, 16, -1),
        (5, 5, 16, 5),
        (10, (3 << 32) + 0xFFFFFF00, 32, (4 << 32) + 10),
        (0xFFFFFF00, (4 << 32) + 10, 32, (3 << 32) + 0xFFFFFF00),
    ],
)
def test_unwrap(value, reference, bits, expected):
    assert unwrap(value, reference, bits) == expected


def rtp(payload_type=96, payload=OPUS, **fields) -> bytes:
    return RtpPacket(payload_type=payload_type, payload=payload, **fields).serialize()


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"", Drop.NOT_RTP),
        (b"\x80\x60\x00", Drop.NOT_RTP),  # truncated header
        (b"GET / HTTP/1.1\r\n\r\n", Drop.NOT_RTP),  # version 1
        (bytes([0x8F]) + bytes(11), Drop.NOT_RTP),  # 15 CSRCs announced, none there
        (bytes([0x90, 0x60]) + bytes(10) + b"\xbe\xde\x00\x09", Drop.NOT_RTP),  # short extension
        (bytes(9000), Drop.OVERSIZED),
        (rtp(payload_type=0), Drop.PAYLOAD_TYPE),
        (rtp(payload_type=8), Drop.PAYLOAD_TYPE),
        (rtp(payload=b""), Drop.BAD_OPUS),
        (rtp(payload=bytes([0x02, 0xFF])), Drop.BAD_OPUS),
        # An RTCP receiver report (RFC 3550 section 6.4.2), as muxed RTCP would arrive.
        (bytes([0x80, 201, 0x00, 0x01, 0, 0, 0, 1]), Drop.RTCP),
    ],
)
def test_parse_media_refuses_what_is_not_opus_rtp(datagram, reason):
    with pytest.raises(DroppedPacket) as refused:
        parse_media(datagram)
    assert refused.value.reason is reason


def test_padding_and_csrc_are_stripped():
    packet = RtpPacket(payload_type=111, payload=OPUS, sequence_number=7)
    packet.csrc = [1, 2]
    packet.padding_size = 4
    media = parse_media(packet.serialize())
    assert media.payload == OPUS and media.seq == 7


def test_difference_across_the_wrap():
    assert difference(2, 65534, 16) == 4 and difference(65534, 2, 16) == -4
    assert difference(10, 0xFFFF_FFF0, 32) == 26 and difference(0, 0x8000_0001, 32) == 0x7FFF_FFFF
