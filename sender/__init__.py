"""airmic's sender: sources, UDP transport and the pipeline behind `airmic-send`."""

import logging

from airmic.sender.pipeline import SenderConfig, SenderReport, run_sender
from airmic.sender.sources import open_source

__all__ = ["SenderConfig", "SenderReport", "open_source", "run_sender"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
