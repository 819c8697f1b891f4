"""Logging for per-packet trouble: the first of each kind is logged, the rest only counted."""

from __future__ import annotations

import logging
from collections import Counter


class OnceLogger:
    """Counts problems by kind and logs each kind once (python-zeroconf's QuietLogger idea)."""

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING) -> None:
        self.logger = logger
        self.level = level
        self.counts: Counter[str] = Counter()

    def report(self, kind: str, msg: str, *args: object) -> None:
        """Count one problem of `kind`; log it if it is the first of its kind."""
        self.counts[kind] += 1
        if self.counts[kind] == 1:
            self.logger.log(self.level, msg + " (further ones are counted, not logged)", *args)
        else:
            self.logger.debug(msg, *args)
