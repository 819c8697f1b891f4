"""An output's margin in virtual time: it grows at once with each underrun, and comes back
down one block per calm spell, never below its least."""

from __future__ import annotations

from airmic.common.margin import Margin


def test_the_margin_grows_with_underruns_and_shrinks_after_calm_spells():
    margin = Margin(least=1, most=3, calm=20.0)
    assert margin.blocks == 1 and not margin.due(0.0)
    for at in (1.0, 2.0, 3.0, 4.0):
        margin.underrun(at)
    assert margin.blocks == 3 and margin.underruns == 4  # capped at `most`
    assert not margin.due(23.9)  # 20 s after the last underrun, not before
    assert margin.due(24.0)
    margin.shrink(24.0)
    assert margin.blocks == 2 and not margin.due(43.9) and margin.due(44.0)
    margin.shrink(44.0)
    assert margin.blocks == 1 and not margin.due(1000.0)  # the least is kept
    margin.underrun(1001.0)
    assert margin.blocks == 2


def test_a_close_call_restarts_the_calm_spell():
    """An output that reports how low its queue fell: a moment with less than a block left
    counts as an underrun would for the calm spell, without growing the margin."""
    margin = Margin(least=1, most=4, calm=20.0)
    margin.underrun(0.0)
    margin.underrun(1.0)
    for at in range(2, 30):
        margin.spare(2.5 if at != 15 else 0.6, float(at))  # at 15 s: 0.6 blocks left
    assert margin.blocks == 3 and not margin.due(34.9)
    assert margin.due(35.0)  # 20 s after the close call
    margin.shrink(35.0)
    margin.spare(1.0, 40.0)  # a block left: not a close call
    assert margin.blocks == 2 and margin.due(55.0)
