"""The receiver's whole pipeline, wired in one place:

mDNS/DNS-SD: advertises the receiver; HTTPS also takes pairings (SPAKE2)
UDP socket (its own thread) ─► guard (handshakes, SRTP, SRTCP) ─┐
HTTPS: page, WHIP ─► WebRTC (aiortc) RTP (the event loop) ──────┴► demux (validate; one
    session per SSRC and source; RTCP: each sender report answered with a receiver report,
    a BYE ends the stream once it played out) ─► the session's inbox, and [--record: the
    recording thread ─► the room's Ogg Opus file, the packets as they came]
the output's clock (the virtual mic's server, a sound card, or the paced clock for files),
    every block: inbox ─► jitter buffer ─► Opus decoder (FEC, concealment) ─► delay and
    drift control ─► [DSP chain] ─► the stream's files, and mixed into the output
the event loop, a few times a second: streams that went silent or were unpaired end; the
    finisher thread drains and closes them
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiortc.rtp import RtcpSenderInfo, RtpPacket
from rich.text import Text

from airmic.common.config import config_dir, write_private
from airmic.common.delay import MODES, LatencyRange
from airmic.common.dsp import PRESETS, DspSettings
from airmic.common.dsp.chain import build_chain
from airmic.common.errors import DeviceError
from airmic.common.identity import load_identity
from airmic.common.log import OnceLogger
from airmic.common.playout import BLOCK, Playout
from airmic.common.rtp import MediaPacket
from airmic.common.status import StatusLine, meter
from airmic.receiver.demux import Address, Demux, StreamKey
from airmic.receiver.discovery import Advertiser, Announcement
from airmic.receiver.guard import Guard
from airmic.receiver.pairing import PAGE_LINK, PairingDesk, senders
from airmic.receiver.player import Feed, Output, PacedClock, Player, StreamSink
from airmic.receiver.recording import Recording
from airmic.receiver.rooms import Room
from airmic.receiver.session import Inlet, Metrics, Origin, Session
from airmic.receiver.sinks import SinkFactory, SinkPlan
from airmic.receiver.transport import listen
from airmic.receiver.web import start_web
from airmic.receiver.web_config import WebConfig, lan_address
from airmic.receiver.web_gate import quiet_loop_errors, raise_file_limit
from airmic.receiver.whip import WhipEndpoint
from airmic.receiver.workers import Plan, Remote, Workers

log = logging.getLogger(__name__)

TICK = 0.1
"""Seconds between two housekeeping passes on the event loop while streams play."""
IDLE_TICK = 1.0
"""The same while none does (nothing to end then): an idle receiver wakes once a second."""
CLOSE_TIMEOUT = 5.0
"""Seconds the receiver waits at exit for its streams to finish."""
ENDINGS = {
    "sender": "the sender stopped",
    "replaced": "its sender started a new stream",
    "silent": "silent too long",
    "unpaired": "its sender was unpaired",
    "disconnected": "its connection closed",
    "dashboard": "from the dashboard",
    "receiver": "the receiver stopped",
    "worker": "its worker process died",
}


@dataclass
class ReceiverConfig:
    listen: tuple[str, int]
    sinks: list[SinkFactory]
    latency: LatencyRange = MODES["balanced"]
    stream_timeout: float = 5.0  # a stream silent this long is over
    exit_after_idle: float | None = None
    stats_json: Path | None = None
    max_streams: int = 16
    clock_ppm: float = 0.0  # rate error of the paced clock, to test drift correction
    block: int = BLOCK  # the playout clock's beat
    dsp: DspSettings | None = None  # a DSP chain for every stream; None: none
    web: WebConfig | None = None  # the phone page and WHIP endpoint; None: none
    name: str = field(default_factory=socket.gethostname)  # as senders see it
    discovery: bool = True  # advertised by mDNS/DNS-SD
    interface: str | None = None  # where mDNS goes; None: the --listen address (or all)
    folder: Path = field(default_factory=config_dir)  # keys, pairings, certificate, token
    insecure: bool = False  # also take plain RTP from anyone (ffmpeg, GStreamer)
    record: Path | None = None  # a session folder in it, an Ogg Opus file per room
    rooms: list[Room] = field(default_factory=list)  # set at start (--room)
    workers: int = 0  # processes that play the streams; 0: this one (receiver/workers.py)


class Receiver:
    """The receiver's core and its streams.

    The guard, the demux and the sessions sit behind one lock: the UDP thread and the
    event loop (WebRTC packets, the housekeeping tick) both feed them. Each stream gets a
    player, driven by the clock of its first output (the virtual mic's server, a sound
    card) or by the paced clock (files only); a stream that ends is drained and closed on
    the finisher thread, and its figures land in `finished`.
    """

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        self.identity = load_identity(config.folder)
        paired = senders(config.folder)
        paired.all()  # unreadable: a clear error now (later, the last good list serves)
        self.guard = Guard(self.identity, paired, config.insecure)
        self.demux = Demux(self._open_session, config.max_streams, self.guard, self._finish)
        self.whip = WhipEndpoint(
            self.receive_rtp, self.end_streams_from, self.sender_clock, config.max_streams
        )
        self.sink_errors = OnceLogger(log)  # sinks that would not open, by spec
        self.finished: list[dict[str, Any]] = []
        self.clock = PacedClock(config.block, config.clock_ppm)  # for files and null
        self._lock = threading.Lock()
        self._players: dict[StreamKey, Player | Remote] = {}
        self._finisher = ThreadPoolExecutor(1, thread_name_prefix="finisher")
        self._all_finished = threading.Condition()
        self._revocation_check = 0.0
        self._last_heard = 0.0  # the last packet of a stream that has ended
        self.recording = Recording(config.record, time.monotonic()) if config.record else None
        self.rooms = {room.name: room for room in config.rooms}  # and each met (the lock)
        self.workers: Workers | None = None
        if config.workers:
            self.workers = Workers(config.workers, config.block, config.clock_ppm,
                                   lambda remote, metrics: self._ended(metrics),
                                   self._lost)  # fmt: skip
            log.info("%d worker processes play the streams", config.workers)

    def receive(self, data: bytes, addr: Address, now: float) -> bytes | None:
        """A datagram from the UDP socket (its thread); what to answer, if anything."""
        with self._lock:
            return self.demux.receive(data, addr, now)

    def drained(self) -> None:
        """The UDP socket has nothing more for now: what its packets queued for the
        workers goes."""
        if self.workers is not None:
            self.workers.flush()

    def receive_rtp(self, rtp: RtpPacket, addr: Address, now: float) -> None:
        """A packet that a WebRTC connection decrypted (the event loop)."""
        with self._lock:
            self.demux.receive_rtp(rtp, addr, now)
        self.drained()

    def sender_clock(
        self, addr: Address, ssrc: int, info: RtcpSenderInfo, offset: float | None
    ) -> None:
        """A WebRTC sender's RTCP sender report (the event loop), with its clock's offset."""
        with self._lock:
            self.demux.sender_clock(addr, ssrc, info, offset)

    def _open_session(self, key: StreamKey, now: float) -> Inlet:
        """A new stream (under the lock): its session, its sinks opened, its player started
        (here, or in a worker process)."""
        (host, port), ssrc = key
        sender = self.whip.senders.get((host, port))
        keyed = self.guard.keyed.get((host, port))
        if sender is not None:
            origin = Origin(f"{sender.label} (WebRTC)", True, "webrtc", sender.label)
        elif keyed is not None:
            origin = Origin(f"{keyed.peer.name} ({host}:{port})", True, room=keyed.peer.name)
        else:  # a plain peer names its room in its RTCP, if it sends any
            named = self.demux.names.get((host, ssrc), host)
            origin = Origin(f"{host}:{port}/{ssrc:08x}", False, room=named)
        room = self.rooms.setdefault(origin.room, Room(origin.room))
        # A browser's sender may name its transducer (the page's "plugged in" choice); a
        # room set at start (--room NAME:preset=...) names it for every sender in it.
        dsp = room.dsp(self.config.dsp)
        if sender and sender.preset:
            dsp = PRESETS[sender.preset]
        if self.workers is not None:
            plans = self._plan_sinks(origin.name, origin.room)
            names = [plan.description for plan in plans]
        else:
            sinks, outputs = self._open_sinks(origin.name, origin.room)
            names = [sink.description for sink in sinks] + [o.description for o in outputs]
        tap = None  # the room's recording gets each packet as it arrives
        if self.recording is not None:
            recording = self.recording
            recording.stream(key, origin.room, origin.name, now)
            names.append(f"room {origin.room} in {recording.folder}")

            def tap(packet: MediaPacket, arrived: float) -> None:
                recording.packet(key, packet, arrived)

        log.info("stream %s started -> %s", origin.name, ", ".join(names))
        if room.gain_db or room.muted:
            log.info("stream %s: room %s, %s", origin.name, room.name, room.describe())
        if self.workers is not None:
            plan = Plan(key, origin, now, room, self.config.latency, dsp, tuple(plans),
                        tuple(names))  # fmt: skip
            remote = self.workers.open(plan, tap, room)
            self._players[key] = remote
            return remote
        chain = build_chain(dsp, self.config.block) if dsp else None
        if chain is not None:
            log.info("stream %s: DSP %s", origin.name, chain.describe())
        session = Session(origin, Playout(self.config.latency), now, chain, tuple(names), tap, room)
        feeds = [Feed(session) for _ in outputs[1:]]  # the first output's clock pulls
        player = Player(session, sinks, feeds, self._finisher, self._ended)
        self._players[key] = player
        for output, feed in zip(outputs[1:], feeds, strict=True):
            output.attach(feed)
        (outputs[0] if outputs else self.clock).attach(player)
        return session

    def _plan_sinks(self, name: str, room: str) -> list[SinkPlan]:
        """Where the stream goes, for its worker to open (a mic is made here, at its room's
        first stream)."""
        plans = []
        for factory in self.config.sinks:
            try:
                plans.append(factory.plan(name, room))
            except DeviceError as exc:  # e.g. the sound server went away: the others play on
                self.sink_errors.report(
                    factory.spec, "stream %s: no %s: %s", name, factory.spec, exc
                )
        return plans

    def _open_sinks(self, name: str, room: str) -> tuple[list[StreamSink], list[Output]]:
        """The stream's own sinks (creating a file: on the network thread, as the stream's
        first packets must wait for it anyway) and the shared outputs it attaches to."""
        sinks: list[StreamSink] = []
        outputs: list[Output] = []
        for factory in self.config.sinks:
            try:
                opened = factory.open(name, room)
            except DeviceError as exc:  # e.g. the sound server went away: the others play on
                self.sink_errors.report(
                    factory.spec, "stream %s: no %s: %s", name, factory.spec, exc
                )
                continue
            if isinstance(opened, Output):
                outputs.append(opened)
            else:
                sinks.append(opened)
        return sinks, outputs

    def tick(self, now: float) -> None:
        """Housekeeping, a few times a second: streams silent too long, or unpaired, end."""
        with self._lock:
            if now - self._revocation_check >= 1.0:  # `airmic-receive unpair` cuts at once
                self._revocation_check = now
                for address in self.guard.revoked():
                    self._end_from(address, "unpaired")
            for key, session in list(self.demux.sessions.items()):
                if now - session.last_packet > self.config.stream_timeout:
                    self._end(key, "silent")

    def end_streams_from(self, address: Address) -> None:
        with self._lock:
            self._end_from(address, "disconnected")

    def _end_from(self, address: Address, why: str) -> None:
        for key in [key for key in self.demux.sessions if key[0] == address]:
            self._end(key, why)

    def _end(self, key: StreamKey, why: str) -> None:
        self._close(key, why)
        self._players.pop(key).stop()  # its driver lets go of it; the finisher closes it

    def _finish(self, key: StreamKey, why: str) -> None:
        """The stream is over (its sender's BYE, or a new SSRC replaced it): what is
        buffered plays out, then it ends."""
        self._close(key, why).play_out()
        self._players.pop(key)

    def _lost(self, remotes: list[Remote]) -> None:
        """A worker died: its streams end here, with their figures as last published."""
        for remote in remotes:
            with self._lock:
                if self.demux.sessions.get(remote.key) is remote:
                    self._close(remote.key, "worker")
                self._players.pop(remote.key, None)
            self._ended(remote.published())

    def _close(self, key: StreamKey, why: str) -> Inlet:
        """The stream leaves the live ones (its last packet still counts as activity)."""
        session = self.demux.close(key)
        session.ended = why
        self._last_heard = max(self._last_heard, session.last_packet)
        return session

    def _ended(self, metrics: Metrics) -> None:
        """A stream is drained and closed (the finisher's thread)."""
        stats = metrics.as_dict()
        log.info(
            "stream %s ended (%s): %.1f s, %d packets, %d repaired from copies, "
            "%d lost (%d recovered by FEC), %d late, %d gaps at the outputs (%.0f ms)",
            metrics.stream,
            ENDINGS.get(metrics.ended, metrics.ended),
            metrics.seconds,
            stats["received"],
            stats["repaired"],
            stats["lost"],
            stats["recovered"],
            stats["late"],
            metrics.gaps,
            metrics.gap_ms,
        )
        with self._all_finished:
            self.finished.append(stats)
            self._all_finished.notify_all()

    def rooms_view(self) -> list[dict[str, Any]]:
        """Every room met so far (or set at start), its settings and its live streams: what
        the dashboard shows."""
        paired = {peer.name for peer in self.guard.senders.all()}
        with self._lock:
            live: dict[str, list[dict[str, Any]]] = {}
            for session in self.demux.sessions.values():
                live.setdefault(session.room.name, []).append(session.metrics.as_dict())
            rooms = list(self.rooms.values())
        return [
            {
                "name": room.name,
                "muted": room.muted,
                "gain_db": room.gain_db,
                "preset": room.preset,
                "paired": room.name in paired,
                "streams": live.get(room.name, []),
            }
            for room in rooms
        ]

    def set_room(self, name: str, changes: dict[str, Any]) -> None:
        with self._lock:
            room = self.rooms.setdefault(name, Room(name))
        room.apply(changes)
        if self.workers is not None:
            self.workers.room(room)
        log.info("room %s: %s (from the dashboard)", name, room.describe())

    def end_room(self, name: str) -> int:
        """End the room's streams now (its sender, if still there, starts a new one)."""
        with self._lock:
            keys = [k for k, s in self.demux.sessions.items() if s.room.name == name]
            for key in keys:
                self._end(key, "dashboard")
        return len(keys)

    def unpair_room(self, name: str) -> None:
        """Revoke the paired sender of the room's name; its streams end."""
        self.guard.senders.remove(name, "sender")
        log.info("sender %r unpaired from the dashboard", name)
        self.end_room(name)

    def publication_stats(self, publication_id: str) -> dict[str, Any] | None:
        """The stream a WebRTC publication plays, seen from here (None before it starts)."""
        publication = self.whip.publications.get(publication_id)
        if publication is None:
            return None
        with self._lock:
            sessions = [
                self.demux.sessions.get((publication.address, s)) for s in publication.ssrcs
            ]
        for session in sessions:
            if session is not None:
                return session.metrics.as_dict()
        return None

    async def close(self) -> None:
        """End every stream (drained, their sinks closed), then write the stats."""
        await self.whip.close()
        with self._lock:
            for key in list(self.demux.sessions):
                self._end(key, "receiver")
        if not await asyncio.to_thread(self.wait_finished, self.demux.opened, CLOSE_TIMEOUT):
            log.warning("%d streams did not finish", self.demux.opened - len(self.finished))
        await asyncio.to_thread(self.clock.close)
        if self.workers is not None:
            await asyncio.to_thread(self.workers.close, CLOSE_TIMEOUT)
        if self.recording is not None:
            await asyncio.to_thread(self.recording.close)
        self._finisher.shutdown(wait=False)
        if self.config.stats_json:
            self.config.stats_json.write_text(json.dumps(self.report(), indent=2) + "\n")

    def wait_finished(self, streams: int, timeout: float) -> bool:
        """Blocks until `streams` streams have finished; False after `timeout` (an output
        that is stuck on its device)."""
        with self._all_finished:
            return self._all_finished.wait_for(lambda: len(self.finished) >= streams, timeout)

    def last_activity(self, since: float) -> float:
        """When a stream was last heard (live or ended since), or `since` if none was."""
        with self._lock:
            live = [s.last_packet for s in self.demux.sessions.values()]
            return max([since, self._last_heard, *live])

    def live(self) -> list[Metrics]:
        with self._lock:
            return [session.metrics for session in self.demux.sessions.values()]

    def report(self) -> dict[str, Any]:
        live = [metrics.as_dict() for metrics in self.live()]
        return {
            "streams": self.finished + live,
            "dropped": dict(self.demux.dropped.counts),
            "sink_errors": dict(self.sink_errors.counts),
        }

    def status(self) -> Text:
        """The status line (rich's refresh thread)."""
        lines = []
        if self.config.insecure:
            lines.append(Text("INSECURE: plain RTP accepted from anyone", style="bold red"))
        streams = self.live()
        if not streams:
            where = f"listening on {self.config.listen[0]}:{self.config.listen[1]}, no stream"
            return Text("\n").join([*lines, Text(where)])
        for m in streams:  # what matters most first: a narrow terminal cuts the end
            line = meter(m.level_db, width=12)
            line.append(f"  {m.stream}{'' if m.encrypted else ', plain'}  {m.seconds:.1f} s  ")
            line.append(f"mic gaps {m.gaps}", style="bold red" if m.gaps else "")
            line.append(
                f"  lost {m.jitter['lost']} (FEC {m.jitter['recovered']})  "
                f"repaired {m.jitter['repaired']}  late {m.jitter['late']}"
            )
            if m.end_to_end_ms is not None:  # known once an airmic sender's reports tell
                line.append(f"  end to end {m.end_to_end_ms:.0f} ms")
            lines.append(line)
        return Text("\n").join(lines)


async def run_receiver(config: ReceiverConfig, stop: asyncio.Event | None = None) -> Receiver:
    """Receive until `stop` is set or, with `exit_after_idle`, until no stream was heard for
    that long. Every stream is drained and its sinks closed before this returns."""
    loop = asyncio.get_running_loop()
    receiver = Receiver(config)
    stop = stop or asyncio.Event()
    raise_file_limit()  # each stream and connection takes files; a flood must not run out
    quiet_loop_errors(loop)
    if config.insecure:
        log.warning(
            "INSECURE: plain RTP is accepted from anyone on the network, unencrypted "
            "(--insecure); paired senders still stream encrypted"
        )
    async with contextlib.AsyncExitStack() as resources:  # closed in reverse order
        resources.push_async_callback(receiver.close)  # last: streams drained, stats written
        transport = listen(*config.listen, receiver.receive, receiver.drained)
        resources.callback(transport.close)
        log.info("listening on UDP %s:%d", *config.listen)
        web = None
        if config.web:
            desk = PairingDesk(config.folder, receiver.identity, config.name)
            web = await start_web(
                config.web, config.folder, receiver.whip, receiver.publication_stats, desk, receiver
            )
            resources.push_async_callback(web.close)
            web.announce()
            write_private(config.folder / PAGE_LINK, web.url.encode())  # for `pair`
            resources.callback((config.folder / PAGE_LINK).unlink, missing_ok=True)
        if config.discovery:
            host = config.interface or config.listen[0]
            announcement = Announcement(
                config.name,
                lan_address() if host in ("0.0.0.0", "") else host,
                config.listen[1],
                web.base if web else None,
                receiver.identity.fingerprint,
            )
            interface = None if host in ("0.0.0.0", "") else host
            advertiser = Advertiser.start(announcement, interface)
            resources.push_async_callback(advertiser.close)
        if not senders(config.folder).all():
            log.info(
                "no sender is paired yet: run airmic-receive pair (in another terminal), then "
                "airmic-send pair CODE on the sender%s",
                "; a phone needs only the link above" if web else "",
            )
        with StatusLine(receiver.status):
            await _housekeeping(receiver, stop, loop.time())
    return receiver


def _test_stall() -> tuple[float, float] | None:
    """AIRMIC_TEST_STALL=SECONDS/EVERY: block the event loop that long, that often (for the
    tests that prove the audio does not depend on the loop)."""
    spec = os.environ.get("AIRMIC_TEST_STALL")
    if not spec:
        return None
    seconds, every = spec.split("/")
    log.warning("test hook: the event loop stalls %s s every %s s", seconds, every)
    return float(seconds), float(every)


async def _housekeeping(receiver: Receiver, stop: asyncio.Event, start: float) -> None:
    """Ends streams that went silent or were unpaired, and the receiver when idle. The
    audio does not wait on this: each stream's output pulls it on its own clock."""
    loop = asyncio.get_running_loop()
    idle_limit = receiver.config.exit_after_idle
    stall, stalled = _test_stall(), start
    while not stop.is_set():
        tick = TICK
        if not receiver.live():
            tick = IDLE_TICK
            if idle_limit is not None:  # not a moment past the idle time, all the same
                tick = min(tick, receiver.last_activity(start) + idle_limit - loop.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(tick, 0.01))
        now = loop.time()
        if stall and now - stalled >= stall[1]:  # the tests' stand-in for a stalled loop
            stalled = now
            time.sleep(stall[0])
        receiver.tick(now)
        if idle_limit is not None and now - receiver.last_activity(start) > idle_limit:
            log.info("no stream for %g s: exiting", idle_limit)
            return
