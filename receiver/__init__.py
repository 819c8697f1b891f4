"""airmic's receiver: UDP transport, guard, demux, sessions, sinks, the web server, and the
pipeline behind `airmic-receive` (receiver/pipeline.py)."""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
