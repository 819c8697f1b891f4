"""The installation's identity on disk: made once, never silently replaced when damaged,
and kept readable by the user only."""

from __future__ import annotations

import logging
import stat

import pytest

from airmic.common.errors import UsageError
from airmic.common.identity import KEY_FILE, load_identity
from airmic.receiver.access import Access


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_made_once_then_the_same(tmp_path):
    first = load_identity(tmp_path)
    assert mode(tmp_path / KEY_FILE) == 0o600
    assert load_identity(tmp_path).public == first.public


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_identity_is_refused_and_left_as_it_is(tmp_path, damage):
    load_identity(tmp_path)
    path = tmp_path / KEY_FILE
    good = path.read_bytes()
    bad = {"truncated": good[: len(good) // 2], "garbage": b"\xff" * 40, "empty": b""}[damage]
    path.write_bytes(bad)
    with pytest.raises(UsageError, match=r"damaged.*restore it from a backup"):
        load_identity(tmp_path)
    assert path.read_bytes() == bad  # nothing replaced: the user decides


def test_secrets_readable_by_others_are_made_private_and_said(tmp_path, caplog):
    identity = load_identity(tmp_path)
    token = Access.load(tmp_path / "token").token
    for name in (KEY_FILE, "token"):
        (tmp_path / name).chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert load_identity(tmp_path).public == identity.public
        assert Access.load(tmp_path / "token").token == token
    for name in (KEY_FILE, "token"):
        assert mode(tmp_path / name) == 0o600
        assert f"{name} was readable by others (mode 0644)" in caplog.text
