"""A fixed-delay jitter buffer: reorders packets and decides, for each moment of playout,
whether to play a packet, rebuild a lost one from FEC, or conceal.

Sans-I/O: `push(packet, now)` as packets arrive, `pop(now)` as the sink needs audio. It
never decodes; it returns `Frame`s that tell the decoder what to do. The adaptive buffer
keeps the same interface.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass

from airmic.common.audio import RATE
from airmic.common.opus import GRANULE, MAX_PACKET_SAMPLES
from airmic.common.rtp import MediaPacket, unwrap

MAX_DROPOUT = 3000
"""A forward sequence jump larger than this is not trusted (RFC 3550 appendix A.1)."""
MAX_MISORDER = 100
"""A packet this far behind playout is taken as a possible restart, not as a late one."""
MAX_TS_JUMP = 30 * RATE
"""A timestamp this far from playout (30 s) is not trusted either."""
EPSILON = 1e-6
"""Times closer than this (seconds) count as equal, so float rounding cannot shift a frame."""


class FrameKind(enum.Enum):
    AUDIO = "audio"  # decode the packet
    FEC = "fec"  # rebuild the lost packet from the FEC data in `payload` (the next packet)
    CONCEAL = "conceal"  # conceal `samples`


@dataclass(frozen=True, slots=True)
class Frame:
    """What to decode next: one packet's worth of audio, `samples` long."""

    kind: FrameKind
    samples: int
    payload: bytes = b""


@dataclass
class JitterStats:
    """Packet counters of one stream, as the jitter buffer saw them."""

    received: int = 0  # accepted into the buffer
    played: int = 0  # decoded at their time
    lost: int = 0  # never arrived in time
    recovered: int = 0  # of the lost, rebuilt from FEC
    concealed: int = 0  # of the lost, concealed
    late: int = 0  # arrived after their time had passed
    duplicate: int = 0
    jumps: int = 0  # dropped for an absurd sequence or timestamp jump
    restarts: int = 0  # the sender restarted its sequence (a jump confirmed)
    underruns: int = 0  # times the buffer ran dry (concealed until packets came, or idle)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class FixedJitterBuffer:
    """Plays each packet `delay` seconds after the stream's first packet arrived, on the
    timeline its RTP timestamps set.

    A gap is filled by FEC when the next packet is already there, by concealment otherwise.
    Concealment stops after `max_conceal` seconds: the buffer goes idle (pop returns None:
    silence) and anchors afresh on the next packet, so a pause or a long outage ends in a
    clean restart.
    """

    def __init__(self, delay: float = 0.04, *, fec: bool = True, max_conceal: float = 0.06) -> None:
        self.delay = delay
        self.fec = fec
        self.max_conceal = round(max_conceal * RATE)
        self.stats = JitterStats()
        self._packets: dict[int, tuple[int, MediaPacket]] = {}  # extended seq -> (ts, packet)
        self._received: set[int] = set()  # recent extended seqs, to tell duplicates
        self._anchored = False
        self._next_seq: int | None = None  # extended sequence number to play next
        self._next_ts = 0  # extended timestamp where playout stands
        self._base_time = 0.0
        self._base_ts = 0
        self._last_samples = 480
        self._conceal_run = 0
        self._bad_seq: int | None = None

    @property
    def buffered(self) -> int:
        """Packets waiting in the buffer."""
        return len(self._packets)

    def push(self, packet: MediaPacket, now: float) -> None:
        """Take a packet that arrived at `now` (seconds, any monotonic clock)."""
        if self._next_seq is None:
            self._anchor(packet.seq, packet.timestamp, now)
            self._store(packet.seq, packet.timestamp, packet)
            return
        seq = unwrap(packet.seq, self._next_seq, 16)
        ts = unwrap(packet.timestamp, self._next_ts, 32)
        if self._is_jump(seq, ts):
            self._jumped(packet, now)
            return
        self._bad_seq = None
        if seq in self._received:
            self.stats.duplicate += 1
        elif seq < self._next_seq:
            self.stats.late += 1
        else:
            if not self._anchored:  # idle: the stream resumes after a pause or an outage
                self.stats.lost += seq - self._next_seq
                self._anchor(seq, ts, now)
            self._store(seq, ts, packet)

    def pop(self, now: float) -> Frame | None:
        """The next frame if its playout time is before `now`, else None (nothing due)."""
        if not self._anchored or self._time_of(self._next_ts) >= now - EPSILON:
            return None
        assert self._next_seq is not None
        entry = self._packets.get(self._next_seq)
        if entry is not None:
            ts, packet = entry
            if ts - self._next_ts >= GRANULE:  # no packet lost, but a sender pause (DTX)
                return self._fill_pause(ts, now)
            return self._play(ts, packet, now)
        if not self._packets:
            self.stats.underruns += self._conceal_run == 0
            return self._conceal(self._last_samples)
        return self._replace_lost(now)

    def _play(self, ts: int, packet: MediaPacket, now: float) -> Frame | None:
        del self._packets[self._next_seq]  # type: ignore[arg-type]
        self._next_seq += 1  # type: ignore[operator]
        if ts + packet.samples <= self._next_ts:  # concealed already: too late to play
            self.stats.late += 1
            return self.pop(now)
        self.stats.played += 1
        self._next_ts = ts + packet.samples
        self._last_samples = packet.samples
        self._conceal_run = 0
        return Frame(FrameKind.AUDIO, packet.samples, packet.payload)

    def _replace_lost(self, now: float) -> Frame | None:
        """The packet at `_next_seq` is missing while a later one has arrived."""
        assert self._next_seq is not None
        later_seq = min(self._packets)
        later_ts = self._packets[later_seq][0]
        missing = later_seq - self._next_seq
        gap = later_ts - self._next_ts
        if gap < GRANULE or gap > self.max_conceal + MAX_PACKET_SAMPLES:
            # Nothing left to fill, or a hole too long to conceal: skip to the later packet.
            self.stats.lost += missing
            self._next_seq = later_seq
            return self.pop(now)
        samples = gap if missing == 1 else min(self._last_samples, gap)
        samples = max(GRANULE, samples // GRANULE * GRANULE)
        self.stats.lost += 1
        self._next_seq += 1
        if missing == 1 and self.fec:
            self.stats.recovered += 1
            self._next_ts += samples
            self._conceal_run = 0
            return Frame(FrameKind.FEC, samples, self._packets[later_seq][1].payload)
        self.stats.concealed += 1
        return self._conceal(samples, force=True)

    def _fill_pause(self, ts: int, now: float) -> Frame | None:
        """Conceal the start of a pause in the timestamps, then stay silent until `ts`."""
        gap = ts - self._next_ts
        if self._conceal_run < self.max_conceal:
            return self._conceal(min(gap, self._last_samples) // GRANULE * GRANULE)
        if self._time_of(ts) < now - EPSILON:
            self._next_ts = ts
            return self._play(ts, self._packets[self._next_seq][1], now)  # type: ignore[index]
        return None

    def _conceal(self, samples: int, force: bool = False) -> Frame | None:
        if not force and self._conceal_run >= self.max_conceal:
            self._anchored = False  # a long outage: go idle, anchor again on the next packet
            return None
        self._conceal_run += samples
        self._next_ts += samples
        return Frame(FrameKind.CONCEAL, samples)

    def _anchor(self, seq: int, ts: int, now: float) -> None:
        self._anchored = True
        self._next_seq = seq
        self._next_ts = ts
        self._base_ts = ts
        self._base_time = now + self.delay
        self._conceal_run = 0

    def _store(self, seq: int, ts: int, packet: MediaPacket) -> None:
        self.stats.received += 1
        self._packets[seq] = (ts, packet)
        self._received.add(seq)
        if len(self._received) > 2 * MAX_DROPOUT:
            floor = seq - MAX_DROPOUT
            self._received = {s for s in self._received if s >= floor}

    def _is_jump(self, seq: int, ts: int) -> bool:
        assert self._next_seq is not None
        ahead = seq - self._next_seq
        return ahead > MAX_DROPOUT or ahead < -MAX_MISORDER or abs(ts - self._next_ts) > MAX_TS_JUMP

    def _jumped(self, packet: MediaPacket, now: float) -> None:
        """RFC 3550 A.1: a jump is believed only when the next packet follows on from it."""
        if packet.seq != self._bad_seq:
            self._bad_seq = (packet.seq + 1) & 0xFFFF
            self.stats.jumps += 1
            return
        self.stats.restarts += 1
        self.stats.lost += len(self._packets)  # the old numbering's leftovers cannot be placed
        self._bad_seq = None
        self._packets.clear()
        self._received.clear()
        self._anchor(packet.seq, packet.timestamp, now)
        self._store(packet.seq, packet.timestamp, packet)

    def _time_of(self, ts: int) -> float:
        return self._base_time + (ts - self._base_ts) / RATE
