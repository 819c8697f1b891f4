"""A live status line on the terminal (level meter, counters), shown only on a TTY."""

from __future__ import annotations

import math
from collections.abc import Callable
from types import TracebackType

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.text import Text

from airmic.common.audio import RATE, Block, level_dbfs

CONSOLE = Console(stderr=True)
"""The terminal both the status line and log messages go through, so they never interleave."""
OUT = Console(soft_wrap=True)
"""A command's result (a report, a listing): stdout, for pipes and scripts."""


def meter(level_db: float, width: int = 20) -> Text:
    """A bar for a level in dBFS from -60 to 0, red near full scale."""
    filled = max(0, min(width, round((level_db + 60) / 60 * width)))
    style = "red" if level_db > -3 else "yellow" if level_db > -12 else "green"
    bar = Text("█" * filled, style=style)
    bar.append("·" * (width - filled), style="dim")
    bar.append(f" {level_db:6.1f} dBFS")
    return bar


class LevelMeter:
    """Level, peak hold and a clip indicator over the blocks it is given (the hold times
    count samples, not wall-clock time)."""

    HOLD = RATE * 3 // 2  # the peak holds for 1.5 s
    CLIP_HOLD = RATE * 2  # a clip stays lit for 2 s

    def __init__(self) -> None:
        self.level_db = -120.0
        self.peak_db = -120.0
        self.clips = 0
        self._peak_age = 0
        self._clip_age = self.CLIP_HOLD

    def update(self, block: Block) -> None:
        self.level_db = level_dbfs(block)
        peak = float(np.max(np.abs(block), initial=0.0))
        peak_db = 20 * math.log10(peak + 1e-12)
        self._peak_age += len(block)
        if peak_db >= self.peak_db or self._peak_age > self.HOLD:
            self.peak_db, self._peak_age = peak_db, 0
        self._clip_age += len(block)
        if peak >= 0.999:
            self.clips += 1
            self._clip_age = 0

    @property
    def clipping(self) -> bool:
        return self._clip_age < self.CLIP_HOLD

    def render(self, width: int = 20) -> Text:
        line = meter(self.level_db, width)
        line.append(f"  peak {self.peak_db:6.1f}")
        line.append("  CLIP" if self.clipping else "      ", style="bold red")
        return line


class StatusLine:
    """Redraws `render()` a few times a second on stderr while open; does nothing when
    stderr is not a terminal (scripts and logs get the summary lines instead)."""

    def __init__(self, render: Callable[[], Text]) -> None:
        self._render = render
        self._live: Live | None = None

    def __enter__(self) -> StatusLine:
        if CONSOLE.is_terminal:
            self._live = Live(
                get_renderable=self._fitted,
                console=CONSOLE,
                refresh_per_second=8,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        return self

    def _fitted(self) -> Text:
        """Each line cut to the terminal's width (a wrapped line would scroll the status
        line off), with an ellipsis where it was cut."""
        lines = self._render().split("\n")
        for line in lines:
            line.truncate(CONSOLE.width, overflow="ellipsis")
        return Text("\n").join(lines)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()
