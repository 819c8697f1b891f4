"""SRTP for one direction of one stream: AEAD_AES_128_GCM (RFC 7714) through pylibsrtp,
which also keeps the replay window (RFC 3711 section 3.3.2). airmic's UDP streams carry no
RTCP (the receiver's clock follows the packets' timestamps), so there is none to protect;
anything on the port that does not authenticate as SRTP is dropped."""

from __future__ import annotations

import pylibsrtp

from airmic.common.rtp import Drop, DroppedPacket

PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM


class Protector:
    """Encrypts and authenticates what a sender sends."""

    def __init__(self, master: bytes) -> None:
        policy = pylibsrtp.Policy(master, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=PROFILE)
        self._session = pylibsrtp.Session(policy)

    def protect(self, rtp: bytes) -> bytes:
        return self._session.protect(rtp)


class Unprotector:
    """Checks and decrypts what a receiver gets. Raises DroppedPacket."""

    def __init__(self, master: bytes) -> None:
        policy = pylibsrtp.Policy(master, pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=PROFILE)
        self._session = pylibsrtp.Session(policy)

    def unprotect(self, srtp: bytes) -> bytes:
        try:
            return self._session.unprotect(srtp)
        except pylibsrtp.Error as exc:
            replayed = "replay" in str(exc)
            reason = Drop.REPLAYED if replayed else Drop.FORGED
            raise DroppedPacket(reason, f"SRTP: {exc}") from None
