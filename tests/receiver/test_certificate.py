"""The web page's certificate and token: made once, kept, private, renewed when asked."""

from __future__ import annotations

import stat

from airmic.receiver.access import Access
from airmic.receiver.tls import load_certificate


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_certificate_is_kept_until_the_address_changes(tmp_path):
    first = load_certificate(tmp_path, ["192.168.1.20"])
    assert mode(first.key) == 0o600
    assert load_certificate(tmp_path, ["192.168.1.20"]).fingerprint == first.fingerprint
    moved = load_certificate(tmp_path, ["10.0.0.5"])  # another network: a name it lacks
    assert moved.fingerprint != first.fingerprint
    assert len(moved.fingerprint.split(":")) == 32


def test_the_token_is_kept_private_and_renewed_on_demand(tmp_path):
    path = tmp_path / "token"
    token = Access.load(path).token
    assert mode(path) == 0o600 and len(token) >= 20
    assert Access.load(path).token == token
    assert Access.load(path, renew=True).token != token
