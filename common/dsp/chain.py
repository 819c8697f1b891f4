"""The DSP chain: settings (a preset plus overrides), and the chain of stages built from
them. Sans-I/O: blocks in, blocks out, on the caller's thread.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from airmic.common.audio import RATE, Block
from airmic.common.dsp.denoise import Denoiser
from airmic.common.dsp.dynamics import Agc, Compressor, Gain, Gate, Invert, Limiter
from airmic.common.dsp.filters import Samples, SosFilter, dc_blocker, equaliser, high_pass
from airmic.common.dsp.hum import HumFilter
from airmic.common.dsp.settings import DspSettings


class Stage(Protocol):
    name: str
    latency: int  # samples this stage delays the signal by

    def process(self, block: Samples) -> Samples: ...


class Chain:
    """The stages of a DspSettings, in their fixed order; `process` runs a block through."""

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages
        self.latency = sum(stage.latency for stage in stages)  # samples

    def process(self, block: Block) -> Block:
        data: Samples = block.astype(np.float64)
        for stage in self.stages:
            data = stage.process(data)
        return data.astype(np.float32)

    @property
    def latency_ms(self) -> float:
        return self.latency * 1000 / RATE

    def activity(self) -> list[str]:
        """What the adaptive stages are doing now (gate open, gain reduction), for meters."""
        return [
            stage.activity()  # type: ignore[attr-defined]
            for stage in self.stages
            if hasattr(stage, "activity")
        ]

    def describe(self) -> str:
        return " > ".join(stage.name for stage in self.stages) or "off"


def build_chain(settings: DspSettings, block: int = RATE // 100) -> Chain:
    """The chain for `settings`, for blocks of `block` samples (10 ms unless told)."""
    s = settings
    stages: list[Stage] = []
    if s.dc:
        stages.append(SosFilter("dc", dc_blocker()))  # offset and drift out first
    if s.invert:
        stages.append(Invert())  # a driver wired the other way round
    if s.gain_db:
        stages.append(Gain(s.gain_db))  # a driver gives 10-30 dB less than a mic
    if s.highpass:
        stages.append(SosFilter("highpass", high_pass(s.highpass)))  # rumble, boom
    if s.hum != "off":
        stages.append(HumFilter(None if s.hum == "auto" else float(s.hum)))  # ground loops
    if s.eq:
        stages.append(SosFilter("eq", equaliser(s.eq)))  # give back presence and air
    if s.denoise:
        stages.append(Denoiser(s.denoise, block))  # hiss and room noise the gain raised
    if s.gate:
        stages.append(Gate(s.gate_open_db, s.gate_close_db))  # what is left, between words
    if s.compressor:
        stages.append(Compressor())  # loud syllables down, so the limiter rarely works
    if s.agc is not None:
        stages.append(Agc(s.agc))  # the voice to a steady level, whatever came before
    if s.limiter:
        stages.append(Limiter())  # never a clipped sample into the encoder
    return Chain(stages)
