"""The DSP chain for makeshift transducers: filters, hum removal, noise suppression,
dynamics, presets, and the analysis behind the input probe."""

from airmic.common.dsp.chain import Chain, DspSettings, Stage, build_chain
from airmic.common.dsp.filters import EqBand
from airmic.common.dsp.presets import PRESETS, add_dsp_options, settings, settings_from_args

__all__ = [
    "PRESETS",
    "Chain",
    "DspSettings",
    "EqBand",
    "Stage",
    "add_dsp_options",
    "build_chain",
    "settings",
    "settings_from_args",
]
