"""The jitter buffer: puts packets back in order and decides, each time the playout needs
the next piece of audio, whether to play a packet, rebuild a lost one from FEC, conceal,
or stretch the stream while the network is late.

Sans-I/O: `push(packet, now)` as packets arrive (it returns what it learned of that
packet: an `Arrival`), `pop(now)` when the playout needs audio. `pop` is three steps, in
the style of libwebrtc's NetEq: the buffer's `status()` (a frozen snapshot of what it
holds for the turn to play), a pure `decide(status)` that picks an `Operation`, and the
operation carried out. It never decodes: it returns `Frame`s that tell the decoder what
to do, with what the choice cost (packets given up as lost, a stretch that delayed the
stream). How long packets wait before they are pulled is the playout's business (see
`airmic.common.playout`).
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
    """What to play next, `samples` long; for AUDIO, when its packet arrived. `lost`:
    packets given up as lost in choosing it; `stretched`: samples by which the stream was
    delayed (a stretch that stood for nothing ended with this packet)."""

    kind: FrameKind
    samples: int
    payload: bytes = b""
    arrival: float = 0.0
    lost: int = 0
    stretched: int = 0


class Fate(enum.Enum):
    """What became of an arriving packet."""

    STORED = "stored"  # waits for its turn
    LATE = "late"  # its turn had passed
    DUPLICATE = "duplicate"
    JUMP = "jump"  # an absurd sequence or timestamp jump: dropped until confirmed
    RESTART = "restart"  # a jump confirmed: the sender restarted its numbering


@dataclass(frozen=True, slots=True)
class Arrival:
    """What the buffer learned from one packet: its fate; for a late one whose turn is
    remembered, its wait (negative: seconds after its turn); the redundant copies it
    carried that stand in for lost packets; the packets it showed were lost (a stream
    resuming after a hole, the leftovers of a numbering that restarted)."""

    fate: Fate
    wait: float | None = None
    repaired: int = 0
    lost: int = 0


@dataclass(frozen=True, slots=True)
class Status:
    """The buffer at one pull, as the decision sees it. Sample counts are on the stream's
    timeline, from where playout stands."""

    anchored: bool  # False: idle until the next packet
    head: int | None  # the packet in turn, if here: how far ahead its timestamp starts
    head_samples: int  # and its length
    missing: int  # packets missing before the first one here (when the head is not)
    ahead: int | None  # samples to the first packet here, if any
    stretched: int  # samples of stretch since the last packet played


@dataclass(frozen=True, slots=True)
class Limits:
    fec: bool
    max_conceal: int  # samples
    max_wait: int  # samples


class Operation(enum.Enum):
    """What one step of a pull does; the first four play nothing, and the buffer decides
    again after them."""

    MERGE = "merge"  # a stretch stood for lost packets: count it in the timeline
    DISCARD = "discard"  # the packet in turn came after its time was concealed
    SKIP = "skip"  # a hole nothing can fill: give its packets up, the next one is next
    IDLE = "idle"  # waited long enough: start afresh with the next packet
    NORMAL = "normal"  # play the packet in turn
    PAUSE = "pause"  # a pause in the timestamps: conceal its start, then silence
    FEC = "fec"  # rebuild the one lost packet from the next one's FEC
    CONCEAL = "conceal"  # conceal a lost packet
    EXPAND = "expand"  # nothing here yet: stretch the stream


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
    stretched: int = 0  # samples played while it was dry (concealment, then silence)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def decide(status: Status, limits: Limits) -> Operation:
    """The next step of a pull, from the buffer's status alone."""
    s = status
    if not s.anchored:
        return Operation.IDLE
    if s.stretched and s.ahead is not None and min(s.stretched, s.ahead) >= GRANULE:
        return Operation.MERGE
    if s.head is not None:
        if s.head >= GRANULE:
            return Operation.PAUSE
        if s.head + s.head_samples <= 0:
            return Operation.DISCARD
        return Operation.NORMAL
    if s.ahead is not None:
        if s.ahead < GRANULE or s.ahead > limits.max_conceal + MAX_PACKET_SAMPLES:
            return Operation.SKIP
        return Operation.FEC if s.missing == 1 and limits.fec else Operation.CONCEAL
    if s.stretched >= limits.max_wait:
        return Operation.IDLE
    return Operation.EXPAND


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
        self.limits = Limits(fec, round(max_conceal * RATE), round(max_wait * RATE))
        self.stats = JitterStats()
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
        self._lost = 0  # packets given up during the pull under way

    @property
    def fec(self) -> bool:
        return self.limits.fec

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

    def push(self, packet: MediaPacket, now: float) -> Arrival:
        """Take a packet that arrived at `now` (seconds, the playout's clock)."""
        repaired = 0
        if self._anchored:
            repaired = sum(self._push_copy(copy, now) for copy in packet.redundant)
        if self._next_seq is None:
            self._anchor(packet.seq, packet.timestamp)
            self._store(packet.seq, packet.timestamp, packet, now)
            return Arrival(Fate.STORED)
        seq = unwrap(packet.seq, self._next_seq, 16)
        ts = unwrap(packet.timestamp, self._next_ts, 32)
        if self._is_jump(seq, ts):
            leftovers = len(self._packets)
            fate = self._jumped(packet, now)
            lost = leftovers if fate is Fate.RESTART else 0
            return Arrival(fate, repaired=repaired, lost=lost)
        self._bad_seq = None
        if seq in self._received:
            self.stats.duplicate += 1
            return Arrival(Fate.DUPLICATE, repaired=repaired)
        if seq < self._next_seq:
            self.stats.late += 1
            slot = self._slots.get(seq)
            return Arrival(Fate.LATE, None if slot is None else slot - now, repaired)
        lost = 0
        if not self._anchored:  # idle: the stream resumes after a pause or an outage
            lost = seq - self._next_seq
            self.stats.lost += lost
            self._anchor(seq, ts)
        self._store(seq, ts, packet, now)
        return Arrival(Fate.STORED, repaired=repaired, lost=lost)

    def _push_copy(self, copy: MediaPacket, now: float) -> bool:
        """A redundant copy: it counts only when its packet was lost and its turn is to come."""
        assert self._next_seq is not None
        seq = unwrap(copy.seq, self._next_seq, 16)
        ts = unwrap(copy.timestamp, self._next_ts, 32)
        if seq >= self._next_seq and seq not in self._received and not self._is_jump(seq, ts):
            self._store(seq, ts, copy, now, repaired=True)
            return True
        return False

    def status(self) -> Status:
        """What the buffer holds for the turn to play."""
        head = self._packets.get(self._next_seq) if self._next_seq is not None else None
        first = min(self._packets) if self._packets else None
        return Status(
            anchored=self._anchored,
            head=None if head is None else head[0] - self._next_ts,
            head_samples=0 if head is None else head[1].samples,
            missing=0 if first is None or self._next_seq is None else first - self._next_seq,
            ahead=None if first is None else self._packets[first][0] - self._next_ts,
            stretched=self._expanded,
        )

    def pop(self, now: float) -> Frame | None:
        """The next frame, now that the playout needs it; None when idle."""
        self._lost = 0
        while True:
            status = self.status()
            operation = decide(status, self.limits)
            frame = self._carry_out(operation, status, now)
            if frame is not None or operation is Operation.IDLE:
                return frame

    def _carry_out(self, operation: Operation, status: Status, now: float) -> Frame | None:
        """Do `operation`; the frame it plays, if it plays one."""
        match operation:
            case Operation.IDLE:
                self._anchored = False
            case Operation.MERGE:
                self._merge(status)
            case Operation.DISCARD:
                self._packets.pop(self._next_seq)  # type: ignore[arg-type]
                self._take_slot(now)
                self.stats.late += 1
            case Operation.SKIP:
                self._give_up(status.missing)
                for _ in range(status.missing):
                    self._take_slot(now)
            case Operation.NORMAL:
                return self._play(now)
            case Operation.PAUSE:
                return self._fill_pause(status.head or 0)
            case Operation.FEC | Operation.CONCEAL:
                return self._replace_lost(operation, status, now)
            case Operation.EXPAND:
                return self._expand()
        return None

    def _frame(self, kind: FrameKind, samples: int, payload: bytes = b"", arrival: float = 0.0,
               stretched: int = 0) -> Frame:  # fmt: skip
        return Frame(kind, samples, payload, arrival, self._lost, stretched)

    def _play(self, now: float) -> Frame:
        ts, packet, arrival = self._packets.pop(self._next_seq)  # type: ignore[arg-type]
        self._take_slot(now)
        self.stats.played += 1
        stretched, self._expanded = self._expanded, 0  # the stretch stood for nothing
        self._next_ts = ts + packet.samples
        self._last_samples = packet.samples
        self._conceal_run = 0
        if arrival is None:  # a redundant copy: when it came says nothing of the network
            return self._frame(FrameKind.COPY, packet.samples, packet.payload, 0.0, stretched)
        return self._frame(FrameKind.AUDIO, packet.samples, packet.payload, arrival, stretched)

    def _replace_lost(self, operation: Operation, status: Status, now: float) -> Frame:
        """The packet in turn is missing while a later one has arrived."""
        assert status.ahead is not None
        gap = status.ahead
        samples = gap if status.missing == 1 else min(self._last_samples, gap)
        samples = max(GRANULE, samples // GRANULE * GRANULE)
        self._give_up(1)
        self._take_slot(now)
        self._next_ts += samples
        if operation is Operation.FEC:
            self.stats.recovered += 1
            self._conceal_run = 0
            _, later, _ = self._packets[min(self._packets)]
            return self._frame(FrameKind.FEC, samples, later.payload)
        self.stats.concealed += 1
        self._conceal_run += samples
        return self._frame(FrameKind.CONCEAL, samples)

    def _merge(self, status: Status) -> None:
        """The stream was stretched while nothing came; now a later packet has. The stretch
        stood for what was missing (lost packets, or the start of a pause): count it in the
        timeline, rather than also concealing them and keeping the stream delayed."""
        assert status.ahead is not None
        covered = min(status.stretched, status.ahead)
        self._expanded -= covered
        lost = min(status.missing, round(covered / self._last_samples))
        self._give_up(lost)
        self.stats.concealed += lost
        for _ in range(lost):
            self._take_slot(None)  # their turn was the stretch: no time to be late against
        self._next_ts += covered

    def _give_up(self, packets: int) -> None:
        self.stats.lost += packets
        self._lost += packets

    def _fill_pause(self, gap: int) -> Frame:
        """Conceal the start of a pause in the timestamps (DTX), then play silence."""
        samples = min(gap, self._last_samples) // GRANULE * GRANULE
        self._next_ts += samples
        if self._conceal_run < self.limits.max_conceal:
            self._conceal_run += samples
            return self._frame(FrameKind.CONCEAL, samples)
        return self._frame(FrameKind.SILENCE, samples)

    def _expand(self) -> Frame:
        """Nothing to play: stretch the stream (concealment, then silence)."""
        self.stats.underruns += self._expanded == 0
        self.stats.stretched += self._last_samples
        self._expanded += self._last_samples
        if self._conceal_run < self.limits.max_conceal:
            self._conceal_run += self._last_samples
            return self._frame(FrameKind.EXPAND, self._last_samples)
        return self._frame(FrameKind.WAIT, self._last_samples)

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

    def _jumped(self, packet: MediaPacket, now: float) -> Fate:
        """RFC 3550 A.1: a jump is believed only when the next packet follows on from it."""
        if packet.seq != self._bad_seq:
            self._bad_seq = (packet.seq + 1) & 0xFFFF
            self.stats.jumps += 1
            return Fate.JUMP
        self.stats.restarts += 1
        self.stats.lost += len(self._packets)  # the old numbering's leftovers cannot be placed
        self._bad_seq = None
        self._packets.clear()
        self._received.clear()
        self._slots.clear()
        self._anchor(packet.seq, packet.timestamp)
        self._store(packet.seq, packet.timestamp, packet, now)
        return Fate.RESTART
