"""Every parser that reads network input, fed tens of thousands of generated inputs (random
bytes, and inputs built to get past the first checks): each either parses or refuses with
its own error, never anything else. Hypothesis, seeded from the test's name (derandomized),
so a failure repeats."""

from __future__ import annotations

import base64
import contextlib
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airmic.common.handshake import MAGIC, BadHandshake, parse
from airmic.common.identity import Identity
from airmic.common.pairing import PairingError, PairingWindow, SenderPairing
from airmic.common.peers import Peers
from airmic.common.rtp import DroppedPacket, parse_media
from airmic.receiver.demux import Demux
from airmic.receiver.guard import Guard
from airmic.receiver.whip import BadOffer, _check_offer

MANY = settings(
    max_examples=8_000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
SLOW = settings(MANY, max_examples=4_000)
"""For parsers that take a millisecond an input (aiortc's SDP parser)."""
SPAKE2 = settings(MANY, max_examples=800)
"""Each input reaches SPAKE2, pure Python: several milliseconds apiece."""


def rtp_like() -> st.SearchStrategy[bytes]:
    """Datagrams that pass the version check: an RTP header (with CSRCs and extensions at
    random) and a payload at random, RED and padding included."""
    return st.builds(
        lambda first, pt, seq, ts, ssrc, tail: (
            struct.pack("!BBHII", first, pt, seq, ts, ssrc) + tail
        ),
        st.integers(0x80, 0xBF),
        st.integers(0, 255),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.binary(max_size=400),
    )


@MANY
@given(st.one_of(st.binary(max_size=1600), rtp_like()))
def test_rtp(data):
    try:
        packet = parse_media(data)
    except DroppedPacket:
        return
    assert packet.samples > 0


@MANY
@given(
    st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda kind, body: MAGIC + bytes([kind]) + body,
            st.integers(0, 6),
            st.binary(max_size=200),
        ),
        st.builds(lambda body: MAGIC + b"\x01" + body, st.binary(min_size=144, max_size=144)),
    )
)
def test_handshake(data):
    with contextlib.suppress(BadHandshake):
        parse(data)


STUDIO = Identity.generate()


@settings(max_examples=8_000, deadline=None, derandomize=True)
@given(st.one_of(st.binary(max_size=400), rtp_like(),
                 st.builds(lambda b: MAGIC + b, st.binary(max_size=200))))  # fmt: skip
def test_the_guard_and_demux_take_any_datagram(tmp_path_factory, data):
    """The whole receiving door: guard (secure, with a paired sender), then the demux."""
    folder = tmp_path_factory.getbasetemp() / "fuzz-guard"
    guard = Guard(STUDIO, Peers(folder / "paired-senders.json"), insecure=False)
    demux = Demux(lambda key, now: None, guard=guard)  # type: ignore[arg-type, return-value]
    demux.receive(data, ("127.0.0.1", 5000), 0.0)  # refused and counted, or answered


SDP_LINES = [
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "m=audio 9 UDP/TLS/RTP/SAVPF 111",
    "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10", "m=video 9 UDP/TLS/RTP/SAVPF 96",
    "a=rtpmap:96 VP8/90000", "a=mid:0", "a=sendonly", "a=ice-ufrag:x", "a=fingerprint:sha-256 00",
    "c=IN IP4 0.0.0.0", "a=setup:actpass", "a=rtcp-mux", "a=group:BUNDLE 0",
]  # fmt: skip


@SLOW
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(st.one_of(st.sampled_from(SDP_LINES), st.text(max_size=40)), max_size=30).map(
            "\r\n".join
        ),
    )
)
def test_whip_offer(offer):
    with contextlib.suppress(BadOffer):
        _check_offer(offer)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


def b64(size: int) -> st.SearchStrategy[str]:
    return st.binary(min_size=size, max_size=size).map(lambda b: base64.b64encode(b).decode())


FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.text(max_size=50), JSON),
        "spake": st.one_of(b64(33), st.text(max_size=50), JSON),
        "key": st.one_of(b64(32), JSON),
        "mac": st.one_of(b64(32), st.text(max_size=50), JSON),
    },
)


@SPAKE2
@given(st.one_of(JSON, FIELDS), st.one_of(JSON, FIELDS))
def test_pairing_messages(start, finish):
    """The receiver's two steps, with whatever a client may post."""
    window = PairingWindow("123456", expires=10.0)
    try:
        attempt_id, _ = window.begin(STUDIO, "studio", start, "10.0.0.1", now=0.0)
        window.finish(attempt_id, finish, now=1.0)
    except PairingError:
        pass


@settings(SPAKE2, max_examples=600)
@given(st.one_of(JSON, FIELDS), st.one_of(JSON, FIELDS))
def test_the_senders_side_of_pairing(reply, answer):
    with contextlib.suppress(PairingError):
        attempt = SenderPairing("123456", STUDIO, "laptop")
        attempt.finish(reply)
        attempt.confirm(answer)
