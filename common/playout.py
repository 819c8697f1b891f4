"""One stream's way from packets to the sink's samples, as stages:

    packets ─► jitter buffer: status ─► decide (play, FEC, conceal, merge, expand …)
            ─► Opus decoder (FEC, concealment)
            ─► time-scaler: decide (keep, drop or insert a quiet frame) ─► drift resampler
            ─► samples

Each decision is a pure function of a frozen snapshot (`jitter.decide`, `time_scale`);
the stages carry it out. What the buffer learns of each arrival (`jitter.Arrival`) and of
each frame it chose (`jitter.Frame`: packets given up, a stretch that delayed the stream)
feeds the delay control, and `view()` is the frozen figures the status line shows.

The sink pulls: `pull(n, now)` returns the next `n` samples whenever the sink's clock asks,
so playout runs at the sink's rate. The audio is resampled (libsamplerate, through
`samplerate`) by the ratio of the sender's clock to the sink's (`airmic.common.drift`), so
the buffer neither fills nor empties over hours. The delay is held at its target
(`airmic.common.delay`): an error of a frame or more by dropping or doubling a frame where
the audio is quiet (inaudible), a smaller one by nudging the ratio (at most 0.2 %).
Sans-I/O: the caller gives `now` (seconds on the receiver's clock).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import samplerate

from airmic.common.audio import RATE, Block, level_dbfs
from airmic.common.delay import MODES, DelayEstimator, LatencyRange
from airmic.common.drift import DriftEstimator
from airmic.common.jitter import Frame, FrameKind, JitterBuffer
from airmic.common.opus import OpusDecoder
from airmic.common.rtp import MediaPacket, unwrap

KP = 0.2  # per second: a 5 ms error asks for 1000 ppm
MAX_CORRECTION = 0.002  # the delay is steered by 0.2 % at most
MAX_DRIFT = 0.003  # clocks further apart than 3000 ppm are not followed
QUIET_DB = -45.0  # a frame this quiet may be dropped or doubled without being heard
STEP_GAP = 0.1  # seconds between two drops or inserts
BLOCK = 240
"""The receiver's playout beat: 5 ms. The buffer's least delay is one block (a packet must be
there when the pull that plays it comes), so a short block is low latency; its cost, 200
wake-ups a second, did not show in CPU use (scripts/bench_cpu.py)."""
LOSSY = 0.005  # above this share of lost packets, wait one frame more, for FEC or copies


class Scale(enum.Enum):
    """What the time-scaler does with a frame."""

    KEEP = "keep"
    DROP = "drop"  # shorten the delay by a frame
    INSERT = "insert"  # lengthen it: the frame twice


def time_scale(
    error: float | None, duration: float, since_step: float, level_db: Callable[[], float]
) -> Scale:
    """Drop or double a frame of `duration` seconds when the delay is `error` seconds off
    its target (positive: too long) by about a frame or more, the last step is `STEP_GAP`
    behind, and the frame is quiet enough not to be heard (its level asked last: it costs
    a pass over the samples)."""
    if error is None or since_step < STEP_GAP:
        return Scale.KEEP
    if error > duration + 0.002:
        wanted = Scale.DROP
    elif error < -duration / 2:
        wanted = Scale.INSERT
    else:
        return Scale.KEEP
    return wanted if level_db() <= QUIET_DB else Scale.KEEP


@dataclass(frozen=True)
class PlayoutView:
    """A stream's playout at one moment, frozen: what the status line and stats show."""

    jitter: dict[str, int]
    drops: int
    inserts: int
    drift_ppm: float
    delay: float | None  # seconds a packet waits, lately
    target: float
    latency: str  # the delay mode
    malformed: int
    ratio: float


@dataclass
class PlayoutStats:
    drops: int = 0  # quiet frames dropped to shorten the delay
    inserts: int = 0  # quiet frames inserted to lengthen it
    drift_ppm: float = 0.0  # how much faster the sender's clock runs than the sink's
    decoded_samples: int = 0  # all audio the playout made, concealment included
    concealed_samples: int = 0  # of which concealment (lost packets, stretches)
    glitches: int = 0  # runs of concealment: what a listener may hear


MAX_RUN = 100
"""A longer hole in the sequence numbers is a sender that restarted, not a loss."""


class LossRuns:
    """Runs of packets the network lost (holes in the sequence numbers as packets arrive),
    and their mean length over the last `window` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._top: int | None = None  # the highest sequence number, extended
        self._runs: deque[tuple[float, int]] = deque()  # (when, length)
        self._covering: tuple[float, int] | None = None  # (share, frames) for these runs

    def arrived(self, seq: int, now: float) -> None:
        top = self._top
        extended = seq if top is None else unwrap(seq, top, 16)
        if top is not None and top + 1 < extended <= top + MAX_RUN:
            self._runs.append((now, extended - top - 1))
            self._covering = None
        while self._runs and self._runs[0][0] < now - self.window:
            self._runs.popleft()
            self._covering = None
        if top is None or extended > top:
            self._top = extended

    @property
    def mean(self) -> float:
        return sum(n for _, n in self._runs) / len(self._runs) if self._runs else 0.0

    def covering(self, share: float) -> int:
        """The fewest frames of each run that hold `share` of the packets lost in runs: a
        copy comes with the first packet after a run, so waiting `n` frames for it gets
        back the last `n` packets of each run."""
        if self._covering is None or self._covering[0] != share:  # runs changed since
            lengths = [n for _, n in self._runs]
            total, most = sum(lengths), max(lengths, default=0)
            n = next(
                (n for n in range(1, most) if sum(min(k, n) for k in lengths) >= share * total),
                most,
            )
            self._covering = share, n
        return self._covering[1]


class Playout:
    """Packets in, a steady stream of samples out, for one stream."""

    def __init__(
        self,
        latency: LatencyRange = MODES["balanced"],
        *,
        fec: bool = True,
        max_conceal: float = 0.06,
    ) -> None:
        self.jitter = JitterBuffer(fec=fec, max_conceal=max_conceal)
        self.delay = DelayEstimator(latency)
        self.decoder = OpusDecoder()
        self.stats = PlayoutStats()
        self._resampler = samplerate.Resampler("sinc_fastest", channels=1)
        self._fifo = np.zeros(0, dtype=np.float32)
        self._start_at: float | None = None  # when a (re)starting stream begins to play
        self._playing = False
        self.drift = DriftEstimator()
        self._last_step = -1e9
        self.ratio = 1.0
        self.malformed = 0
        self.wait_log: list[float] | None = None  # every packet's wait, when a list is given
        self._concealing = False
        self._block = BLOCK  # the sink's pull size, once known
        self._missed = 0  # packets the network lost (for good, or repaired by a later copy)
        # that the delay control has not been told of
        self.waiting = False  # the last frame was silence while nothing came: not the stream
        self._backs: tuple[int, ...] = ()  # how many packets back each copy a packet
        # carries is (RFC 2198), as the last said
        self._runs = LossRuns(latency.window)  # how many packets the network loses in a row

    def push(self, packet: MediaPacket, now: float) -> None:
        """A packet arrived at `now`."""
        arrival = self.jitter.push(packet, now)
        self._backs = tuple(sorted((packet.seq - c.seq) & 0xFFFF for c in packet.redundant))
        self._runs.arrived(packet.seq, now)
        self.drift.arrived(packet.timestamp, now)
        if arrival.wait is not None:  # how late it came
            self.delay.add(now, arrival.wait)
        self._missed += arrival.repaired + arrival.lost  # told at the next pull
        if not self._playing and self._start_at is None and not self.jitter.idle:
            # (Re)starting: a timeline that stopped and went on says nothing about clocks.
            self.drift.restart()
            self.drift.arrived(packet.timestamp, now)
            self.delay.stalls.restart()
            self._start_at = now + self.target(now)
        self.delay.stalls.arrived(now, packet.timestamp)

    def pull(self, samples: int, now: float, plays_at: float | None = None) -> Block | None:
        """The `samples` the sink takes at `now`; None while the stream is idle. `plays_at`:
        when the sink will play them, on its own clock, if it knows (default `now`)."""
        self._block = samples
        # The sink's clock runs whether or not we play.
        self.drift.pulled(samples, now if plays_at is None else plays_at)
        if not self._playing:
            if self._start_at is None or self._start_at >= now + samples / RATE:
                return None
            if self._start_at > now:  # (re)starting mid-block: silence until the start time
                pad = round((self._start_at - now) * RATE)
                self._fifo = np.concatenate((np.zeros(pad, dtype=np.float32), self._fifo))
            self._playing = True
        if len(self._fifo) < samples:
            self._steer(now)  # the ratio for the frames decoded now (not every pull needs one)
        while len(self._fifo) < samples:
            if not self._next_frame(now):
                break
        if not len(self._fifo):
            self._playing = False  # idle: start afresh, after the delay, on the next packet
            self._start_at = None
            return None
        block, self._fifo = self._fifo[:samples], self._fifo[samples:]
        if len(block) < samples:  # the stream ended mid-block
            block = np.concatenate((block, np.zeros(samples - len(block), dtype=np.float32)))
        return block

    def drain(self) -> Block:
        """Everything still buffered, decoded at once (on shutdown: lose nothing)."""
        out = [self._fifo]
        while self.jitter.buffered:
            frame = self.jitter.pop(float("inf"))
            if frame is None or frame.kind in (FrameKind.EXPAND, FrameKind.WAIT):
                break
            out.append(self._decode(frame))
        self._fifo = np.zeros(0, dtype=np.float32)
        return np.concatenate(out)

    def _next_frame(self, now: float) -> bool:
        frame = self.jitter.pop(now)
        self.waiting = frame is not None and frame.kind is FrameKind.WAIT
        missed = self._missed + (frame.lost if frame is not None else 0)
        if missed:  # lost by the network
            self.delay.lose(now, missed)
            self._missed = 0
        if frame is None:
            return False
        if frame.stretched:  # the stream was stretched while the network was late
            self.delay.shift(frame.stretched / RATE)
        pcm = self._decode(frame)
        self._count(frame.kind, len(pcm))
        if frame.kind is FrameKind.AUDIO:
            wait = now + len(self._fifo) / RATE - frame.arrival
            self.delay.add(now, wait)
            if self.wait_log is not None:
                self.wait_log.append(wait)
        scale = Scale.KEEP
        if frame.kind in (FrameKind.AUDIO, FrameKind.SILENCE):
            current = self.delay.current
            error = None if current is None else current - self.target(now)
            since = now - self._last_step
            scale = time_scale(error, len(pcm) / RATE, since, lambda: level_dbfs(pcm))
        self._scale(scale, pcm, now)
        return True

    def view(self, now: float) -> PlayoutView:
        """The playout's figures now, frozen."""
        return PlayoutView(
            jitter=self.jitter.stats.as_dict(),
            drops=self.stats.drops,
            inserts=self.stats.inserts,
            drift_ppm=self.stats.drift_ppm,
            delay=self.delay.current,
            target=self.target(now),
            latency=str(self.delay.latency),
            malformed=self.malformed,
            ratio=self.ratio,
        )

    def target(self, now: float) -> float:
        """The delay the playout is steering to, in seconds."""
        return self.delay.target(now, self._floor())

    def _floor(self) -> float:
        """The least delay worth having: one sink block, and while packets are being lost,
        as many frames more as it takes for the lost one's FEC or copy to be there in time:
        one for FEC (the next packet), and with copies enough to get back the latency
        mode's share of the packets lost in bursts: the copy of a burst's first packet comes
        after the burst, in the first packet that carries one from that far back."""
        floor = self._block / RATE
        if self.delay.loss_rate > LOSSY:
            frames = 1 if self.jitter.fec else 0
            if self._backs:
                needed = self._runs.covering(self.delay.latency.repair)
                reach = next((back for back in self._backs if back >= needed), self._backs[-1])
                frames = max(frames, reach)
            floor += frames * self.jitter.frame_samples / RATE
        return floor

    def _count(self, kind: FrameKind, samples: int) -> None:
        self.stats.decoded_samples += samples
        concealing = kind in (FrameKind.CONCEAL, FrameKind.EXPAND, FrameKind.WAIT)
        if concealing:
            self.stats.concealed_samples += samples
            self.stats.glitches += not self._concealing
        self._concealing = concealing

    def _scale(self, scale: Scale, pcm: Block, now: float) -> None:
        """Carry out the time-scaler's decision: the frame into the FIFO, resampled (none of
        it for a drop, twice for an insert)."""
        duration = len(pcm) / RATE
        if scale is Scale.DROP:
            self.delay.shift(-duration)
            self.stats.drops += 1
        elif scale is Scale.INSERT:
            self.delay.shift(duration)
            self.stats.inserts += 1
            self._fifo = np.concatenate((self._fifo, self._resample(pcm), self._resample(pcm)))
        else:
            self._fifo = np.concatenate((self._fifo, self._resample(pcm)))
        if scale is not Scale.KEEP:
            self._last_step = now

    def _steer(self, now: float) -> None:
        """Resample by the clocks' ratio, corrected a little to hold the delay on target."""
        drift = min(max(self.drift.ratio, 1 - MAX_DRIFT), 1 + MAX_DRIFT)
        self.stats.drift_ppm = (1 / drift - 1) * 1e6
        current = self.delay.current
        if current is None:
            self.ratio = drift
            return
        error = current - self.target(now)
        # ratio = output / input: below 1 the buffer empties faster, above 1 it fills.
        self.ratio = drift * (1.0 - min(max(KP * error, -MAX_CORRECTION), MAX_CORRECTION))

    def _resample(self, pcm: Block) -> Block:
        return np.asarray(self._resampler.process(pcm, self.ratio), dtype=np.float32)

    def _decode(self, frame: Frame) -> Block:
        try:
            if frame.kind in (FrameKind.AUDIO, FrameKind.COPY):
                return self.decoder.decode(frame.payload)
            if frame.kind is FrameKind.FEC:
                return self.decoder.recover(frame.payload, frame.samples)
        except ValueError:
            self.malformed += 1
        if frame.kind in (FrameKind.SILENCE, FrameKind.WAIT):
            return np.zeros(frame.samples, dtype=np.float32)
        return self.decoder.conceal(frame.samples)
