"""Pairing in memory: the right code pairs the two identities, a wrong one fails at the
receiver and counts, keys swapped in between are caught, and the window takes only a few
wrong codes, from any one address and in all."""

from __future__ import annotations

import base64

import pytest

from airmic.common.identity import Identity
from airmic.common.pairing import (
    ATTEMPT_SECONDS,
    FAILURES_PER_ADDRESS,
    MAX_FAILURES,
    PENDING,
    PairingError,
    PairingWindow,
    SenderPairing,
    WrongCode,
    new_code,
    normalize_code,
)

SENDER, RECEIVER = Identity.generate(), Identity.generate()


def attempt(window: PairingWindow, code: str, now: float, source: str = "10.0.0.1"):
    sender = SenderPairing(code, SENDER, "laptop")
    attempt_id, reply = window.begin(RECEIVER, "studio", sender.start(), source, now)
    return sender, attempt_id, reply


def wrong(code: str, n: int = 1) -> str:
    return f"{(int(code) + n) % 10**6:06d}"


def test_the_right_code_pairs_both_identities():
    code = new_code()
    window = PairingWindow(code, expires=300)
    sender, attempt_id, reply = attempt(window, code, now=0)
    paired, proof = window.finish(attempt_id, sender.finish(reply), now=1)
    assert paired.name == "laptop" and paired.key == SENDER.public
    receiver = sender.confirm(proof)
    assert receiver.name == "studio" and receiver.key == RECEIVER.public


def test_a_wrong_code_fails_at_the_receiver_and_counts_once():
    code = new_code()
    window = PairingWindow(code, expires=300)
    sender, attempt_id, reply = attempt(window, wrong(code), now=0)
    with pytest.raises(WrongCode, match="wrong code"):
        window.finish(attempt_id, sender.finish(reply), now=1)
    assert window.failed == 1 and window.left("10.0.0.1") == FAILURES_PER_ADDRESS - 1
    assert window.open(now=2) and not window.attempts


def test_a_key_swapped_in_between_is_caught():
    code = new_code()
    window = PairingWindow(code, expires=300)
    intruder = base64.b64encode(Identity.generate().public).decode()
    sender, attempt_id, reply = attempt(window, code, now=0)
    with pytest.raises(WrongCode):  # the receiver's key, replaced on its way
        window.finish(attempt_id, sender.finish(reply | {"key": intruder}), now=1)
    sender, attempt_id, reply = attempt(window, code, now=2)
    with pytest.raises(WrongCode):  # the sender's, on its way to the receiver
        window.finish(attempt_id, sender.finish(reply) | {"key": intruder}, now=3)
    sender, attempt_id, reply = attempt(window, code, now=4)
    _, proof = window.finish(attempt_id, sender.finish(reply), now=5)
    forged = base64.b64encode(bytes(32)).decode()
    with pytest.raises(PairingError, match="does not check out"):  # the receiver's proof
        sender.confirm(proof | {"mac": forged})


def test_beginnings_test_no_code_and_do_not_count():
    """An attempt that stops before its MAC has seen nothing made with the shared key:
    a crowd of them (kept to the last few) leaves the window as it was."""
    code = new_code()
    window = PairingWindow(code, expires=300)
    for n in range(3 * PENDING):
        attempt(window, wrong(code), now=n * 0.1, source=f"10.0.1.{n}")
    assert window.failed == 0 and len(window.attempts) == PENDING and window.open(now=5)
    sender, attempt_id, reply = attempt(window, code, now=5)
    assert window.finish(attempt_id, sender.finish(reply), now=5)[0].key == SENDER.public


def test_wrong_codes_are_limited_by_address_and_in_all():
    code = new_code()
    window = PairingWindow(code, expires=300)
    for n in range(FAILURES_PER_ADDRESS):
        sender, attempt_id, reply = attempt(window, wrong(code, n + 1), now=n * 2.0)
        with pytest.raises(WrongCode):
            window.finish(attempt_id, sender.finish(reply), now=n * 2.0)
    with pytest.raises(PairingError, match="wrong codes from this address"):
        attempt(window, code, now=10)  # even the right code, from there
    sender, attempt_id, reply = attempt(window, code, now=10, source="10.0.0.2")
    assert window.finish(attempt_id, sender.finish(reply), now=10)[0].key == SENDER.public

    window = PairingWindow(code, expires=300)  # many addresses: the window closes
    for n in range(MAX_FAILURES):
        sender, attempt_id, reply = attempt(window, wrong(code), now=n, source=f"10.0.2.{n}")
        with pytest.raises(WrongCode):
            window.finish(attempt_id, sender.finish(reply), now=n)
    assert not window.open(now=MAX_FAILURES)
    with pytest.raises(PairingError, match="no pairing window"):
        attempt(window, code, now=MAX_FAILURES, source="10.0.3.1")


def test_attempts_not_too_fast_nor_too_slow_nor_too_late():
    code = new_code()
    window = PairingWindow(code, expires=300)
    attempt(window, wrong(code), now=0)
    with pytest.raises(PairingError, match="wait a second"):
        attempt(window, code, now=0.5)
    attempt(window, code, now=0.5, source="10.0.0.2")  # another address is not held up
    sender, attempt_id, reply = attempt(window, code, now=2)
    with pytest.raises(PairingError, match="expired"):
        window.finish(attempt_id, sender.finish(reply), now=2 + ATTEMPT_SECONDS)
    assert window.failed == 0
    with pytest.raises(PairingError, match="no pairing window"):
        attempt(PairingWindow(code, expires=300), code, now=300)


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
            window.begin(RECEIVER, "studio", start, "10.0.0.1", now=second)
    assert window.open(5) and window.failed == 0 and not window.attempts


def test_codes_are_six_digits_however_typed():
    assert normalize_code("123 456") == normalize_code("123-456") == "123456"
    for bad in ("12345", "1234567", "12a456", ""):
        with pytest.raises(PairingError):
            normalize_code(bad)
    assert all(len(new_code()) == 6 for _ in range(100))
