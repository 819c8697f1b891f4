"""The receiver's whole pipeline, wired in one place:

mDNS/DNS-SD: advertises the receiver; HTTPS also takes pairings (SPAKE2)
UDP socket ─────────────────────────────┐
HTTPS: page, WHIP ─► WebRTC (aiortc) RTP ─┴► demux (validate, one session per SSRC and source)
           ─► session: jitter buffer ─► Opus decoder (FEC, concealment) ─► [DSP chain] ─► sinks
playout clock: every block, each session plays the next block into its sinks
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text

from airmic.common.audio import RATE
from airmic.common.config import config_dir, write_private
from airmic.common.delay import MODES, LatencyRange
from airmic.common.dsp import PRESETS, DspSettings, build_chain
from airmic.common.errors import DeviceError
from airmic.common.identity import load_identity
from airmic.common.log import OnceLogger
from airmic.common.playout import BLOCK, Playout
from airmic.common.status import StatusLine, meter
from airmic.receiver.demux import Address, Demux, StreamKey
from airmic.receiver.discovery import Advertiser, Announcement
from airmic.receiver.guard import Guard
from airmic.receiver.pairing import PAGE_LINK, PairingDesk, senders
from airmic.receiver.session import Session
from airmic.receiver.sinks import SinkFactory
from airmic.receiver.transport import listen
from airmic.receiver.web import WebConfig, lan_address, start_web
from airmic.receiver.whip import WhipEndpoint

log = logging.getLogger(__name__)


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


@dataclass
class Receiver:
    config: ReceiverConfig
    demux: Demux = field(init=False)
    finished: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.identity = load_identity(self.config.folder)
        self.guard = Guard(self.identity, senders(self.config.folder), self.config.insecure)
        self.demux = Demux(self._open_session, self.config.max_streams, self.guard)
        self._revocation_check = 0.0
        self.whip = WhipEndpoint(
            self.demux.receive_rtp, self.end_streams_from, self.config.max_streams
        )
        self.sink_errors = OnceLogger(log)  # sinks that would not open, by spec

    def _open_session(self, key: StreamKey, now: float) -> Session:
        (host, port), ssrc = key
        sender = self.whip.senders.get((host, port))
        keyed = self.guard.keyed.get((host, port))
        if sender is not None:
            name = f"{sender.label} (WebRTC)"
        elif keyed is not None:
            name = f"{keyed.peer.name} ({host}:{port})"
        else:
            name = f"{host}:{port}/{ssrc:08x}"
        sinks = []
        for factory in self.config.sinks:
            try:
                sinks.append(factory.open(self.config.block))
            except DeviceError as exc:  # e.g. the sound server went away: the others play on
                self.sink_errors.report(
                    factory.spec, "stream %s: no %s: %s", name, factory.spec, exc
                )
        log.info("stream %s started -> %s", name, ", ".join(s.description for s in sinks))
        # A browser's sender may name its transducer (the page's "plugged in" choice).
        dsp = PRESETS[sender.preset] if sender and sender.preset else self.config.dsp
        chain = build_chain(dsp, self.config.block) if dsp else None
        if chain is not None:
            log.info("stream %s: DSP %s", name, chain.describe())
        session = Session(name, Playout(self.config.latency), sinks, now, chain)
        session.encrypted = keyed is not None or sender is not None
        return session

    def tick(self, now: float) -> None:
        """The playout clock's beat: the block that plays from `now` on, for each stream."""
        if now - self._revocation_check >= 1.0:  # `airmic-receive unpair` cuts at once
            self._revocation_check = now
            for address in self.guard.revoked():
                self.end_streams_from(address)
        for key, session in list(self.demux.sessions.items()):
            session.play(now, self.config.block)
            if now - session.last_packet > self.config.stream_timeout:
                self.end_stream(key)

    def end_stream(self, key: StreamKey) -> None:
        session = self.demux.close(key)
        session.close()
        stats = session.stats()
        self.finished.append(stats)
        log.info(
            "stream %s ended: %.1f s, %d packets, %d repaired from copies, "
            "%d lost (%d recovered by FEC), %d late",
            session.name,
            stats["seconds"],
            stats["received"],
            stats["repaired"],
            stats["lost"],
            stats["recovered"],
            stats["late"],
        )

    def end_streams_from(self, address: Address) -> None:
        for key in [key for key in self.demux.sessions if key[0] == address]:
            self.end_stream(key)

    def publication_stats(self, publication_id: str) -> dict[str, Any] | None:
        """The stream a WebRTC publication plays, seen from here (None before it starts)."""
        publication = self.whip.publications.get(publication_id)
        if publication is None:
            return None
        for ssrc in publication.ssrcs:
            session = self.demux.sessions.get((publication.address, ssrc))
            if session is not None:
                return session.stats() | {"level_db": round(session.level_db, 1)}
        return None

    async def close(self) -> None:
        """End every stream (their sinks drained and closed), then write the stats."""
        await self.whip.close()
        for key in list(self.demux.sessions):
            self.end_stream(key)
        if self.config.stats_json:
            self.config.stats_json.write_text(json.dumps(self.report(), indent=2) + "\n")

    def last_activity(self, since: float) -> float:
        return max([since, *(s.last_packet for s in self.demux.sessions.values())])

    def report(self) -> dict[str, Any]:
        live = [s.stats() for s in self.demux.sessions.values()]
        return {
            "streams": self.finished + live,
            "dropped": dict(self.demux.dropped.counts),
            "sink_errors": dict(self.sink_errors.counts),
        }

    def status(self) -> Text:
        lines = []
        if self.config.insecure:
            lines.append(Text("INSECURE: plain RTP accepted from anyone", style="bold red"))
        if not self.demux.sessions:
            where = f"listening on {self.config.listen[0]}:{self.config.listen[1]}, no stream"
            return Text("\n").join([*lines, Text(where)])
        for session in self.demux.sessions.values():
            s = session.playout.jitter.stats
            line = meter(session.level_db, width=12)
            line.append(
                f"  {session.name} ({'encrypted' if session.encrypted else 'plain'})"
                f"  {session.samples_played / RATE:6.1f} s  "
                f"{s.repaired} repaired, {s.lost} lost ({s.recovered} by FEC), {s.late} late"
            )
            lines.append(line)
        return Text("\n").join(lines)


async def run_receiver(config: ReceiverConfig, stop: asyncio.Event | None = None) -> Receiver:
    """Receive until `stop` is set or, with `exit_after_idle`, until no stream was heard for
    that long. Every stream is drained and its sinks closed before this returns."""
    loop = asyncio.get_running_loop()
    receiver = Receiver(config)
    stop = stop or asyncio.Event()
    if config.insecure:
        log.warning(
            "INSECURE: plain RTP is accepted from anyone on the network, unencrypted "
            "(--insecure); paired senders still stream encrypted"
        )
    async with contextlib.AsyncExitStack() as resources:  # closed in reverse order
        resources.push_async_callback(receiver.close)  # last: streams drained, stats written
        transport = await listen(*config.listen, receiver.demux.receive)
        resources.callback(transport.close)
        receiver.guard.send = transport.sendto  # handshake answers
        log.info("listening on UDP %s:%d", *config.listen)
        web = None
        if config.web:
            desk = PairingDesk(config.folder, receiver.identity, config.name)
            web = await start_web(
                config.web, config.folder, receiver.whip, receiver.publication_stats, desk
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
        with StatusLine(receiver.status):
            await _playout(receiver, stop, loop.time())
    return receiver


async def _playout(receiver: Receiver, stop: asyncio.Event, start: float) -> None:
    """A paced clock for the file and null sinks: block k plays at start + k * block (or a
    little faster or slower, with `clock_ppm`, as a sound card's crystal would), whenever
    the loop gets to it; a late wake-up plays the blocks it missed, so it never slips."""
    loop = asyncio.get_running_loop()
    idle_limit = receiver.config.exit_after_idle
    beat = receiver.config.block / RATE / (1 + receiver.config.clock_ppm * 1e-6)
    k = 0
    while not stop.is_set():
        now = start + k * beat
        if now > loop.time():
            await asyncio.sleep(now - loop.time())
            continue
        # Blocks keep their schedule; their pull is timed by the clock, like a device's.
        receiver.tick(loop.time())
        k += 1
        if idle_limit is not None and now - receiver.last_activity(start) > idle_limit:
            log.info("no stream for %g s: exiting", idle_limit)
            return
