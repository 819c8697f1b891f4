"""The jitter buffer: puts packets back in order and decides, each time the playout needs
the next piece of audio, whether to play a packet, rebuild a lost one from FEC, conceal,
or stretch the stream while the network is late.

Sans-I/O: `push(packet, now)` as packets arrive, `pop(now)` when the playout needs audio.
It never decodes: it returns `Frame`s that tell the decoder what to do. How long packets
wait before they are pulled is the playout's business (see `airmic.common.playout`).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
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
SLOTS = 512
"""How many recent playout times are remembered, to tell how late a late packet was."""


class FrameKind(enum.Enum):
    AUDIO = "audio"  # decode `payload`
    COPY = "copy"  # a lost packet, rebuilt exactly from a later one's redundant copy: decode
    FEC = "fec"  # a lost packet: rebuild it from the FEC data in `payload` (the next packet)
    CONCEAL = "conceal"  # a lost packet, or the start of a pause: conceal `samples`
    SILENCE = "silence"  # the rest of a pause in the timestamps: `samples` of silence
    EXPAND = "expand"  # nothing has arrived yet: conceal `samples`; the stream is delayed
    WAIT = "wait"  # still nothing, concealment spent: `samples` of silence while waiting


@dataclass(frozen=True, slots=True)
class Frame:
    """What to play next, `samples` long; for AUDIO, when its packet arrived."""

    kind: FrameKind
    samples: int
    payload: bytes = b""
    arrival: float = 0.0


@dataclass
class JitterStats:
    """Packet counters of one stream, as the jitter buffer saw them."""

    received: int = 0  # accepted into the buffer
    played: int = 0  # decoded in their turn
    lost: int = 0  # never arrived in time
    recovered: int = 0  # of the lost, rebuilt from FEC
    repaired: int = 0  # lost on the way, but a redundant copy came in time (RFC 2198)
    concealed: int = 0  # of the lost, concealed
    late: int = 0  # arrived after their turn had passed
    duplicate: int = 0
    jumps: int = 0  # dropped for an absurd sequence or timestamp jump
    restarts: int = 0  # the sender restarted its numbering (a jump confirmed)
    underruns: int = 0  # times the buffer ran dry and the stream was stretched

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class JitterBuffer:
    """Orders the packets of one stream and hands them out one frame at a time.

    A lost packet is rebuilt from FEC when the next packet is already there, concealed
    otherwise. When the buffer runs dry, the stream is stretched: by concealment (EXPAND)
    for `max_conceal` seconds, then by silence (WAIT) up to `max_wait` in all, long enough
    for a Wi-Fi power-save stall to end; after that the buffer goes idle (pop returns None)
    and starts afresh with the next packet, so a pause or an outage ends in a clean restart.
    """

    def __init__(
        self, *, fec: bool = True, max_conceal: float = 0.06, max_wait: float = 0.3
    ) -> None:
        self.fec = fec
        self.max_conceal = round(max_conceal * RATE)
        self.max_wait = round(max_wait * RATE)
        self.stats = JitterStats()
        self.late_waits: list[float] = []  # how late each late packet was (negative seconds)
        self.stretched = 0  # samples of expansion the stream was delayed by, for the playout
        # seq -> (ts, packet, arrival); the arrival is None for a redundant copy
        self._packets: dict[int, tuple[int, MediaPacket, float | None]] = {}
        self._received: set[int] = set()  # recent extended seqs, to tell duplicates
        self._slots: OrderedDict[int, float | None] = OrderedDict()  # seq -> when its turn came
        self._anchored = False
        self._next_seq: int | None = None  # extended sequence number to play next
        self._next_ts = 0  # extended timestamp where playout stands
        self._last_samples = 480
        self._conceal_run = 0
        self._expanded = 0  # samples of EXPAND played since the last packet
        self._bad_seq: int | None = None

    @property
    def idle(self) -> bool:
        """True when there is nothing to play until the next packet arrives."""
        return not self._anchored

    @property
    def frame_samples(self) -> int:
        """Duration of the last packet played: the stream's frame size."""
        return self._last_samples

    @property
    def buffered(self) -> int:
        """Packets waiting in the buffer."""
        return len(self._packets)

    def push(self, packet: MediaPacket, now: float) -> None:
        """Take a packet that arrived at `now` (seconds, the playout's clock)."""
        if self._anchored:
            for copy in packet.redundant:
                self._push_copy(copy, now)
        if self._next_seq is None:
            self._anchor(packet.seq, packet.timestamp)
            self._store(packet.seq, packet.timestamp, packet, now)
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
            slot = self._slots.get(seq)
            if slot is not None:
                self.late_waits.append(slot - now)
        else:
            if not self._anchored:  # idle: the stream resumes after a pause or an outage
                self.stats.lost += seq - self._next_seq
                self._anchor(seq, ts)
            self._store(seq, ts, packet, now)

    def _push_copy(self, copy: MediaPacket, now: float) -> None:
        """A redundant copy: it counts only when its packet was lost and its turn is to come."""
        assert self._next_seq is not None
        seq = unwrap(copy.seq, self._next_seq, 16)
        ts = unwrap(copy.timestamp, self._next_ts, 32)
        if seq >= self._next_seq and seq not in self._received and not self._is_jump(seq, ts):
            self._store(seq, ts, copy, now, repaired=True)

    def pop(self, now: float) -> Frame | None:
        """The next frame, now that the playout needs it; None when idle."""
        if not self._anchored:
            return None
        assert self._next_seq is not None
        if self._expanded and self._packets:
            self._merge()
        entry = self._packets.get(self._next_seq)
        if entry is not None:
            ts, packet, arrival = entry
            if ts - self._next_ts >= GRANULE:  # no packet lost, but a pause in the timestamps
                return self._fill_pause(ts - self._next_ts)
            return self._play(ts, packet, arrival, now)
        if self._packets:
            return self._replace_lost(now)
        return self._expand()

    def _play(
        self, ts: int, packet: MediaPacket, arrival: float | None, now: float
    ) -> Frame | None:
        del self._packets[self._next_seq]  # type: ignore[arg-type]
        self._take_slot(now)
        if ts + packet.samples <= self._next_ts:  # its time was concealed already
            self.stats.late += 1
            return self.pop(now)
        self.stats.played += 1
        self.stretched += self._expanded  # the stretch stood for nothing: the stream is later
        self._expanded = 0
        self._next_ts = ts + packet.samples
        self._last_samples = packet.samples
        self._conceal_run = 0
        if arrival is None:  # a redundant copy: when it came says nothing of the network
            return Frame(FrameKind.COPY, packet.samples, packet.payload)
        return Frame(FrameKind.AUDIO, packet.samples, packet.payload, arrival)

    def _replace_lost(self, now: float) -> Frame | None:
        """The packet at `_next_seq` is missing while a later one has arrived."""
        assert self._next_seq is not None
        later_seq = min(self._packets)
        later_ts, later, _ = self._packets[later_seq]
        missing = later_seq - self._next_seq
        gap = later_ts - self._next_ts
        if gap < GRANULE or gap > self.max_conceal + MAX_PACKET_SAMPLES:
            # Nothing left to fill, or a hole too long to conceal: the later packet is next,
            # and the hole becomes a pause.
            self.stats.lost += missing
            while self._next_seq < later_seq:
                self._take_slot(now)
            return self.pop(now)
        samples = gap if missing == 1 else min(self._last_samples, gap)
        samples = max(GRANULE, samples // GRANULE * GRANULE)
        self.stats.lost += 1
        self._take_slot(now)
        self._next_ts += samples
        if missing == 1 and self.fec:
            self.stats.recovered += 1
            self._conceal_run = 0
            return Frame(FrameKind.FEC, samples, later.payload)
        self.stats.concealed += 1
        self._conceal_run += samples
        return Frame(FrameKind.CONCEAL, samples)

    def _merge(self) -> None:
        """The stream was stretched while nothing came; now a later packet has. The stretch
        stood for what was missing (lost packets, or the start of a pause): count it in the
        timeline, rather than also concealing them and keeping the stream delayed."""
        assert self._next_seq is not None
        seq = min(self._packets)
        covered = min(self._expanded, self._packets[seq][0] - self._next_ts)
        if covered < GRANULE:
            return  # the packet that came is the one awaited: the stretch delayed the stream
        self._expanded -= covered
        lost = min(seq - self._next_seq, round(covered / self._last_samples))
        self.stats.lost += lost
        self.stats.concealed += lost
        for _ in range(lost):
            self._take_slot(None)  # their turn was the stretch: no time to be late against
        self._next_ts += covered

    def _fill_pause(self, gap: int) -> Frame:
        """Conceal the start of a pause in the timestamps (DTX), then play silence."""
        samples = min(gap, self._last_samples) // GRANULE * GRANULE
        self._next_ts += samples
        if self._conceal_run < self.max_conceal:
            self._conceal_run += samples
            return Frame(FrameKind.CONCEAL, samples)
        return Frame(FrameKind.SILENCE, samples)

    def _expand(self) -> Frame | None:
        """Nothing to play: stretch the stream (concealment, then silence), or go idle."""
        if self._expanded >= self.max_wait:
            self._anchored = False
            return None
        self.stats.underruns += self._expanded == 0
        self._expanded += self._last_samples
        if self._conceal_run < self.max_conceal:
            self._conceal_run += self._last_samples
            return Frame(FrameKind.EXPAND, self._last_samples)
        return Frame(FrameKind.WAIT, self._last_samples)

    def _take_slot(self, now: float | None) -> None:
        assert self._next_seq is not None
        self._slots[self._next_seq] = now
        if len(self._slots) > SLOTS:
            self._slots.popitem(last=False)
        self._next_seq += 1

    def _anchor(self, seq: int, ts: int) -> None:
        self._anchored = True
        self._next_seq = seq
        self._next_ts = ts
        self._conceal_run = 0
        self._expanded = 0

    def _store(
        self, seq: int, ts: int, packet: MediaPacket, now: float, *, repaired: bool = False
    ) -> None:
        if repaired:
            self.stats.repaired += 1
        else:
            self.stats.received += 1
        self._packets[seq] = (ts, packet, None if repaired else now)
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
        self._slots.clear()
        self._anchor(packet.seq, packet.timestamp)
        self._store(packet.seq, packet.timestamp, packet, now)
