"""airmic's sender: sources, UDP and WebRTC links, discovery, pairing, and the pipeline
behind `airmic-send` (sender/pipeline.py)."""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
