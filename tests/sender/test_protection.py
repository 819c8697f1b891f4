"""The sender's protection from the receiver's reports, in virtual time (a report a
second): none on a clean network, copies as long as the bursts and FEC for the loss when
it loses, given back a step at a time once it has been clean."""

from __future__ import annotations

from airmic.common import rtcp
from airmic.sender.protection import CALM, Protection


def run(protection: Protection, reports: list[tuple[float, float]], start: float = 0.0):
    """Feed one report a second; the level after each."""
    levels = []
    for i, (lost, burst) in enumerate(reports):
        protection.report(lost, burst, start + i + 1.0)
        levels.append(protection.level)
    return levels


def test_a_clean_network_gets_no_copies_and_little_fec():
    protection = Protection(None, None, now=0.0)
    assert (protection.level.copies, protection.level.expected_loss) == (1, 10)
    levels = run(protection, [(0.0, 0.0)] * 35)
    assert levels[round(CALM) - 2].copies == 1  # a clean second is not trusted at once
    assert levels[round(CALM) - 1].copies == 0 and levels[-1].copies == 0
    assert levels[-1].expected_loss == 1


def test_random_loss_gets_one_copy_and_bursts_as_many_as_they_are_long():
    protection = Protection(None, None, now=0.0)
    run(protection, [(0.0, 0.0)] * 25)  # clean first: no copies
    assert protection.level.copies == 0
    (level,) = run(protection, [(0.05, 1.0)], start=25.0)
    assert level.copies == 1 and level.expected_loss == 8
    (level,) = run(protection, [(0.10, 2.6)], start=26.0)
    assert level.copies == 3 and level.expected_loss == 15
    levels = run(protection, [(0.0, 0.0)] * 31, start=27.0)  # clean again: a step each CALM
    assert [lv.copies for lv in levels[:: round(CALM)]] == [3, 2, 1, 0]


def test_what_the_user_fixed_is_not_adapted():
    protection = Protection(2, 5, now=0.0)
    assert run(protection, [(0.2, 3.0), *[(0.0, 0.0)] * 30]) == [protection.level] * 31
    assert protection.level.copies is None and protection.level.expected_loss is None


def test_the_receiver_measures_the_runs_of_lost_packets():
    reception = rtcp.Reception()
    for seq in (1, 2, 6, 7, 9, 10):  # 3 lost in a row, then 1
        reception.packet(seq, seq * 480, seq * 0.01)
    reception.block(0xABC, 0.1)
    assert reception.burst == 2.0
    reception.packet(11, 11 * 480, 0.11)
    reception.block(0xABC, 0.2)
    assert reception.burst == 0.0
