"""airmic's sans-I/O building blocks: audio format, Opus, RTP, jitter buffer, errors."""

import logging

from airmic.common.audio import RATE, Block, Reframer
from airmic.common.delay import LatencyRange, parse_latency
from airmic.common.errors import AirmicError, DeviceError, NetworkError, SourceError, UsageError
from airmic.common.jitter import Frame, FrameKind, JitterBuffer, JitterStats
from airmic.common.opus import OpusConfig, OpusDecoder, OpusEncoder, packet_samples
from airmic.common.playout import Playout
from airmic.common.rtp import Drop, DroppedPacket, MediaPacket, Packetizer, parse_media, unwrap

__all__ = [
    "RATE",
    "AirmicError",
    "Block",
    "DeviceError",
    "Drop",
    "DroppedPacket",
    "Frame",
    "FrameKind",
    "JitterBuffer",
    "JitterStats",
    "LatencyRange",
    "MediaPacket",
    "NetworkError",
    "OpusConfig",
    "OpusDecoder",
    "OpusEncoder",
    "Packetizer",
    "Playout",
    "Reframer",
    "SourceError",
    "UsageError",
    "packet_samples",
    "parse_latency",
    "parse_media",
    "unwrap",
]

logging.getLogger("airmic").addHandler(logging.NullHandler())
