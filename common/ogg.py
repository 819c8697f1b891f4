"""Ogg Opus (RFC 7845 over RFC 3533), written: Opus packets in, Ogg pages out, as bytes.
Sans-I/O; the caller writes the pages where it likes.

Written by hand rather than through libavformat (PyAV): a room's file is fed packets as
they arrive, pages must close at least once a second (so a killed receiver leaves every
page but the last second's decodable), and the gaps between streams are filled with
Opus's own "lost frame" packets; a page writer is sixty lines, the CRC is zlib's.
"""

from __future__ import annotations

import struct
import zlib

RATE = 48_000  # the granule position counts 48 kHz samples, whatever the encoder ran at
PRE_SKIP = 312  # samples the decoder drops at the start (libopus's usual look-ahead)

_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def crc(data: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, no initial or final XOR), from
    zlib's reflected one: the same CRC over the bit-reversed bytes, bit-reversed."""
    reflected = zlib.crc32(data.translate(_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def opus_head(channels: int = 1, input_rate: int = RATE) -> bytes:
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, PRE_SKIP, input_rate, 0, 0)


def opus_tags(vendor: str, comments: dict[str, str]) -> bytes:
    def text(s: str) -> bytes:
        data = s.encode()
        return struct.pack("<I", len(data)) + data

    entries = [text(f"{key}={value}") for key, value in comments.items()]
    return b"OpusTags" + text(vendor) + struct.pack("<I", len(entries)) + b"".join(entries)


def lost(samples: int) -> list[bytes]:
    """Packets that stand for `samples` of nothing (a gap, a lost packet): a TOC byte alone
    is a zero-length frame, which decoders conceal (RFC 6716 section 3.2.1). CELT's 20,
    10, 5 and 2.5 ms full-band configurations; a rest under 2.5 ms is rounded."""
    packets = []
    for config, size in ((31, 960), (30, 480), (29, 240), (28, 120)):
        count, samples = divmod(samples, size)
        packets += [bytes([config << 3])] * count
    if samples >= 60:
        packets.append(bytes([28 << 3]))
    return packets


class OggOpusPages:
    """One logical Ogg Opus stream: `header()` first, then `packet()` for each Opus packet
    in order (each returns the pages it completed), `flush()` to close the page under way
    (as often as the file must be safe), `end()` for the last page."""

    MAX_SEGMENTS = 255

    def __init__(self, serial: int) -> None:
        self.serial = serial
        self.granule = 0  # samples completed so far (pre-skip included)
        self._sequence = 0
        self._segments: list[int] = []  # lacing values of the page under way
        self._body = bytearray()

    def header(self, head: bytes, tags: bytes) -> bytes:
        """The two header pages (granule position 0), the first flagged as the start."""
        return self._page([head], flags=0x02) + self._page([tags], flags=0)

    def packet(self, data: bytes, samples: int) -> bytes:
        lacing = [255] * (len(data) // 255) + [len(data) % 255]
        out = b""
        if len(self._segments) + len(lacing) > self.MAX_SEGMENTS:
            out = self.flush()
        self._segments += lacing
        self._body += data
        self.granule += samples
        return out

    def flush(self, flags: int = 0) -> bytes:
        if not self._segments and not flags:
            return b""
        return self._emit(flags)

    def end(self) -> bytes:
        return self.flush(flags=0x04)

    def _page(self, packets: list[bytes], flags: int) -> bytes:
        for data in packets:
            self._segments += [255] * (len(data) // 255) + [len(data) % 255]
            self._body += data
        return self._emit(flags)

    def _emit(self, flags: int) -> bytes:
        header = struct.pack(
            "<4sBBqIIIB",
            b"OggS",
            0,
            flags,
            self.granule,
            self.serial,
            self._sequence,
            0,  # the CRC, computed over the page with this field zero
            len(self._segments),
        )
        page = bytearray(header + bytes(self._segments) + self._body)
        page[22:26] = struct.pack("<I", crc(bytes(page)))
        self._sequence += 1
        self._segments, self._body = [], bytearray()
        return bytes(page)
