"""The sender's whole pipeline, wired in one place:

source ─► reframer ─► DSP chain ─► Opus encoder ─┬► RTP packetizer (+ redundant copies) ─► UDP
                                                 └► WebRTC (WHIP, aiortc: RTP, DTLS-SRTP)
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field

import numpy as np
from rich.text import Text

from airmic.common.audio import RATE, Block, Reframer
from airmic.common.dsp import DspSettings
from airmic.common.dsp.chain import Chain, build_chain
from airmic.common.opus import OpusConfig, OpusEncoder
from airmic.common.rtp import DEFAULT_PAYLOAD_TYPE
from airmic.common.status import LevelMeter, StatusLine, meter
from airmic.sender.sources import Pacer, open_source
from airmic.sender.transport import RtpLink
from airmic.sender.webrtc import WhipLink, WhipTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SenderConfig:
    to: tuple[str, int] | WhipTarget  # a receiver's address (RTP/UDP) or its link (WebRTC)
    input: str | None = None  # None: the PulseAudio default source, else the default device
    opus: OpusConfig = field(default_factory=OpusConfig)
    loop: bool = False
    payload_type: int = DEFAULT_PAYLOAD_TYPE
    redundancy: int | None = None  # copies of earlier packets in each (RFC 2198; UDP only);
    # None: as the receiver's reports call for (sender/protection.py)
    max_bandwidth: int | None = None  # bit/s on the wire the copies must fit under
    adaptive_fec: bool = True  # FEC's expected loss from the reports (UDP); else opus's
    duration: float | None = None  # seconds of audio to send; None: until the source ends
    dsp: DspSettings | None = None  # None: no processing at all
    insecure: bool = False  # plain RTP, for peers that are not airmic receivers
    name: str = ""  # in RTCP: the room of a plain stream (default: the host name)


@dataclass
class SenderReport:
    packets: int = 0
    seconds: float = 0.0
    bytes: int = 0
    overflows: int = 0  # times the input lost audio before it was read
    input: LevelMeter = field(default_factory=LevelMeter)
    output: LevelMeter = field(default_factory=LevelMeter)


async def run_sender(config: SenderConfig, stop: asyncio.Event | None = None) -> SenderReport:
    """Stream until the source ends, `config.duration` is reached, or `stop` is set."""
    frame = config.opus.frame_samples
    chain = build_chain(config.dsp, frame) if config.dsp else Chain([])  # preset + overrides
    chain.process(np.zeros(frame, dtype=np.float32))  # load scipy's lazy modules now
    source = open_source(config.input, frame, config.loop)  # capture, in real time
    reframer = Reframer(frame)  # cut into exact Opus frames
    encoder = OpusEncoder(config.opus)  # Opus, VOIP + FEC or low-delay CELT
    behind = encoder.lookahead / RATE + chain.latency_ms / 1000  # capture to packet
    link = await (  # to the receiver
        WhipLink.open(config.to)
        if isinstance(config.to, WhipTarget)
        else RtpLink.open(
            config.to,
            config.payload_type,
            config.redundancy,
            not config.insecure,
            config.name,
            behind=behind,
            expected_loss=None if config.adaptive_fec else config.opus.expected_loss,
            bitrate=config.opus.bitrate,
            cap=config.max_bandwidth,
            rate=1000 / config.opus.frame_ms,
        )
    )
    report = SenderReport()

    def send(block: Block) -> None:
        report.input.update(block)
        block = chain.process(block)
        report.output.update(block)
        link.send(encoder.encode(block), len(block))
        if link.expected_loss is not None and link.expected_loss != encoder.expected_loss:
            encoder.expected_loss = link.expected_loss  # the reports call for more or less
        if link.bitrate is not None and link.bitrate != encoder.bitrate:
            encoder.bitrate = link.bitrate  # copies under the cap: fewer bits for the audio
        report.packets += 1
        report.seconds += len(block) / RATE
        report.overflows = source.overflows  # counted on the capture's own thread

    pacer = None if source.clocked else Pacer()  # a file or tone: one frame at a time
    limit = None if config.duration is None else round(config.duration * RATE / frame)

    async def stream() -> None:
        async for block in source.blocks():
            for piece in reframer.push(block):
                if pacer is not None:
                    await pacer.wait(len(piece))
                send(piece)
                if limit is not None and report.packets >= limit:
                    return

    async def finish(whole: bool) -> None:
        """The end is not cut: the last part of a frame (unless past --duration), then
        silence enough to push the DSP's delay and the encoder's look-ahead out, paced as
        the rest was."""
        tail = reframer.flush()
        blocks = [tail] if tail is not None and whole else []
        blocks += [
            np.zeros(frame, dtype=np.float32) for _ in range(math.ceil(behind * RATE / frame))
        ]
        for block in blocks:
            if pacer is not None:
                await pacer.wait(len(block))
            send(block)

    log.info(
        "sending %s over %s: Opus %s, %g ms frames, %d kbit/s",
        source.description,
        link.description,
        config.opus.application,
        config.opus.frame_ms,
        config.opus.bitrate // 1000,
    )
    log.info("DSP: %s (%.1f ms)", chain.describe(), chain.latency_ms)
    streaming = asyncio.create_task(stream())
    waiters = {streaming} | ({asyncio.create_task(stop.wait())} if stop else set())
    try:
        with StatusLine(lambda: _status(report, chain, link.status())):
            done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            if streaming in done:
                streaming.result()  # raise what the source raised
            # The source's end, --duration, or a stop (Ctrl-C): what was captured goes out.
            await finish(whole=limit is None or report.packets < limit)
    finally:
        streaming.cancel()
        await link.close()
    report.bytes = link.sent_bytes
    rate = report.bytes * 8 / report.seconds / 1000 if report.seconds else 0.0
    log.info(
        "sent %d packets, %.1f s of audio, %.0f kbit/s on the wire%s",
        report.packets - link.dropped,
        report.seconds,
        rate,
        f"; {link.dropped} dropped while not connected" if link.dropped else "",
    )
    if report.overflows:
        log.warning("the input overflowed %d times: that audio was lost before it was sent "
                    "(the machine was too busy to read it)", report.overflows)  # fmt: skip
    heard = link.summary()
    if heard:
        log.info("%s", heard)
    return report


def _status(report: SenderReport, chain: Chain, link: Text) -> Text:
    line = Text("in  ")
    line.append_text(report.input.render())
    line.append(f"   {report.seconds:7.1f} s   {report.packets} packets")
    if report.overflows:
        line.append(f"   input overflowed {report.overflows}x (audio lost)", style="bold red")
    line.append("\nout ")
    line.append_text(meter(report.output.level_db))
    line.append("   " + "   ".join(chain.activity()), style="cyan")
    if link:
        line.append("\n")
        line.append_text(link)
    return line
