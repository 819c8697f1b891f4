"""How much audio an output keeps queued ahead of its device: the margin that absorbs the
machine's scheduling jitter, as the jitter buffer absorbs the network's.

As small as it can be on a quiet machine; after an underrun (the device ran dry: a gap a
listener heard) one block larger at once; one block smaller again after a calm spell
without one. An output that reports how low its queue fell (`spare`) has a close call
(less than a block left) restart the calm spell, as an underrun does: on a machine that
stays busy, shrinking would only bring the next underrun. Sans-I/O: the output tells it
when, with `now`.
"""

from __future__ import annotations


class Margin:
    """The margin in blocks, between `least` and `most`."""

    def __init__(self, least: int = 1, most: int = 8, calm: float = 20.0) -> None:
        self.least = least
        self.most = most
        self.calm = calm
        self.blocks = least
        self.underruns = 0
        self._since: float | None = None  # the last change, or the first use

    def underrun(self, now: float) -> None:
        """The device ran dry at `now`."""
        self.underruns += 1
        self.blocks = min(self.most, self.blocks + 1)
        self._since = now

    def spare(self, blocks: float, now: float) -> None:
        """The audio still queued when the output came to refill it at `now`, in blocks."""
        if blocks < 1.0:  # a close call: the calm spell starts again
            self._since = now

    def due(self, now: float) -> bool:
        """True when a calm spell has earned one block less: the output shrinks, and says
        so with `shrink`."""
        if self._since is None:
            self._since = now
        return self.blocks > self.least and now - self._since >= self.calm

    def shrink(self, now: float) -> None:
        self.blocks = max(self.least, self.blocks - 1)
        self._since = now
