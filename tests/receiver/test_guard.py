"""The receiver's guard in memory, with real keys and files: a paired sender's handshake
keys its address, unpairing forgets it, a flood of unkeyed RTP from many addresses is
refused without the guard's memory growing, refusals are signed for one hello and bounded,
and a corrupted list of paired senders does not cut anyone."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from airmic.common.handshake import BadHandshake, Refusal, Refuse, SenderHandshake, parse, refuse
from airmic.common.identity import Identity
from airmic.common.peers import Peers
from airmic.common.rtp import Drop, DroppedPacket
from airmic.receiver import guard as guard_module
from airmic.receiver.guard import HELLOS, REFUSALS, VERIFICATIONS, Answer, Guard


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


def test_only_the_paired_receiver_can_refuse_a_sender_and_only_its_own_hello(tmp_path):
    """A refusal is signed by the receiver over the very hello it answers: the sender takes
    it; a refusal of another hello (one an attacker sent from the sender's address, or an
    old one), or one signed by anyone else, is refused by the sender."""
    studio, laptop, attacker = Identity.generate(), Identity.generate(), Identity.generate()
    guard = Guard(studio, Peers(tmp_path / "paired-senders.json"), insecure=False)
    mine = SenderHandshake(laptop)
    with pytest.raises(DroppedPacket) as refused:
        guard.admit(mine.datagram, ("10.0.0.2", 4000), 0.0)
    assert refused.value.reason is Drop.UNPAIRED
    answer = parse(refused.value.reply)
    assert isinstance(answer, Refuse)
    assert mine.refused(answer, studio.public) is Refusal.UNPAIRED

    reflected = SenderHandshake(attacker)  # sent "from" the laptop's address
    with pytest.raises(DroppedPacket) as refused:
        guard.admit(reflected.datagram, ("10.0.0.3", 4000), 0.0)
    with pytest.raises(BadHandshake):
        mine.refused(parse(refused.value.reply), studio.public)
    forged = parse(refuse(attacker, mine.hello, Refusal.UNPAIRED))
    with pytest.raises(BadHandshake):
        mine.refused(forged, studio.public)
    with pytest.raises(BadHandshake):  # the attacker's key in the studio's place
        mine.refused(Refuse(studio.public, Refusal.UNPAIRED, forged.signature), studio.public)


def test_refusals_are_bounded_per_address_and_in_all(tmp_path):
    guard = Guard(Identity.generate(), Peers(tmp_path / "none.json"), insecure=False)
    hellos = [SenderHandshake(Identity.generate()).datagram for _ in range(3)]
    answered = []
    for n in range(100):  # one address, then many, all within a second
        with pytest.raises(DroppedPacket) as refused:
            guard.admit(hellos[n % 3], ("10.2.0.1", 1000 + max(0, n - 9)), 0.5)
        answered.append(refused.value.reply is not None)
    assert answered[:10] == [True] + [False] * 9
    assert sum(answered) == REFUSALS
    with pytest.raises(DroppedPacket) as refused:  # a second later, answered again
        guard.admit(hellos[0], ("10.2.0.1", 1000), 1.6)
    assert refused.value.reply is not None


def test_a_hello_with_a_paired_key_but_not_its_signature_is_dropped(tmp_path):
    studio, laptop = Identity.generate(), Identity.generate()
    senders = Peers(tmp_path / "paired-senders.json")
    senders.add("laptop", laptop.public)
    guard = Guard(studio, senders, insecure=False)
    datagram = bytearray(SenderHandshake(laptop).datagram)
    datagram[-1] ^= 1
    with pytest.raises(DroppedPacket) as refused:
        guard.admit(bytes(datagram), ("10.0.0.2", 4000), 0.0)
    assert refused.value.reason is Drop.BAD_HANDSHAKE and refused.value.reply is None
    assert guard.keyed == {}


def test_a_corrupted_paired_list_keeps_the_last_good_one(tmp_path):
    studio, laptop = Identity.generate(), Identity.generate()
    senders = Peers(tmp_path / "paired-senders.json")
    senders.add("laptop", laptop.public)
    guard = Guard(studio, senders, insecure=False)
    assert isinstance(guard.admit(SenderHandshake(laptop).datagram, ("10.0.0.2", 4000), 0.0),
                      Answer)  # fmt: skip
    senders.path.write_text("{not json")
    os.utime(senders.path, ns=(1, 1))  # a new stamp, whatever the clock's resolution
    assert guard.revoked() == []  # no stream cut, no crash
    assert isinstance(guard.admit(SenderHandshake(laptop).datagram, ("10.0.0.2", 4001), 0.0),
                      Answer)  # fmt: skip


def test_a_flood_of_hellos_with_a_paired_key_is_checked_only_so_often(tmp_path, monkeypatch):
    """Forged hellos in a paired sender's name (its key travels in the clear) cost a
    signature check each: a few a second per address, VERIFICATIONS in all; the real
    sender, from its own address, is still welcomed."""
    studio, laptop = Identity.generate(), Identity.generate()
    senders = Peers(tmp_path / "paired-senders.json")
    senders.add("laptop", laptop.public)
    guard = Guard(studio, senders, insecure=False)
    checked = []
    real_check = guard_module.signed_by_sender
    monkeypatch.setattr(
        guard_module, "signed_by_sender", lambda h: checked.append(h) or real_check(h)
    )
    forged = bytearray(SenderHandshake(laptop).datagram)
    forged[-1] ^= 1
    reasons = Counter()
    for n in range(2000):  # within one second: one address, then a thousand
        addr = ("10.3.0.1", 1000) if n < 1000 else ("10.3.0.2", n)
        with pytest.raises(DroppedPacket) as refused:
            guard.admit(bytes(forged), addr, 0.5)
        reasons[refused.value.reason] += 1
    assert len(checked) == VERIFICATIONS  # PER_ADDRESS from the first, the rest from others
    assert reasons[Drop.HANDSHAKE_FLOOD] == 2000 - VERIFICATIONS
    answer = guard.admit(SenderHandshake(laptop).datagram, ("10.0.0.2", 4000), 1.5)
    assert isinstance(answer, Answer)  # a second later, the budget is back
