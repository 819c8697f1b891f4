"""The WHIP endpoint's bounds, with real aiortc peer connections: simultaneous offers take
at most the cap, an offer that never connects frees its slot, and a publication's extra
SSRCs are dropped (each would be a stream, and a row in aiortc's receiver reports); an
offer whose candidates are all mDNS names still connects."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtp import RtpPacket

from airmic.common.rtcp import seconds
from airmic.receiver.whip import MAX_SSRCS, BadOffer, WhipEndpoint


@pytest.fixture
async def offer():
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    yield pc.localDescription.sdp
    await pc.close()


async def test_simultaneous_offers_take_at_most_the_cap(offer):
    whip = WhipEndpoint(lambda *_: None, lambda _: None, lambda *_: None, max_sessions=4)
    results = await asyncio.gather(
        *(whip.publish(offer, f"room {n}") for n in range(20)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, BadOffer)]
    assert len(whip.publications) == 4 and len(refused) == 16
    assert all("more than 4 WebRTC streams" in str(r) for r in refused)
    await whip.close()


async def test_an_offer_that_never_connects_frees_its_slot(offer):
    ended = []
    whip = WhipEndpoint(
        lambda *_: None, ended.append, lambda *_: None, max_sessions=1, connect_timeout=0.5
    )
    publication, _ = await whip.publish(offer, "kitchen")
    with pytest.raises(BadOffer):
        await whip.publish(offer, "hall")
    async with asyncio.timeout(10):
        while whip.publications:
            await asyncio.sleep(0.05)
    assert ended == [publication.address]
    await whip.publish(offer, "hall")  # the slot is free again
    await whip.close()


async def test_a_publication_plays_at_most_two_ssrcs(offer):
    delivered = []
    whip = WhipEndpoint(lambda rtp, *_: delivered.append(rtp.ssrc), lambda _: None, lambda *_: None)
    publication, _ = await whip.publish(offer, "kitchen")
    (transceiver,) = publication.pc.getTransceivers()
    handle = transceiver.receiver._handle_rtp_packet
    for ssrc in range(100):
        await handle(RtpPacket(payload_type=111, sequence_number=ssrc, ssrc=ssrc), 0)
    assert set(delivered) == set(range(MAX_SSRCS)) and publication.ssrcs == {0, 1}
    reported = transceiver.receiver._RTCRtpReceiver__remote_streams
    assert set(reported) == {0, 1}  # aiortc's receiver report stays one packet
    assert whip.dropped.counts["ssrcs"] == 100 - MAX_SSRCS
    await whip.close()


async def test_an_offer_with_only_mdns_candidates_connects():
    """A browser that hides its addresses behind `.local` names: the answer still carries
    the receiver's candidates, the browser's checks reach it, and the audio flows."""
    delivered = []
    whip = WhipEndpoint(lambda rtp, *_: delivered.append(rtp), lambda _: None, lambda *_: None)
    phone = RTCPeerConnection()
    phone.addTrack(AudioStreamTrack())  # aiortc's: silence, as real Opus packets
    await phone.setLocalDescription(await phone.createOffer())
    hidden = re.sub(r"(a=candidate:\S+ \d+ \S+ \d+ )\S+( \d+ typ host)",
                    r"\g<1>6a3f0c9e-7d21-4b8e-9f55-2c1d0e8b7a64.local\g<2>",
                    phone.localDescription.sdp)  # fmt: skip
    assert ".local" in hidden and "a=end-of-candidates" in hidden
    _, answer = await whip.publish(hidden, "kitchen")
    assert re.search(r"a=candidate:\S+ \d+ udp \d+ [0-9a-f.:]+ \d+ typ host", answer)
    await phone.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    async with asyncio.timeout(15):
        while len(delivered) < 50:  # half a second of the phone's audio
            await asyncio.sleep(0.05)
    assert phone.connectionState == "connected"
    await phone.close()
    await whip.close()


async def test_the_senders_reports_reach_the_receiver_with_its_clock():
    """A sender's RTCP sender reports (aiortc's here, as a browser's) are answered by the
    connection and handed on, with the offset of the sender's clock its page measured: the
    stream's capture times, for its end-to-end latency."""
    reports = []
    whip = WhipEndpoint(lambda *_: None, lambda _: None, lambda *args: reports.append(args))
    phone = RTCPeerConnection()
    phone.addTrack(AudioStreamTrack())
    await phone.setLocalDescription(await phone.createOffer())
    publication, answer = await whip.publish(phone.localDescription.sdp, "kitchen")
    publication.offset = 0.25  # as the page's stats poll sets it
    await phone.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    async with asyncio.timeout(15):
        while not reports:  # aiortc sends one every 0.5 to 1.5 s
            await asyncio.sleep(0.05)
    address, ssrc, info, offset = reports[0]
    assert address == publication.address and ssrc in publication.ssrcs and offset == 0.25
    assert abs(seconds(info.ntp_timestamp) - time.time()) < 2.0  # the sender's wall clock
    await phone.close()
    await whip.close()
