"""A live status line on the terminal (level meter, counters), shown only on a TTY."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.text import Text

CONSOLE = Console(stderr=True)
"""The terminal both the status line and log messages go through, so they never interleave."""


def meter(level_db: float, width: int = 20) -> Text:
    """A bar for a level in dBFS from -60 to 0, red near full scale."""
    filled = max(0, min(width, round((level_db + 60) / 60 * width)))
    style = "red" if level_db > -3 else "yellow" if level_db > -12 else "green"
    bar = Text("█" * filled, style=style)
    bar.append("·" * (width - filled), style="dim")
    bar.append(f" {level_db:6.1f} dBFS")
    return bar


class StatusLine:
    """Redraws `render()` a few times a second on stderr while open; does nothing when
    stderr is not a terminal (scripts and logs get the summary lines instead)."""

    def __init__(self, render: Callable[[], Text]) -> None:
        self._render = render
        self._live: Live | None = None

    def __enter__(self) -> StatusLine:
        if CONSOLE.is_terminal:
            self._live = Live(
                get_renderable=self._render,
                console=CONSOLE,
                refresh_per_second=8,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()
