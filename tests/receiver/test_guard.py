"""The receiver's guard in memory, with real keys and files: a paired sender's handshake
keys its address, unpairing forgets it, and a flood of unkeyed RTP from many addresses is
refused without the guard's memory growing."""

from __future__ import annotations

import pytest

from airmic.common.handshake import SenderHandshake, parse
from airmic.common.identity import Identity
from airmic.common.peers import Peers
from airmic.common.rtp import Drop, DroppedPacket
from airmic.receiver.guard import HELLOS, Answer, Guard


def test_a_paired_sender_is_keyed_then_forgotten_when_unpaired(tmp_path):
    studio, laptop = Identity.generate(), Identity.generate()
    senders = Peers(tmp_path / "paired-senders.json")
    senders.add("laptop", laptop.public)
    guard = Guard(studio, senders, insecure=False)
    hello = SenderHandshake(laptop)
    answer = guard.admit(hello.datagram, ("10.0.0.2", 4000), 0.0)
    assert isinstance(answer, Answer)
    hello.keys(parse(answer.data), studio.public)  # a welcome signed by the studio
    assert guard.revoked() == []  # still paired
    senders.remove("laptop")
    assert guard.revoked() == [("10.0.0.2", 4000)]
    assert guard.keyed == {}


def test_a_flood_of_unkeyed_rtp_stays_bounded(tmp_path):
    guard = Guard(Identity.generate(), Peers(tmp_path / "none.json"), insecure=False)
    asked = []
    rtp = bytes([0x80, 96]) + bytes(30)
    for n in range(3 * HELLOS):
        with pytest.raises(DroppedPacket) as refused:
            guard.admit(rtp, ("10.1.0.1", 1000 + n), 0.0)
        assert refused.value.reason is Drop.NO_SESSION
        if refused.value.reply is not None:
            asked.append(n)
    assert len(asked) == 3 * HELLOS  # each address asked once to handshake
    assert len(guard._asked) == HELLOS
