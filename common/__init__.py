"""airmic's sans-I/O building blocks: audio format, Opus, RTP, jitter buffer, errors. Each
is imported from its own module (nothing here, so that a command loads only what it uses)."""

import logging

logging.getLogger("airmic").addHandler(logging.NullHandler())
