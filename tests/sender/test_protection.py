"""The sender's protection from the receiver's reports, in virtual time (a report a
second): none on a clean network; when it loses, copies spaced to reach back over the
bursts, and FEC at its floor while the copies adapt; given back a step at a time once it
has been clean."""

from __future__ import annotations

import pytest

from airmic.common import rtcp
from airmic.common.red import spaced
from airmic.sender.protection import CALM, FIRST_CALM, Protection, reach_for


def run(protection: Protection, reports: list[tuple[float, float]], start: float = 0.0):
    """Feed one report a second; the level after each."""
    levels = []
    for i, (lost, burst) in enumerate(reports):
        protection.report(lost, burst, start + i + 1.0)
        levels.append(protection.level)
    return levels


def test_a_clean_network_gets_no_copies_and_little_fec():
    protection = Protection(None, None, now=0.0)
    assert (protection.level.copies, protection.level.expected_loss) == (1, 1)
    levels = run(protection, [(0.0, 0.0)] * 35)
    assert levels[round(FIRST_CALM) - 2].copies == 1  # a clean second is not trusted at once
    assert levels[round(FIRST_CALM) - 1].copies == 0 and levels[-1].copies == 0
    assert levels[-1].expected_loss == 1


def test_random_loss_gets_one_copy_and_bursts_copies_that_reach_over_them():
    protection = Protection(None, None, now=0.0)
    run(protection, [(0.0, 0.0)] * 25)  # clean first: no copies
    assert protection.level.copies == 0
    (level,) = run(protection, [(0.05, 1.0)], start=25.0)
    assert (level.copies, level.reach, level.expected_loss) == (1, 1, 1)
    # Bursts of 3 on average (geometric): 90 % of their packets are in their last 6.
    levels = run(protection, [(0.10, 3.0)] * 8, start=26.0)
    assert levels[-1].reach == reach_for(3.0) == 6 and levels[-1].copies == 3
    assert spaced(levels[-1].copies, levels[-1].reach) == (1, 3, 6)
    assert all(lv.expected_loss == 1 for lv in levels)  # the copies do FEC's work, exact
    # One long burst in a second moves the reach only part of the way.
    (level,) = run(protection, [(0.10, 5.0)], start=34.0)
    assert 6 < level.reach < reach_for(5.0)
    levels = run(protection, [(0.0, 0.0)] * 31, start=35.0)  # clean again: half each CALM
    reach = level.reach
    assert [lv.reach for lv in levels[:: round(CALM)]] == [
        reach,
        reach // 2,
        reach // 4,
        reach // 8,
    ]
    assert levels[-1].copies == 0


@pytest.mark.parametrize(("burst", "reach"), [(1.0, 1), (1.5, 3), (2.0, 4), (3.0, 6), (5.0, 8)])
def test_the_reach_covers_nine_tenths_of_geometric_bursts(burst, reach):
    assert reach_for(burst) == reach


def test_fec_follows_the_loss_when_the_user_fixed_the_copies():
    protection = Protection(0, None, now=0.0)
    assert protection.level.expected_loss == 10
    (level,) = run(protection, [(0.10, 1.0)])
    assert level.copies is None and level.expected_loss == 15


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


def test_under_a_cap_the_copies_take_their_bytes_from_the_audio():
    protection = Protection(None, None, now=0.0, bitrate=64_000, cap=160_000, rate=100.0)
    assert protection.level.bitrate == 62_000  # a copy and 100 x 45 bytes fit beside 62k
    (level,) = run(protection, [(0.10, 3.0)])
    # 3 copies reaching 6 back: 4 x the audio and 100 x (41 + 24) bytes of headers a second
    assert (level.copies, level.reach) == (3, 6) and level.bitrate == 27_000
    assert 4 * level.bitrate + 100 * 8 * (41 + 4 * 6) <= 160_000
    tight = Protection(None, None, now=0.0, bitrate=64_000, cap=100_000, rate=100.0)
    (level,) = run(tight, [(0.10, 3.0)])
    assert level.copies == 2 and level.bitrate == 16_000  # 16k each: fewer copies first
    assert "Opus at 16 kbit/s" in level.describe()
