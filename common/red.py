"""Redundant audio (RFC 2198): each packet also carries copies of the packets before it.

In-band FEC rebuilds a lost packet at low quality from the next one; a redundant copy
rebuilds it exactly, for twice the bitrate (on a LAN, nothing). Browsers send Opus this
way too (`red/48000/2`), so one parser serves both.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

RED_PAYLOAD_TYPE = 63
"""RTP payload type of redundant audio when no SDP says otherwise: Chromium's choice."""
MAX_BLOCK_BYTES = 1023  # a redundant block's length field is 10 bits (RFC 2198 section 3)
MAX_OFFSET = 16383  # its timestamp offset field is 14 bits
MAX_DEPTH = 3  # copies a packet carries at most: a burst of 3 lost packets comes back


@dataclass(frozen=True, slots=True)
class RedBlock:
    payload_type: int
    offset: int  # samples before the primary block's timestamp; 0 for the primary
    data: bytes


@dataclass(frozen=True, slots=True)
class RedPayload:
    """The blocks of one RED payload, oldest first; the last is the primary encoding."""

    blocks: tuple[RedBlock, ...]

    @classmethod
    def parse(cls, data: bytes) -> RedPayload:
        """Raises ValueError if the headers and block lengths do not add up."""
        headers: list[tuple[int, int, int]] = []
        pos = 0
        while True:
            if pos >= len(data):
                raise ValueError("RED headers run past the end of the payload")
            if not data[pos] & 0x80:  # F bit clear: the primary block's one-byte header
                headers.append((data[pos] & 0x7F, 0, -1))
                pos += 1
                break
            if pos + 4 > len(data):
                raise ValueError("truncated RED block header")
            (word,) = struct.unpack_from("!I", data, pos)
            headers.append(((word >> 24) & 0x7F, (word >> 10) & 0x3FFF, word & 0x3FF))
            pos += 4
        blocks = []
        for payload_type, offset, length in headers:
            end = len(data) if length < 0 else pos + length
            if end > len(data):
                raise ValueError("RED block longer than the payload")
            blocks.append(RedBlock(payload_type, offset, data[pos:end]))
            pos = end
        if not blocks[-1].data:
            raise ValueError("RED payload without a primary block")
        return cls(tuple(sorted(blocks, key=lambda b: -b.offset)))

    def __bytes__(self) -> bytes:
        *redundant, primary = self.blocks
        headers = [
            struct.pack("!I", 1 << 31 | b.payload_type << 24 | b.offset << 10 | len(b.data))
            for b in redundant
        ]
        headers.append(bytes([primary.payload_type]))
        return b"".join(headers) + b"".join(b.data for b in self.blocks)


class RedEncoder:
    """Wraps each Opus packet with copies of the `depth` packets sent before it (`depth`
    may change at any packet: the sender's protection follows the network)."""

    def __init__(self, payload_type: int, depth: int) -> None:
        self.payload_type = payload_type
        self.depth = depth
        self._history: deque[tuple[int, bytes]] = deque(maxlen=MAX_DEPTH)  # (ts, packet)

    def encode(self, packet: bytes, timestamp: int) -> bytes:
        blocks = [RedBlock(self.payload_type, 0, packet)]
        recent = list(self._history)[len(self._history) - self.depth :] if self.depth else []
        for ts, data in reversed(recent):
            offset = (timestamp - ts) & 0xFFFFFFFF
            if len(data) > MAX_BLOCK_BYTES or offset > MAX_OFFSET:
                break  # the fields cannot say it; older copies stay out too, so that the
                # receiver can number the copies by their place: seq - 1, seq - 2, ...
            blocks.insert(0, RedBlock(self.payload_type, offset, data))
        self._history.append((timestamp, packet))
        return bytes(RedPayload(tuple(blocks)))
