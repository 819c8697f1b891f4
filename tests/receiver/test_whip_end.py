"""A WebRTC publication that ends (DELETE, the page's Stop, a failed connection) ends its
stream at once, where a UDP stream ends only after its silence timeout."""

from __future__ import annotations

import asyncio

from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket

from airmic.receiver.pipeline import Receiver, ReceiverConfig
from airmic.receiver.sinks import NullSinkFactory
from airmic.receiver.whip import Publication
from tests.receiver.test_session import datagrams


async def test_ending_a_publication_ends_its_stream_at_once(speech_samples):
    receiver = Receiver(ReceiverConfig(("127.0.0.1", 0), [NullSinkFactory()], insecure=True))
    address = ("webrtc:kitchen", 1)
    receiver.whip.publications["1"] = Publication("1", "kitchen", RTCPeerConnection(), address)
    receiver.whip.senders[address] = receiver.whip.publications["1"]
    udp = ("127.0.0.1", 40_000)
    for i, data in enumerate(datagrams(speech_samples[:4800])):
        receiver.demux.receive_rtp(RtpPacket.parse(data), address, i * 0.01)
        receiver.demux.receive(data, udp, i * 0.01)
    assert {key[0] for key in receiver.demux.sessions} == {address, udp}

    assert await receiver.whip.end("1")
    receiver.tick(0.2)  # well inside the silence timeout
    assert await asyncio.to_thread(receiver.wait_finished, 1, 5.0)  # drained off the loop

    assert {key[0] for key in receiver.demux.sessions} == {udp}  # the UDP stream plays on
    assert [s["stream"] for s in receiver.finished] == ["kitchen (WebRTC)"]
    await receiver.close()
