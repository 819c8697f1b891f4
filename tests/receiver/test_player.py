"""A stream's way out, without threads: a second output's feed hands on exactly what the
driver played and counts what it missed; outputs mix what plays."""

from __future__ import annotations

import numpy as np

from airmic.common.playout import Playout
from airmic.receiver.player import Feed, mix
from airmic.receiver.session import Origin, Session


def session() -> Session:
    return Session(Origin("test", encrypted=False), Playout(), 0.0)


def ramp(n: int, start: int = 0) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.float32)


def test_a_feed_hands_on_the_drivers_blocks_in_its_own_block_size():
    feed = Feed(session())
    for k in range(4):
        feed.put(ramp(240, 240 * k))
    out = [feed.beat(480, 0.0, 0.0), feed.beat(480, 0.0, 0.0)]
    assert np.array_equal(np.concatenate(out), ramp(960))
    assert feed.session.gaps == 0


def test_a_feed_counts_the_blocks_its_output_missed():
    feed = Feed(session())
    assert feed.beat(240, 0.0, 0.0) is None  # nothing yet: not a gap, the stream starts
    feed.put(ramp(240))
    assert feed.beat(240, 0.0, 0.0) is not None
    assert feed.beat(240, 0.0, 0.0) is None  # ran dry while playing: a gap
    assert feed.session.gaps == 1 and feed.session.gap_ms == 5.0
    for k in range(20):  # its output stalls: only MAX_QUEUED seconds wait, the rest go
        feed.put(ramp(240, 240 * k))
    assert feed.session.gaps > 1
    kept = feed.beat(240, 0.0, 0.0)
    assert kept is not None and kept[0] > 0  # the newest were kept


def test_outputs_mix_what_plays_and_play_silence_when_nothing_does():
    a, b = np.full(240, 0.25, dtype=np.float32), np.full(240, 0.5, dtype=np.float32)
    assert np.allclose(mix([a, None, b], 240), 0.75)
    assert not mix([None, None], 240).any() and len(mix([], 240)) == 240
