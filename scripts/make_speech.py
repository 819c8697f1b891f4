"""Write a speech sample (espeak-ng), 48 kHz mono 16-bit WAV, for the demo and the tests.

python scripts/make_speech.py OUT.wav [--voice en] [--text "..."]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import soxr

TEXT = (
    "Hello, this is airmic, a wireless microphone. The quick brown fox jumps over the "
    "lazy dog. Seven, eight, nine, ten."
)


def make_speech(out: Path, text: str = TEXT, voice: str = "en") -> Path:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng is missing: scripts/setup installs it")
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "raw.wav"
        subprocess.run([espeak, "-v", voice, "-s", "150", "-w", str(raw), text], check=True)
        data, rate = soundfile.read(raw, dtype="float32")
    data = soxr.resample(data, rate, 48_000)
    data = 0.5 * data / np.max(np.abs(data))  # peaks at -6 dBFS
    soundfile.write(out, data, 48_000, subtype="PCM_16")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--voice", default="en")
    parser.add_argument("--text", default=TEXT)
    args = parser.parse_args()
    make_speech(args.out, args.text, args.voice)


if __name__ == "__main__":
    sys.exit(main())
