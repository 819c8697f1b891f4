"""airmic-send probe: record a few seconds from an input, say what it needs, and print the
airmic-send command that gives it."""

from __future__ import annotations

import argparse
import logging
import shlex

import numpy as np
from rich.table import Table
from rich.text import Text

from airmic.common.audio import RATE, Block
from airmic.common.cli import Parser, add_logging_options, positive_float
from airmic.common.dsp.analysis import TARGET_DB, InputReport, Recommendation, analyse, recommend
from airmic.common.status import OUT, LevelMeter, StatusLine
from airmic.sender.secure import receivers
from airmic.sender.sources import open_source

log = logging.getLogger(__name__)

EPILOG = """\
While it records, clap once, sharply, near the microphone, wait a moment, then talk as you
will when streaming (a sentence or two). Then it reports level and peak, noise floor,
clipping, DC offset, mains hum, bandwidth and polarity (the clap's first peak tells it
surely; the voice's waveform is a guess), and recommends a preset, gain and polarity.

examples:
  airmic-send probe                              the default input, 6 seconds
  airmic-send probe --input device:USB --seconds 10
  airmic-send probe --input file:earbuds-test.wav   analyse a recording instead
"""


ASK = "clap once, wait a moment, then talk"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="airmic-send probe",
        description="Record a few seconds from an input and tell what it needs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-i", "--input", metavar="SPEC", help="as for airmic-send (default: the default input)"
    )
    parser.add_argument("--seconds", type=positive_float, default=6.0, help="how long (default 6)")
    parser.add_argument(
        "--to", metavar="HOST[:PORT]", help="the receiver, for the command it prints"
    )
    add_logging_options(parser)
    return parser


async def record(spec: str | None, seconds: float) -> np.ndarray:
    """`seconds` of audio from the input (a file: as fast as it reads), with a live meter."""
    source = open_source(spec, RATE // 100)
    wanted = round(seconds * RATE)
    meter, got = LevelMeter(), 0
    parts: list[Block] = []

    def status() -> Text:
        line = Text(f"{ASK}  {got / RATE:4.1f}/{seconds:g} s  ", style="bold")
        line.append_text(meter.render())
        return line

    log.info("recording %g s from %s: %s", seconds, source.description, ASK)

    with StatusLine(status):
        async for block in source.blocks():
            block = block[: wanted - got]
            parts.append(block)
            meter.update(block)
            got += len(block)
            if got >= wanted:
                break
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def render(report: InputReport, advice: Recommendation, spec: str | None, to: str | None) -> None:
    table = Table(title="input probe", show_header=False, box=None, padding=(0, 2))
    voice = "none heard" if report.voice_db is None else f"{report.voice_db:.1f} dBFS"
    table.add_row("voice level", f"{voice} (target {TARGET_DB:g} dBFS while speaking)")
    table.add_row("peak", "silence" if report.silent else f"{report.peak_db:.1f} dBFS")
    snr = "" if report.snr_db is None else f" ({report.snr_db:.0f} dB below the voice)"
    table.add_row("noise floor", f"{report.noise_db:.1f} dBFS{snr}")
    table.add_row("clipping", f"{report.clipped} samples" if report.clipped else "none")
    table.add_row("DC offset", f"{report.dc:+.4f}")
    hum = report.hum
    table.add_row(
        "mains hum",
        "none"
        if hum is None
        else f"{hum.mains:g} Hz, {hum.level_db:.0f} dBFS, {len(hum.freqs)} harmonics",
    )
    band = (
        "?"
        if report.low_hz is None or report.high_hz is None
        else f"{report.low_hz:.0f} Hz - {report.high_hz / 1000:.1f} kHz"
    )
    table.add_row("bandwidth", band)
    clap = report.clap
    table.add_row(
        "polarity",
        f"{'inverted' if clap.sign < 0 else 'normal'} (the clap at {clap.at:.1f} s)"
        if clap
        else "? (no clap heard)",
    )
    table.add_row("voice's polarity", str(report.polarity))
    OUT.print(table)
    for reason in advice.reasons:
        OUT.print(f"  - {reason}")
    if report.silent:
        OUT.print("\nrecommended: nothing yet (nothing was heard)")
        return
    command = ["airmic-send"]
    if to or not receivers().all():  # a paired sender finds its receiver by itself
        command += ["--to", to or "RECEIVER"]
    if spec:
        command += ["--input", spec]
    OUT.print(
        f"\nrecommended: [bold]{advice.preset}[/bold]\n  {shlex.join(command + advice.options())}"
    )


async def probe(args: argparse.Namespace) -> int:
    samples = await record(args.input, args.seconds)
    report = analyse(samples)
    render(report, recommend(report), args.input, args.to)
    return 1 if report.silent else 0
