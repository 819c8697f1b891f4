"""The sender's protection and the receiver's playout in one loop, in virtual time: the
receiver's reports (RFC 3550 statistics of what arrived) set the copies, the copies set
what the playout gets back, on seeded network profiles."""

from __future__ import annotations

import numpy as np

from airmic.common.impair import PROFILES
from airmic.common.playout import Playout
from airmic.common.rtp import parse_media
from airmic.common.virtual import play_trace
from airmic.sender.virtual import Trace, send

SECONDS = 20.0


def speech_for(speech: np.ndarray) -> np.ndarray:
    n = int(SECONDS * 48_000)
    return np.tile(speech, n // len(speech) + 1)[:n]


def play(trace: Trace) -> Playout:
    playout = Playout()
    play_trace(playout, [(t, parse_media(d)) for t, d in trace.arrivals])
    return playout


def test_a_clean_network_costs_no_copies(speech_samples):
    speech = speech_for(speech_samples)
    adaptive = send(speech, PROFILES["clean"].seeded(1))
    fixed = send(speech, PROFILES["clean"].seeded(1), redundancy=1)
    print(f"\n{adaptive.levels}: {adaptive.wire_kbits:.0f} against {fixed.wire_kbits:.0f} kbit/s")
    assert adaptive.levels[-1].startswith("3 s: 0 copies")
    assert adaptive.wire_kbits < 0.8 * fixed.wire_kbits


def test_random_loss_gets_the_copy_before(speech_samples):
    trace = send(speech_for(speech_samples), PROFILES["loss-5"].seeded(1))
    print(f"\n{trace.levels}")
    assert "reaching" not in " ".join(trace.levels)  # lone losses: copies in a row at most
    stats = play(trace).jitter.stats
    assert stats.lost < 0.1 * (stats.lost + stats.repaired)  # nine in ten came back exact


def test_bursts_get_copies_that_reach_over_them(speech_samples):
    """10 % loss in bursts of 3 on average: the copies reach back over the bursts and the
    playout waits for them, so far fewer packets are lost for good than with the one copy
    of a stream that does not adapt, and fewer than with three copies in a row, for their
    bytes."""
    speech = speech_for(speech_samples)
    adaptive = send(speech, PROFILES["bursty-10"].seeded(1))
    one = send(speech, PROFILES["bursty-10"].seeded(1), redundancy=1)
    three = send(speech, PROFILES["bursty-10"].seeded(1), redundancy=3)
    lost = {name: play(t).jitter.stats.lost for name, t in
            (("adaptive", adaptive), ("one", one), ("three", three))}  # fmt: skip
    print(f"\n{adaptive.levels}\nlost for good: {lost}; kbit/s: adaptive "
          f"{adaptive.wire_kbits:.0f}, three {three.wire_kbits:.0f}")  # fmt: skip
    assert "reaching" in adaptive.levels[-1]
    assert lost["adaptive"] < 0.25 * lost["one"] and lost["adaptive"] < 0.6 * lost["three"]


def test_a_cap_holds_the_bytes_on_the_wire_with_the_copies(speech_samples):
    speech = speech_for(speech_samples)
    capped = send(speech, PROFILES["bursty-10"].seeded(1), cap=160_000)
    free = send(speech, PROFILES["bursty-10"].seeded(1))
    lost = {name: play(t).jitter.stats.lost for name, t in (("capped", capped), ("free", free))}
    print(f"\n{capped.wire_kbits:.0f} against {free.wire_kbits:.0f} kbit/s; lost {lost}")
    assert capped.wire_kbits <= 160 * 1.02 < free.wire_kbits  # Opus's VBR: a little over
    assert lost["capped"] <= lost["free"] + 5  # the same copies, at a lower bitrate
