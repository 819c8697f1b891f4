"""Pairing in memory: the right code pairs the two identities, a wrong one fails on both
sides, keys swapped in between are caught, and the window allows only a few attempts."""

from __future__ import annotations

import base64

import pytest

from airmic.common.identity import Identity
from airmic.common.pairing import (
    MAX_ATTEMPTS,
    PairingError,
    PairingWindow,
    SenderPairing,
    new_code,
    normalize_code,
)

SENDER, RECEIVER = Identity.generate(), Identity.generate()


def attempt(window: PairingWindow, code: str, now: float):
    sender = SenderPairing(code, SENDER, "laptop")
    attempt_id, reply = window.begin(RECEIVER, "studio", sender.start(), now)
    return sender, attempt_id, reply


def test_the_right_code_pairs_both_identities():
    code = new_code()
    window = PairingWindow(code, expires=300)
    sender, attempt_id, reply = attempt(window, code, now=0)
    finish, receiver = sender.finish(reply)
    assert receiver.name == "studio" and receiver.key == RECEIVER.public
    paired = window.finish(attempt_id, finish, now=1)
    assert paired.name == "laptop" and paired.key == SENDER.public


def test_a_wrong_code_fails_on_the_sender_and_on_the_receiver():
    code = new_code()
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    window = PairingWindow(code, expires=300)
    sender, attempt_id, reply = attempt(window, wrong, now=0)
    finish, receiver = sender.finish(reply)
    assert receiver is None  # the receiver's proof does not check out
    with pytest.raises(PairingError, match="wrong code"):
        window.finish(attempt_id, finish, now=1)  # nor the sender's
    assert window.failed == 1 and window.open(now=2)


def test_a_key_swapped_in_between_is_caught():
    code = new_code()
    window = PairingWindow(code, expires=300)
    sender, attempt_id, reply = attempt(window, code, now=0)
    intruder = Identity.generate()
    swapped = reply | {"key": base64.b64encode(intruder.public).decode()}
    assert sender.finish(swapped)[1] is None  # the receiver's key, replaced on its way
    sender, attempt_id, reply = attempt(window, code, now=2)
    finish, _ = sender.finish(reply)
    swapped = finish | {"key": base64.b64encode(intruder.public).decode()}
    with pytest.raises(PairingError):
        window.finish(attempt_id, swapped, now=3)  # the sender's, on its way to the receiver


def test_the_window_allows_a_few_attempts_not_too_fast_nor_too_late():
    code = new_code()
    window = PairingWindow(code, expires=300)
    attempt(window, "000000", now=0)
    with pytest.raises(PairingError, match="wait a second"):
        attempt(window, code, now=0.5)
    for n in range(1, MAX_ATTEMPTS):
        attempt(window, "000000", now=n * 2.0)
    with pytest.raises(PairingError, match="no pairing window"):
        attempt(window, code, now=100)  # even the right code: the window closed
    assert not window.over(now=100)  # until the attempts under way are finished
    for attempt_id in list(window.attempts):
        with pytest.raises(PairingError):
            window.finish(attempt_id, {"key": "", "mac": ""}, now=101)
    assert window.over(now=101)
    late = PairingWindow(code, expires=300)
    with pytest.raises(PairingError, match="no pairing window"):
        attempt(late, code, now=300)


@pytest.mark.parametrize(
    "start",
    [
        None,
        {},
        {"name": "x"},
        {"name": "x", "spake": "!!"},
        {"name": "x", "spake": "AAAA"},
        {"name": 3, "spake": "AAAA"},
        [1, 2],
    ],
)
def test_malformed_messages_are_refused_and_do_not_close_the_window(start):
    window = PairingWindow(new_code(), expires=300)
    for second in range(5):
        with pytest.raises(PairingError, match="malformed"):
            window.begin(RECEIVER, "studio", start, now=second)
    assert window.open(5) and window.started == 0


def test_codes_are_six_digits_however_typed():
    assert normalize_code("123 456") == normalize_code("123-456") == "123456"
    for bad in ("12345", "1234567", "12a456", ""):
        with pytest.raises(PairingError):
            normalize_code(bad)
    assert all(len(new_code()) == 6 for _ in range(100))
