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
MAX_DEPTH = 3  # copies a packet carries at most
MAX_REACH = 8  # how far back (packets) the oldest copy may be: a burst of 8 comes back


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


def spaced(copies: int, reach: int) -> tuple[int, ...]:
    """Which packets back `copies` copies carry when the oldest is `reach` packets back:
    the one just before, the one `reach` back, and the rest evenly between. A burst of up
    to `reach` losses leaves each of its packets a copy in the first packet after it (a
    packet `k` into a burst of `n` needs a copy from at least `n - k` back, and the one
    `reach` back serves them all), so two copies spaced out cover what `reach` in a row
    would, for their bytes; the ones between cover a second loss within the reach."""
    copies = min(copies, reach)
    if copies <= 0:
        return ()
    if copies == 1:
        return (1,)
    return tuple(sorted({1 + round(i * (reach - 1) / (copies - 1)) for i in range(copies)}))


class RedEncoder:
    """Wraps each Opus packet with copies of packets sent before it: `copies` of them,
    reaching `reach` packets back (`spaced`); both may change at any packet, as the
    sender's protection follows the network. The packets between that carry no copy get
    an empty block, so that any receiver numbers each copy by its place (seq - 1,
    seq - 2, ...: RFC 2198 leaves numbering out, and a timestamp offset cannot say it
    when the sender paused)."""

    def __init__(self, payload_type: int, depth: int, reach: int | None = None) -> None:
        self.payload_type = payload_type
        self.backs: tuple[int, ...] = ()
        self.protect(depth, depth if reach is None else reach)
        self._history: deque[tuple[int, bytes]] = deque(maxlen=MAX_REACH)  # (ts, packet)

    def protect(self, copies: int, reach: int) -> None:
        self.backs = spaced(copies, min(reach, MAX_REACH))

    @property
    def depth(self) -> int:
        return len(self.backs)

    @property
    def reach(self) -> int:
        return max(self.backs, default=0)

    def encode(self, packet: bytes, timestamp: int) -> bytes:
        blocks = [RedBlock(self.payload_type, 0, packet)]
        for back in range(1, min(self.reach, len(self._history)) + 1):
            ts, data = self._history[-back]
            data = data if back in self.backs else b""
            offset = (timestamp - ts) & 0xFFFFFFFF
            if len(data) > MAX_BLOCK_BYTES or offset > MAX_OFFSET:
                break  # the fields cannot say it; older copies stay out too, so that the
                # receiver can number the copies by their place
            blocks.insert(0, RedBlock(self.payload_type, offset, data))
        self._history.append((timestamp, packet))
        return bytes(RedPayload(tuple(blocks)))
