"""airmic-send over WebRTC: publishes to the receiver's WHIP endpoint (RFC 9725), for
networks where plain RTP/UDP does not get through.

The Opus packets stay airmic's own (its DSP, frame size and in-band FEC): aiortc's sender
passes pre-encoded packets through as they are (a track that yields `av.Packet`s) and adds
RTP, RTCP, ICE and DTLS-SRTP. Like the phone page, the link reconnects by itself when the
receiver goes away, and ends its WHIP session (DELETE) when the sender stops.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import ssl
import urllib.parse
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import aiohttp
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from rich.text import Text

from airmic.common.audio import RATE
from airmic.common.errors import NetworkError, UsageError
from airmic.common.fingerprint import fingerprint, same_fingerprint
from airmic.common.log import OnceLogger

log = logging.getLogger(__name__)

RETRY = (1.0, 2.0, 4.0, 8.0)
"""Seconds between reconnection attempts: the last one repeats."""
CONNECT_TIMEOUT = 15.0
QUEUE = 50
"""Packets (half a second of 10 ms frames) held for aiortc's sender; older ones go first."""
RTP_HEADER = 12
WATCH = 2.0
"""Seconds between looks at the session on the receiver."""


class Unreachable(NetworkError):
    """The receiver cannot be reached now; worth trying again."""


@dataclass(frozen=True)
class WhipTarget:
    url: str  # the WHIP endpoint, with the token and name in its query
    fingerprint: str | None = None  # the certificate expected; None: shown, not checked

    @classmethod
    def parse(cls, link: str, name: str, fingerprint: str | None = None) -> WhipTarget:
        """From the link airmic-receive prints (its page or /whip, with `token=`)."""
        parts = urllib.parse.urlsplit(link)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise UsageError(f"not a receiver's link: {link!r} (https://HOST:PORT/?token=...)")
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise UsageError("http:// only to this machine: elsewhere, the token would show")
        query = dict(urllib.parse.parse_qsl(parts.query))
        if not query.get("token"):
            raise UsageError(
                "the link has no token: copy the whole link airmic-receive prints at start"
            )
        query["name"] = name
        path = "/whip" if parts.path in ("", "/") else parts.path
        url = parts._replace(path=path, query=urllib.parse.urlencode(query)).geturl()
        return cls(url, fingerprint)

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).netloc

    @property
    def headers(self) -> dict[str, str]:
        """The token, for requests to the session's own URL (which carries none)."""
        token = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.url).query))["token"]
        return {"Authorization": f"Bearer {token}"}


class PacketTrack(MediaStreamTrack):
    """An audio track of Opus packets already encoded."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: asyncio.Queue[av.Packet] = asyncio.Queue()

    def put(self, packet: av.Packet) -> None:
        if self._queue.qsize() >= QUEUE:
            self._queue.get_nowait()
        self._queue.put_nowait(packet)

    async def recv(self) -> av.Packet:  # type: ignore[override]
        return await self._queue.get()


class WhipLink:
    """Sends Opus packets to one receiver over WebRTC, reconnecting when it goes away."""

    def __init__(self, target: WhipTarget, http: aiohttp.ClientSession) -> None:
        self.target = target
        self.description = f"WebRTC to {target.host} (DTLS-SRTP)"
        self.sent_bytes = 0  # RTP, before SRTP
        self.dropped = 0  # while not connected
        self._http = http
        self._pts = 0
        self._pc: RTCPeerConnection | None = None
        self._track: PacketTrack | None = None
        self._resource: str | None = None
        self._fatal: NetworkError | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._problems = OnceLogger(log)
        self._tls: aiohttp.Fingerprint | bool = False  # the certificate, once pinned
        self.view: dict[str, Any] | None = None  # the receiver's view of the stream

    @classmethod
    async def open(cls, target: WhipTarget) -> WhipLink:
        """Connected, or the reason why not (NetworkError)."""
        link = cls(target, aiohttp.ClientSession())
        try:
            await link._pin_certificate()
            await link._connect()
        except BaseException:
            await link._http.close()
            raise
        link._keeper = asyncio.create_task(link._keep())
        return link

    def send(self, payload: bytes, samples: int) -> None:
        if self._fatal is not None:
            raise self._fatal
        packet = av.Packet(payload)
        packet.pts = self._pts
        packet.time_base = Fraction(1, RATE)
        self._pts += samples
        if self._track is None or self._lost.is_set():
            self.dropped += 1
            return
        self._track.put(packet)
        self.sent_bytes += RTP_HEADER + len(payload)

    def status(self) -> Text:
        """For the status line: the receiver's view of the stream, or the connection's."""
        if self._track is None or self._lost.is_set():
            return Text("WebRTC: reconnecting", "dim")
        return Text(f"receiver: {self._heard()}" if self.view else "WebRTC: connected", "dim")

    def _heard(self) -> str:
        view = self.view or {}
        delay = view.get("delay_ms")
        return (
            f"delay {delay if delay is not None else '-'} ms, "
            f"{view.get('lost', 0)} lost ({view.get('recovered', 0)} by FEC)"
        )

    expected_loss = None  # FEC's tuning stays as configured: aiortc's reports do not say
    bitrate = None  # and so does the bitrate

    def summary(self) -> str:
        """What the receiver last said it heard, for the summary."""
        return f"the receiver reported: {self._heard()}" if self.view else ""

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
        await self._hang_up()
        await self._http.close()

    async def _connect(self) -> None:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # LAN: no STUN, no TURN
        track = PacketTrack()
        transceiver = pc.addTransceiver(track, direction="sendonly")
        capabilities = RTCRtpSender.getCapabilities("audio")
        codecs = capabilities.codecs if capabilities else []
        transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() == "audio/opus"])
        connected = asyncio.Event()

        @pc.on("connectionstatechange")
        def changed() -> None:
            log.debug("WebRTC: %s", pc.connectionState)
            if pc.connectionState == "connected":
                connected.set()
            elif pc.connectionState in ("failed", "closed") and pc is self._pc:
                self._lost.set()

        try:
            await pc.setLocalDescription(await pc.createOffer())  # gathers every candidate
            answer, resource = await self._post(pc.localDescription.sdp)
            self._resource = resource
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            try:
                await asyncio.wait_for(connected.wait(), CONNECT_TIMEOUT)
            except TimeoutError:
                raise Unreachable(
                    f"no WebRTC connection to {self.target.host} after {CONNECT_TIMEOUT:g} s "
                    "(a firewall between the two? the receiver's address?)"
                ) from None
        except BaseException:
            await pc.close()
            await self._delete()
            raise
        self._pc, self._track = pc, track
        self._lost.clear()
        log.info("WebRTC: connected to %s", self.target.host)

    async def _post(self, offer: str) -> tuple[str, str]:
        """POST the offer: the answer and the session's URL."""
        headers = {"Content-Type": "application/sdp", **self.target.headers}
        timeout = aiohttp.ClientTimeout(total=10)
        try:
            async with self._http.post(
                self.target.url, data=offer, headers=headers, ssl=self._tls, timeout=timeout
            ) as response:
                body = await response.text()
                if response.status == 401:
                    raise NetworkError(
                        f"{self.target.host} refused the token: the link is old or mistyped; "
                        "use the one airmic-receive prints now"
                    )
                if response.status != 201 or "Location" not in response.headers:
                    raise NetworkError(
                        f"{self.target.host} refused the stream: {response.status} "
                        f"{body.strip()[:200]}"
                    )
                return body, urllib.parse.urljoin(self.target.url, response.headers["Location"])
        except aiohttp.ServerFingerprintMismatch:
            raise NetworkError(
                f"{self.target.host} has another certificate than when airmic-send started: "
                "another machine, or someone in between"
            ) from None
        except aiohttp.ClientConnectorError as exc:  # refused, no route: try again later
            reason = exc.os_error.strerror or exc.os_error
            raise Unreachable(f"cannot reach {self.target.host}: {reason}") from None
        except aiohttp.ClientError as exc:  # reset, cut short
            raise Unreachable(f"{self.target.host} broke off: {exc}") from None
        except TimeoutError:
            raise Unreachable(f"{self.target.host} did not answer in 10 s") from None

    async def _pin_certificate(self) -> None:
        """The receiver's certificate is self-signed: its fingerprint is checked against
        --fingerprint, or shown for the user to check, and every request after this one must
        meet the same certificate (a receiver that restarts keeps it)."""
        parts = urllib.parse.urlsplit(self.target.url)
        if parts.scheme != "https":
            return  # http:// on 127.0.0.1
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # checked below
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, parts.port or 443, ssl=context), 10
            )
        except OSError as exc:
            raise Unreachable(f"cannot reach {self.target.host}: {exc.strerror or exc}") from None
        except TimeoutError:
            raise Unreachable(f"{self.target.host} did not answer in 10 s") from None
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        seen = fingerprint(der)
        if self.target.fingerprint is None:
            log.info(
                "the receiver's certificate: SHA-256 %s (check it against what airmic-receive "
                "printed; --fingerprint makes it checked)",
                seen,
            )
        elif not same_fingerprint(seen, self.target.fingerprint):
            raise NetworkError(
                f"{self.target.host}'s certificate is not the one given with --fingerprint "
                f"(it has {seen}): another machine, or someone in between"
            )
        self._tls = aiohttp.Fingerprint(hashlib.sha256(der).digest())

    async def _keep(self) -> None:
        """Reconnect when the connection is lost, with back-off; stop on a refusal."""
        while True:
            await self._watch()
            log.warning("WebRTC: lost %s; reconnecting", self.target.host)
            self._lost.set()  # packets are dropped, not queued, until connected again
            await self._hang_up()
            for attempt in itertools.count():
                await asyncio.sleep(RETRY[min(attempt, len(RETRY) - 1)])
                try:
                    await self._connect()
                    break
                except Unreachable as exc:
                    self._problems.report(type(exc).__name__, "WebRTC: %s (trying again)", exc)
                except NetworkError as exc:
                    self._fatal = exc
                    return

    async def _watch(self) -> None:
        """Return when the connection is lost. ICE notices only after 30 s of silence
        (RFC 7675's consent), so the session's URL is asked every WATCH seconds too: a
        receiver that restarted answers 404, one that is down does not answer. Its answer
        (the stream as the receiver plays it) is kept in `view`."""
        misses = 0
        while misses < 2:
            try:
                await asyncio.wait_for(self._lost.wait(), WATCH)
                return
            except TimeoutError:
                pass
            try:
                timeout = aiohttp.ClientTimeout(total=WATCH)
                assert self._resource is not None
                async with self._http.get(
                    self._resource, headers=self.target.headers, ssl=self._tls, timeout=timeout
                ) as response:
                    if response.status in (404, 410):
                        return
                    if response.status == 200:
                        self.view = (await response.json()).get("stream")
                misses = 0
            except (aiohttp.ClientError, TimeoutError, ValueError):
                misses += 1

    async def _hang_up(self) -> None:
        pc, self._pc, self._track = self._pc, None, None
        if pc is not None:
            await pc.close()
        await self._delete()

    async def _delete(self) -> None:
        """End the WHIP session on the receiver, if it can still be told."""
        resource, self._resource = self._resource, None
        if resource is None:
            return
        try:
            timeout = aiohttp.ClientTimeout(total=3)
            headers = self.target.headers
            async with self._http.delete(resource, headers=headers, ssl=self._tls, timeout=timeout):
                pass
        except (aiohttp.ClientError, TimeoutError):
            pass  # gone already: its side ends the session when the connection fails
