"""--room NAME[:gain=6dB,preset=earbuds,mute]: a room's settings, or a clear refusal."""

from __future__ import annotations

import re

import pytest

from airmic.common.errors import UsageError
from airmic.receiver.rooms import Room, parse_room


def test_a_rooms_settings():
    assert parse_room("kitchen") == Room("kitchen")
    room = parse_room("hall:gain=6dB,preset=earbuds,mute")
    assert (room.name, room.gain_db, room.preset, room.muted) == ("hall", 6.0, "earbuds", True)
    assert room.factor == 0.0 and "muted" in room.describe()
    assert parse_room("desk:gain=-6").factor == pytest.approx(0.501, abs=0.001)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (":gain=6dB", "NAME"),
        ("hall:gain=loud", "gain 'loud'"),
        ("hall:gain=60dB", "from -40 to +40 dB"),
        ("hall:preset=tuba", "unknown preset 'tuba'"),
        ("hall:volume=3", "'volume=3'?"),
    ],
)
def test_what_is_refused(text, said):
    with pytest.raises(UsageError, match=re.escape(said)):
        parse_room(text)
