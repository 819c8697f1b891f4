"""airmic's receiver: UDP transport, demux, sessions, sinks and the pipeline behind
`airmic-receive`."""

import logging

from airmic.receiver.pipeline import Receiver, ReceiverConfig, run_receiver
from airmic.receiver.sinks import parse_sink

__all__ = ["Receiver", "ReceiverConfig", "parse_sink", "run_receiver"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
