"""WebRTC ingest by WHIP (RFC 9725): a browser, `airmic-send --transport webrtc`, OBS or
GStreamer's whipsink publishes an Opus track; the receiver answers and plays it.

aiortc terminates ICE, DTLS and SRTP. Its own audio path decodes without concealment, so
each decrypted RTP packet is taken from its receiver and handed to the same demux as UDP
datagrams: one session model, one jitter buffer, FEC and concealment for both transports.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import AnyRtcpPacket, RtcpSenderInfo, RtcpSrPacket, RtpPacket
from aiortc.sdp import SessionDescription

from airmic.common.audio import RATE
from airmic.common.log import OnceLogger
from airmic.receiver.demux import Address

log = logging.getLogger(__name__)

MAX_OFFER = 64 * 1024
"""Longer offers are refused: a browser's audio-and-video offer is about 6 kB."""

MDNS_CANDIDATE = re.compile(r"a=candidate:\S+ \d+ \S+ \d+ \S+\.local \d+ ", re.IGNORECASE)
CONNECT_TIMEOUT = 15.0
"""Seconds a publication has to connect (ICE and DTLS) before its slot is freed."""
MAX_SSRCS = 2
"""Streams one publication may send: one track, and one change of SSRC (more are dropped:
each would be a stream, and a row in aiortc's receiver reports, which must fit a packet)."""

OPUS_FMTP = "minptime=10;useinbandfec=1"
PTIME = 10
"""Asked of the sender: in-band FEC, and 10 ms packets where it allows (Chromium does)."""
OPUS_RTPMAP = re.compile(r"a=rtpmap:(\d+) opus/48000/2$", re.IGNORECASE)


class BadOffer(ValueError):
    """An offer that cannot be answered; the message says why, for the HTTP response."""


@dataclass
class Publication:
    """One WHIP session: a peer connection whose audio plays as a stream."""

    id: str
    label: str  # the name the sender gave (a room), for the terminal and the stats
    pc: RTCPeerConnection
    address: Address  # the demux's key for it
    preset: str | None = None  # the DSP preset the sender asked for; None: the receiver's
    ssrcs: set[int] = field(default_factory=set)
    offset: float | None = None  # how far this host's wall clock is ahead of the sender's
    # (seconds), as its page measured it: its RTCP sender reports are on its own clock


class WhipEndpoint:
    """Answers offers and keeps the sessions they open, until DELETE or disconnection.

    `deliver(rtp, address, now)` gets each decrypted RTP packet and `ended(address)` hears
    that a publication is over (its stream ends at once, not after a silence);
    `reported(address, ssrc, info, offset)` gets the sender's RTCP sender reports, with the
    offset of its clock if its page measured it; `senders` maps a publication's address to
    it, for the receiver to name and process its stream."""

    def __init__(
        self,
        deliver: Callable[[RtpPacket, Address, float], None],
        ended: Callable[[Address], None],
        reported: Callable[[Address, int, RtcpSenderInfo, float | None], None],
        max_sessions: int = 16,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self._deliver = deliver
        self._ended = ended
        self._reported = reported
        self.max_sessions = max_sessions
        self.connect_timeout = connect_timeout
        self.publications: dict[str, Publication] = {}
        self.senders: dict[Address, Publication] = {}
        self.dropped = OnceLogger(log)  # packets of a publication's extra streams
        self._answering = 0  # offers being answered: their slots are taken already
        self._ending: set[asyncio.Future[bool]] = set()
        self._ids = itertools.count(1)

    async def publish(
        self, offer: str, label: str, preset: str | None = None
    ) -> tuple[Publication, str]:
        """A new publication for `offer` and the answer SDP. Raises BadOffer."""
        if len(self.publications) + self._answering >= self.max_sessions:
            raise BadOffer(f"more than {self.max_sessions} WebRTC streams")
        _check_offer(offer)
        self._answering += 1  # before the first await: simultaneous offers count
        try:
            return await self._answer(offer, label, preset)
        finally:
            self._answering -= 1

    async def _answer(self, offer: str, label: str, preset: str | None) -> tuple[Publication, str]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # LAN: no STUN, no TURN
        number = next(self._ids)
        address = (f"webrtc:{label}", number)
        publication = Publication(f"{number}", label, pc, address, preset)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(_without_mdns(offer), "offer"))
            self._take_audio(publication)
            await pc.setLocalDescription(await pc.createAnswer())
        except BadOffer:
            await pc.close()
            raise
        except Exception as exc:  # aiortc's checks raise several types; the offer is bad
            await pc.close()
            raise BadOffer(f"cannot answer the offer: {exc}") from None
        self.publications[publication.id] = publication
        self.senders[publication.address] = publication

        @pc.on("connectionstatechange")
        async def changed() -> None:
            log.debug("WebRTC %s (%s): %s", publication.id, label, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self.end(publication.id)

        def unconnected() -> None:  # an offer that never connects frees its slot
            if pc.connectionState != "connected" and publication.id in self.publications:
                log.info("WebRTC stream %s (%s) did not connect", publication.id, label)
                task = asyncio.ensure_future(self.end(publication.id))
                self._ending.add(task)  # kept until done (the loop holds only weak ones)
                task.add_done_callback(self._ending.discard)

        asyncio.get_running_loop().call_later(self.connect_timeout, unconnected)
        log.info("WebRTC stream %s offered by %r", publication.id, label)
        return publication, _ask_for_opus_options(pc.localDescription.sdp)

    def _take_audio(self, publication: Publication) -> None:
        capabilities = RTCRtpReceiver.getCapabilities("audio")
        codecs = capabilities.codecs if capabilities else []
        opus = [codec for codec in codecs if codec.mimeType.lower() == "audio/opus"]
        audio = [t for t in publication.pc.getTransceivers() if t.kind == "audio"][:1]
        if not audio:
            raise BadOffer("the offer has no audio track")
        for transceiver in publication.pc.getTransceivers():
            transceiver.direction = "inactive"  # video, or a second track: not for a mic
        audio[0].direction = "recvonly"
        audio[0].setCodecPreferences(opus)
        self._intercept(audio[0].receiver, publication)

    def _intercept(self, receiver: RTCRtpReceiver, publication: Publication) -> None:
        """Take the receiver's decrypted packets to the demux."""
        loop = asyncio.get_running_loop()
        # aiortc's receiver reports (RTCP RR) on the streams in this table. Fed here, the
        # sender hears of the loss, and Chromium's Opus turns its in-band FEC on.
        reported = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]

        # aiortc awaits this for each decrypted packet; replacing it bypasses its own
        # jitter buffer and decoder (see the module's docstring).
        async def handle(rtp: RtpPacket, arrival_time_ms: int) -> None:
            if rtp.ssrc not in publication.ssrcs:
                if len(publication.ssrcs) >= MAX_SSRCS:
                    self.dropped.report(
                        "ssrcs", "WebRTC %s: more than %d streams in one publication: "
                        "dropped", publication.id, MAX_SSRCS,
                    )  # fmt: skip
                    return
                publication.ssrcs.add(rtp.ssrc)
            if rtp.ssrc not in reported:
                reported[rtp.ssrc] = StreamStatistics(RATE)
            reported[rtp.ssrc].add(rtp)
            self._deliver(rtp, publication.address, loop.time())

        receiver._handle_rtp_packet = handle  # type: ignore[method-assign, assignment]

        own_rtcp = receiver._handle_rtcp_packet

        async def handle_rtcp(packet: AnyRtcpPacket) -> None:  # aiortc's, then a copy of SRs
            await own_rtcp(packet)
            if isinstance(packet, RtcpSrPacket) and packet.ssrc in publication.ssrcs:
                self._reported(publication.address, packet.ssrc, packet.sender_info,
                               publication.offset)  # fmt: skip

        receiver._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]

    async def end(self, publication_id: str) -> bool:
        publication = self.publications.pop(publication_id, None)
        if publication is None:
            return False
        self.senders.pop(publication.address, None)  # its session, if any, has its name
        self._ended(publication.address)  # told with the slot freed, not after the close
        await publication.pc.close()
        log.info("WebRTC stream %s (%s) closed", publication.id, publication.label)
        return True

    async def close(self) -> None:
        for publication_id in list(self.publications):
            await self.end(publication_id)


def _check_offer(offer: str) -> None:
    if len(offer) > MAX_OFFER:
        raise BadOffer(f"offer of {len(offer)} bytes (at most {MAX_OFFER})")
    try:
        parsed = SessionDescription.parse(offer)
    except Exception as exc:  # aiortc's parser raises several types on malformed input
        raise BadOffer(f"malformed SDP: {exc!r}") from None
    if not any(
        m.kind == "audio" and any(c.mimeType.lower() == "audio/opus" for c in m.rtp.codecs)
        for m in parsed.media
    ):
        raise BadOffer("the offer has no Opus audio")


def _without_mdns(offer: str) -> str:
    """The offer without its mDNS candidates (`….local`: browsers hide their addresses so
    until the page is granted the mic, Firefox with a fake mic always), and then without
    its end-of-candidates. Not resolved: that would be a multicast query from every
    receiver on every interface, for an address the browser's first connectivity check
    tells anyway (a peer-reflexive candidate, RFC 8445 section 7.3.1.3). Handed to aiortc
    as they are, unresolvable names ended ICE with no pair, and the answer carried none of
    the receiver's candidates, so the connection could never form."""
    lines = offer.split("\r\n")
    kept = [line for line in lines if not MDNS_CANDIDATE.match(line)]
    if len(kept) == len(lines):
        return offer
    log.debug("WebRTC offer: %d mDNS candidates left to the checks", len(lines) - len(kept))
    return "\r\n".join(line for line in kept if line != "a=end-of-candidates")


def _ask_for_opus_options(answer: str) -> str:
    """The answer with OPUS_FMTP and PTIME for the Opus payload type (aiortc writes none)."""
    lines = answer.split("\r\n")
    rtpmap = next((i for i, line in enumerate(lines) if OPUS_RTPMAP.match(line)), None)
    if rtpmap is None:
        return answer
    pt = OPUS_RTPMAP.match(lines[rtpmap]).group(1)  # type: ignore[union-attr]
    lines = [line for line in lines if not line.startswith((f"a=fmtp:{pt} ", "a=ptime:"))]
    lines[rtpmap + 1 : rtpmap + 1] = [f"a=fmtp:{pt} {OPUS_FMTP}", f"a=ptime:{PTIME}"]
    return "\r\n".join(lines)
