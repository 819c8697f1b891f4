"""The DSP chain for makeshift transducers: filters, hum removal, noise suppression,
dynamics, presets, and the analysis behind the input probe.

Only what the commands' options need is imported here (settings, presets: no numpy, no
scipy, so that --help is instant); the chain itself is `airmic.common.dsp.chain`."""

from airmic.common.dsp.presets import PRESETS, add_dsp_options, settings, settings_from_args
from airmic.common.dsp.settings import DspSettings, EqBand

__all__ = ["PRESETS", "DspSettings", "EqBand", "add_dsp_options", "settings", "settings_from_args"]
