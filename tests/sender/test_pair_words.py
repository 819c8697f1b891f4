"""airmic-send pair [RECEIVER] CODE: the code as the receiver shows it or as typed."""

from __future__ import annotations

import pytest

from airmic.common.errors import UsageError
from airmic.sender.pairing import split_words


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["882", "039"], (None, "882039")),
        (["882039"], (None, "882039")),
        (["882-039"], (None, "882039")),
        (["vm", "882", "039"], ("vm", "882039")),
        (["192.168.1.20:5004", "882039"], ("192.168.1.20:5004", "882039")),
        (["1", "882039"], ("1", "882039")),  # a receiver named "1"
    ],
)
def test_the_code_as_shown_or_typed(words, expected):
    assert split_words(words) == expected


@pytest.mark.parametrize(
    ("words", "error"),
    [
        (["12345"], "6 digits"),
        (["vm", "12", "345"], "6 digits"),
        (["vm", "abc"], "6 digits"),
        (["a", "b", "123456"], "too many words"),
    ],
)
def test_what_is_not_a_code_is_refused(words, error):
    with pytest.raises(UsageError, match=error):
        split_words(words)
