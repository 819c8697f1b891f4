"""Benchmark of the DSP chain: time per 10 ms block of each preset, quality of each preset
on the transducer it is for (simulated), and the two noise suppressors compared.

.venv/bin/pip install -e '.[bench]'   # PESQ, STOI, RNNoise for the comparison
.venv/bin/python scripts/bench_dsp.py
"""

from __future__ import annotations

import ctypes
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import soxr
from pesq import pesq
from pystoi import stoi

from airmic.common.dsp import PRESETS
from airmic.common.dsp.chain import build_chain
from airmic.common.dsp.denoise import Denoiser
from scripts.make_speech import make_speech
from tests.audio_match import best_lag
from tests.dsp.test_presets import active_level_db
from tests.transducer import hum_level_db, simulate

RATE = 48_000
BLOCK = 480


def run(process, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Output and mean seconds per 10 ms block."""
    start = time.perf_counter()
    out = [process(x[i : i + BLOCK]) for i in range(0, len(x) - BLOCK + 1, BLOCK)]
    return np.concatenate(out), (time.perf_counter() - start) / len(out)


def scores(ref: np.ndarray, out: np.ndarray) -> tuple[float, float, int]:
    lag = best_lag(np.abs(ref), np.abs(out), 4800)
    out = out[lag:] if lag >= 0 else np.pad(out, (-lag, 0))
    out = np.pad(out[: len(ref)], (0, max(0, len(ref) - len(out))))
    ref16, out16 = soxr.resample(ref, RATE, 16000), soxr.resample(out, RATE, 16000)
    return pesq(16000, ref16, out16, "wb"), stoi(ref16, out16, 16000), lag


def cpu_table(talk: np.ndarray) -> None:
    print("\n## CPU per 10 ms block (encoder excluded), on the speaker-driver signal\n")
    print("| preset | stages | latency | time per block | share of a core |")
    print("|---|---|---:|---:|---:|")
    raw = simulate(talk, "speaker")
    for name, preset in PRESETS.items():
        times = []
        for _ in range(3):
            chain = build_chain(preset)
            times.append(run(chain.process, raw)[1])
        t = min(times)
        print(
            f"| {name} | {chain.describe()} | {chain.latency_ms:.1f} ms | {t * 1e6:.0f} us "
            f"| {t / 0.01 * 100:.1f} % |"
        )


def quality_table(talk: np.ndarray) -> None:
    print("\n## Each preset on the transducer it is for (simulated; scored on the second pass)\n")
    print("| transducer | processing | PESQ-WB | STOI | hum vs voice | voice level | peak |")
    print("|---|---|---:|---:|---:|---:|---:|")
    half = len(talk) // 2
    for kind in ("headphones", "earbuds", "speaker"):
        raw = simulate(talk, kind)
        rows = [("none", raw), ("mic preset", None), (f"{kind} preset", None)]
        for label, out in rows:
            if out is None:
                out = run(build_chain(PRESETS[label.split()[0]]).process, raw)[0]
            p, s, _ = scores(talk[half:], out[half:])
            print(
                f"| {kind} | {label} | {p:.2f} | {s:.3f} | {hum_level_db(out[half:]):.1f} dB "
                f"| {active_level_db(out[half:]):.1f} dBFS | "
                f"{20 * np.log10(np.max(np.abs(out)) + 1e-12):.1f} dBFS |"
            )


def rnnoise(x: np.ndarray) -> tuple[np.ndarray, float]:
    from pyrnnoise.rnnoise import lib  # ctypes binding to librnnoise, 480-sample frames

    state = lib.rnnoise_create(None)

    def process(block: np.ndarray) -> np.ndarray:
        frame = (block * 32768).astype(np.float32)
        pointer = frame.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        lib.rnnoise_process_frame(state, pointer, pointer)
        return frame / 32768

    return run(process, x)


def denoise_table(talk: np.ndarray) -> None:
    print("\n## Noise suppressors on speech in brown noise at 10 dB SNR\n")
    print("| suppressor | PESQ-WB | STOI | delay | time per 10 ms | bandwidth |")
    print("|---|---:|---:|---:|---:|---|")
    rng = np.random.default_rng(1)
    noise = np.cumsum(rng.standard_normal(len(talk))) * 0.02
    noise -= np.convolve(noise, np.ones(4800) / 4800, "same")
    noise += rng.standard_normal(len(talk))
    voiced = talk[np.abs(talk) > 1e-3]
    noise *= np.sqrt(np.mean(voiced**2) / np.mean(noise**2)) * 10 ** (-10 / 20)
    noisy = talk + noise
    p, s, _ = scores(talk, noisy)
    print(f"| none | {p:.2f} | {s:.3f} | | | full |")
    for level in (1, 2, 3, 4):
        out, t = run(Denoiser(level).process, noisy)
        p, s, lag = scores(talk, out)
        print(
            f"| WebRTC level {level} | {p:.2f} | {s:.3f} | {lag / 48:.1f} ms "
            f"| {t * 1e6:.0f} us | to 7.4 kHz |"
        )
    try:
        out, t = rnnoise(noisy)
    except ImportError:
        print("| RNNoise | (pip install pyrnnoise) | | | | |")
        return
    p, s, lag = scores(talk, out)
    print(f"| RNNoise | {p:.2f} | {s:.3f} | {lag / 48:.1f} ms | {t * 1e6:.0f} us | full |")


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        speech = soundfile.read(make_speech(Path(folder) / "speech.wav"), dtype="float64")[0]
    talk = np.concatenate([np.zeros(RATE), speech, speech])
    cpu_table(talk)
    quality_table(talk)
    denoise_table(talk)
    return 0


if __name__ == "__main__":
    sys.exit(main())
