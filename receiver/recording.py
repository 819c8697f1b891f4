"""`airmic-receive --record DIR`: the session's recording, one Ogg Opus file per room.

Each run makes a folder of its own (named by its start time; never an existing one), with
`ROOM.opus` for each room and `session.json` naming them. A file holds the Opus packets as
they arrived, neither decoded nor re-encoded, put in the order of their RTP timestamps.
Every file starts at the session's start: a room's silence before its first stream, the
pauses between its streams and the packets the network lost are Opus's "lost frame"
packets (one byte each), so the files play in step with each other in any player or DAW.

Packets cross from the network thread through a queue to the writer thread, which holds
each room's newest packets back for `HOLD` seconds to put late ones in place, closes a page
at least once a second and syncs it to the disk: after a kill or a power cut, everything
but the last second decodes.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from airmic.common.config import write_private
from airmic.common.errors import UsageError
from airmic.common.ogg import RATE, OggOpusPages, lost, opus_head, opus_tags
from airmic.common.rtp import MediaPacket

log = logging.getLogger(__name__)

HOLD = 0.3
"""Seconds a room's newest packets wait for the late ones before they are written."""
SYNC = 1.0
"""Seconds between two syncs of a file to the disk: at most this much is lost on a crash."""
SWEEP = 0.1
"""Seconds between two looks at every room (to sync it, and to write out a quiet one)."""
ALIGN = 2.0
"""Seconds of arrivals over which a stream's timeline is checked against the receiver's."""
SLIP = 240
"""Samples a stream's timeline may slip from the receiver's clock before it is moved back
in step (a sender's clock runs a little fast or slow: 50 ppm is 180 ms in an hour)."""


@dataclass
class _Stream:
    """One stream of a room: where its RTP timeline starts on the room's."""

    origin: str
    started: float  # seconds after the session's start
    base: int  # the room's sample position of its first packet
    first_timestamp: int | None = None
    last_timestamp: int = 0  # unwrapped
    window_start: float = 0.0  # when the alignment window began (the receiver's clock)
    least_delay: float = float("inf")  # samples: the least a packet came after its place


@dataclass
class _Room:
    name: str
    file: BinaryIO
    path: Path
    pages: OggOpusPages
    streams: list[_Stream] = field(default_factory=list)
    pending: dict[int, tuple[bytes, int]] = field(default_factory=dict)  # position: packet
    written: int = 0  # samples in the file
    newest: int = 0  # the end of the newest packet seen
    late: int = 0  # packets that came after their place was written
    slips: int = 0  # times a stream was moved back in step with the receiver's clock
    slip_ms: float = 0.0  # by how much in all (each a tiny skip or concealed stretch)
    synced: float = 0.0  # when its file was last synced (the writer's monotonic clock)
    heard: float = 0.0  # when its last packet was taken


class Recording:
    """The session's folder and its rooms' files. `stream()` (any thread) starts a stream
    in a room; `packet()` (the network thread) hands it a packet; `close()` ends it all."""

    def __init__(self, root: Path, now: float, clock: datetime.datetime | None = None) -> None:
        if not root.is_dir():
            raise UsageError(f"--record {root}: no such folder")
        started = clock or datetime.datetime.now().astimezone()
        self.folder = _new_folder(root, started.strftime("%Y-%m-%d_%H-%M-%S"))
        self.start = now  # on the receiver's monotonic clock
        self._started = started
        self._rooms: dict[str, _Room] = {}
        self._streams: dict[object, tuple[_Room, _Stream]] = {}
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        self._writer = threading.Thread(target=self._run, name="recording", daemon=True)
        self._writer.start()
        self._describe()
        log.info("recording each room into %s", self.folder)

    def stream(self, key: object, room: str, origin: str, now: float) -> None:
        self._queue.put(("stream", key, room, origin, now))

    def packet(self, key: object, packet: MediaPacket, now: float) -> None:
        self._queue.put(("packet", key, packet, now))

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join()

    def paths(self) -> dict[str, Path]:
        return {name: room.path for name, room in self._rooms.items()}

    # The writer's thread.

    def _run(self) -> None:
        swept = 0.0
        while True:
            try:
                item = self._queue.get(timeout=SWEEP)
            except queue.Empty:
                item = ()
            if item is None:
                break
            try:
                if item and item[0] == "stream":
                    self._start_stream(*item[1:])
                elif item:  # a packet: only its room has anything new to write
                    room = self._take(*item[1:])
                    if room is not None:
                        self._write(room, room.newest - round(HOLD * RATE))
                now = time.monotonic()
                if now - swept >= SWEEP:  # a few times a second, every room
                    swept = now
                    for room in self._rooms.values():
                        if now - room.heard >= HOLD:  # nothing more to wait for: write all
                            self._write(room, room.newest)
                        if now - room.synced >= SYNC:
                            self._sync(room)
            except OSError as exc:  # a full disk: the audio plays on, the file stops here
                log.error("recording: %s", exc)
        for room in self._rooms.values():
            with contextlib.suppress(OSError):
                self._write(room, room.newest)
                room.file.write(room.pages.end())
                self._sync(room)
                room.file.close()
        self._describe()

    def _start_stream(self, key: object, name: str, origin: str, now: float) -> None:
        room = self._rooms.get(name) or self._open_room(name)
        at = round((now - self.start) * RATE)
        # Not before what the room has already received: a stream that overlaps the last
        # (a reconnection) goes on after it.
        stream = _Stream(origin, now - self.start, max(at, room.newest), window_start=now)
        room.streams.append(stream)
        self._streams[key] = (room, stream)
        self._describe()

    def _take(self, key: object, packet: MediaPacket, now: float) -> _Room | None:
        found = self._streams.get(key)
        if found is None:
            return None
        room, stream = found
        room.heard = time.monotonic()
        for copy in packet.redundant:  # the copies fill what the network lost
            self._place(room, stream, copy, late=False)
        position = self._place(room, stream, packet, late=True)
        self._align(room, stream, position, now)
        return room

    def _align(self, room: _Room, stream: _Stream, position: int, now: float) -> None:
        """Keeps the stream on the receiver's clock: the least delay of its packets over a
        window is the sender's clock's drift since the stream began (jitter only adds to
        it); past `SLIP`, the stream's later packets move by that much (a lost-frame packet
        fills the room's timeline, or the packet that overlaps is left out)."""
        delay = (now - self.start) * RATE - position
        stream.least_delay = min(stream.least_delay, delay)
        if now - stream.window_start < ALIGN:
            return
        if stream.window_start and abs(stream.least_delay) > SLIP:
            stream.base += round(stream.least_delay)
            room.slips += 1
            room.slip_ms += abs(stream.least_delay) * 1000 / RATE
        stream.window_start, stream.least_delay = now, float("inf")

    def _place(self, room: _Room, stream: _Stream, packet: MediaPacket, late: bool) -> int:
        """Put a packet in its place on the room's timeline; that place."""
        if stream.first_timestamp is None:
            stream.first_timestamp = stream.last_timestamp = packet.timestamp
        # Unwrap the 32-bit timestamp around the last one seen.
        delta = (packet.timestamp - stream.last_timestamp + 2**31) % 2**32 - 2**31
        unwrapped = stream.last_timestamp + delta
        stream.last_timestamp = max(stream.last_timestamp, unwrapped)
        position = stream.base + unwrapped - stream.first_timestamp
        if position < room.written:  # its place is written already: too late
            room.late += late
            return position
        room.pending.setdefault(position, (packet.payload, packet.samples))
        room.newest = max(room.newest, position + packet.samples)
        return position

    def _open_room(self, name: str) -> _Room:
        path = _new_file(self.folder, _file_name(name), ".opus")
        pages = OggOpusPages(serial=len(self._rooms) + 1)
        file = path.open("xb")
        tags = opus_tags("airmic", {"TITLE": name, "DATE": self._started.isoformat()})
        file.write(pages.header(opus_head(), tags))
        room = _Room(name, file, path, pages)
        self._rooms[name] = room
        log.info("room %s: recording into %s", name, path)
        return room

    def _write(self, room: _Room, until: int) -> None:
        """Write the room's packets that end before `until`, in order, the holes filled."""
        out = []
        for position in sorted(p for p in room.pending if p < until):
            data, samples = room.pending.pop(position)
            if position < room.written:  # overlaps what is written (a stream's restart)
                continue
            for filler in lost(position - room.written):
                out.append(room.pages.packet(filler, _samples(filler)))
            room.written = position
            out.append(room.pages.packet(data, samples))
            room.written += samples
        if out:
            room.file.write(b"".join(out))

    def _sync(self, room: _Room) -> None:
        room.file.write(room.pages.flush())
        room.file.flush()
        os.fsync(room.file.fileno())
        room.synced = time.monotonic()

    def _describe(self) -> None:
        """session.json: the session's start and each room's file and streams."""
        rooms = [
            {
                "room": room.name,
                "file": room.path.name,
                "late_packets": room.late,
                "slips": room.slips,
                "slip_ms": round(room.slip_ms, 1),
                "streams": [
                    {"origin": s.origin, "start_s": round(s.started, 3)} for s in room.streams
                ],
            }
            for room in list(self._rooms.values())
        ]
        text = {"started": self._started.isoformat(), "rate": RATE, "rooms": rooms}
        write_private(self.folder / "session.json", (json.dumps(text, indent=2) + "\n").encode())


def _samples(filler: bytes) -> int:
    return {31: 960, 30: 480, 29: 240, 28: 120}[filler[0] >> 3]


def _file_name(room: str) -> str:
    """A room's name as a file name: no path separators, no control characters."""
    return re.sub(r"[^\w .@()+-]+", "_", room).strip(" .") or "room"


def _new_folder(root: Path, name: str) -> Path:
    for n in range(1, 1000):
        folder = root / (name if n == 1 else f"{name}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise UsageError(f"--record {root}: cannot make a new folder for this session")


def _new_file(folder: Path, stem: str, suffix: str) -> Path:
    for n in range(1, 1000):
        path = folder / (f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}")
        if not path.exists():
            return path
    raise UsageError(f"cannot name a file for room {stem!r} in {folder}")
