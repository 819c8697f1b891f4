"""SRTP and SRTCP for one direction of one stream: AEAD_AES_128_GCM (RFC 7714) through
pylibsrtp, which also keeps the replay windows (RFC 3711 section 3.3.2). A handshake gives
each stream two master keys (`directions`): the sender's media and reports with one, the
receiver's reports back with the other. Anything on the port that does not authenticate
is dropped."""

from __future__ import annotations

import pylibsrtp

from airmic.common.handshake import MASTER_KEY
from airmic.common.rtp import Drop, DroppedPacket

PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM


def directions(keys: bytes) -> tuple[bytes, bytes]:
    """A handshake's keys: (sender to receiver, receiver to sender)."""
    return keys[:MASTER_KEY], keys[MASTER_KEY : 2 * MASTER_KEY]


class Protector:
    """Encrypts and authenticates what a sender sends."""

    def __init__(self, master: bytes) -> None:
        policy = pylibsrtp.Policy(master, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=PROFILE)
        self._session = pylibsrtp.Session(policy)

    def protect(self, rtp: bytes) -> bytes:
        return self._session.protect(rtp)

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        return self._session.protect_rtcp(rtcp)


class Unprotector:
    """Checks and decrypts what a receiver gets. Raises DroppedPacket."""

    def __init__(self, master: bytes) -> None:
        policy = pylibsrtp.Policy(master, pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=PROFILE)
        self._session = pylibsrtp.Session(policy)

    def unprotect(self, data: bytes, rtcp: bool = False) -> bytes:
        """SRTP, or with `rtcp` SRTCP, checked and decrypted."""
        try:
            if rtcp:
                return self._session.unprotect_rtcp(data)
            return self._session.unprotect(data)
        except pylibsrtp.Error as exc:
            replayed = "replay" in str(exc)
            reason = Drop.REPLAYED if replayed else Drop.FORGED
            raise DroppedPacket(reason, f"SRTP: {exc}") from None


class Keys:
    """One side's keys of a stream: what it sends, protected, and what it gets, checked."""

    def __init__(self, keys: bytes, sender: bool) -> None:
        forward, back = directions(keys)
        self.send = Protector(forward if sender else back)
        self.receive = Unprotector(back if sender else forward)
