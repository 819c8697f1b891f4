"""The live status line fits the terminal: a wrapped line would scroll it off the screen."""

from __future__ import annotations

from rich.text import Text

from airmic.common.dsp.dynamics import _reduction
from airmic.common.status import CONSOLE, StatusLine


def test_each_line_is_cut_to_the_terminal_width():
    long = "x" * (CONSOLE.width + 30)
    fitted = StatusLine(lambda: Text(f"{long}\nshort\n{long}"))._fitted()
    lines = fitted.plain.split("\n")
    assert [len(line) for line in lines] == [CONSOLE.width, 5, CONSOLE.width]
    assert lines[0].endswith("…") and lines[1] == "short"


def test_a_reduction_under_half_a_db_reads_idle():
    assert _reduction("limit", -0.3) == "limit idle"
    assert _reduction("limit", 3.2) == "limit -3 dB"
    assert _reduction("comp", -6.0) == "comp -6 dB"
