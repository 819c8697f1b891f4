"""Device-to-device latency through the virtual mic, against GStreamer on the same path.

On a private PulseAudio daemon (or, with --server pipewire, a private PipeWire desktop
reached through pipewire-pulse), a minute of chirps (two a second) is played into the null
sink `feed`; the sender captures its monitor (through libpulse, or PortAudio with
`--input device:pulse`), streams it over UDP on loopback, and the
receiver plays it into the virtual mic (airmic) or a null sink (GStreamer). One recorder
takes `feed.monitor` and the mic side by side on one clock; each chirp's delay is where it
turns up in the second channel after the first.

    .venv/bin/python scripts/bench_mic.py [--seconds 60] [--server pulseaudio|pipewire]

Prints a Markdown table; writes out/bench_mic.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import chirp, correlate, find_peaks

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import free_udp_port  # noqa: E402
from tests.pipewire import private_pipewire  # noqa: E402
from tests.pulse import pactl, private_pulseaudio, record_pair  # noqa: E402

RATE = 48_000
BIN = Path(sys.executable).parent
STATS = Path(tempfile.gettempdir()) / f"airmic-bench-mic-{os.getpid()}.json"
CAPS = "application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96"


@dataclass(frozen=True)
class Setup:
    name: str
    sender: list[str]  # command line; {port} is filled in
    receiver: list[str]
    mic: str  # the source the listener records


def setups(port: int, capture: str) -> list[Setup]:
    # Plain RTP, like GStreamer's (SRTP adds microseconds, nothing a chirp could show).
    airmic_send = [str(BIN / "airmic-send"), "--to", f"127.0.0.1:{port}", "--input", capture,
                   "--insecure"]  # fmt: skip
    airmic_receive = [str(BIN / "airmic-receive"), "--listen", f"127.0.0.1:{port}", "-q",
                      "--stats-json", str(STATS), "--insecure"]  # fmt: skip

    def gst_send(frame_ms: int, buffer_us: int, extra: str = "") -> list[str]:
        return (
            f"gst-launch-1.0 pulsesrc device=feed.monitor buffer-time={buffer_us} "
            f"latency-time={buffer_us // 4} ! audio/x-raw,rate=48000,channels=1 ! audioconvert "
            f"! opusenc frame-size={frame_ms} {extra} ! rtpopuspay "
            f"! udpsink host=127.0.0.1 port={port}"
        ).split()

    def gst_receive(latency_ms: int, buffer_us: int) -> list[str]:
        return (
            f"gst-launch-1.0 udpsrc address=127.0.0.1 port={port} caps={CAPS} "
            f"! rtpjitterbuffer latency={latency_ms} ! rtpopusdepay ! opusdec ! audioconvert "
            f"! pulsesink device=gstout buffer-time={buffer_us} latency-time={buffer_us // 4}"
        ).split()

    return [
        Setup("airmic default", airmic_send, [*airmic_receive, "--sink", "virtual"], "airmic"),
        Setup(
            "airmic low latency",
            [*airmic_send, "--frame-ms", "5", "--low-latency"],
            [*airmic_receive, "--sink", "virtual", "--latency", "low"],
            "airmic",
        ),
        Setup(
            "GStreamer default", gst_send(20, 200_000), gst_receive(200, 200_000), "gstout.monitor"
        ),
        Setup(
            "GStreamer tuned",
            gst_send(5, 20_000, "audio-type=restricted-lowdelay"),
            gst_receive(10, 20_000),
            "gstout.monitor",
        ),
    ]


def chirps(seconds: float, folder: Path) -> tuple[Path, np.ndarray]:
    """A 40 ms chirp every half second (after a second of silence); the file and the chirp."""
    t = np.arange(int(0.04 * RATE)) / RATE
    one = (0.5 * chirp(t, 300, t[-1], 6000) * np.hanning(len(t))).astype(np.float32)
    signal_ = np.zeros(int((seconds + 1.5) * RATE), dtype=np.float32)
    for start in range(RATE, len(signal_) - RATE // 2, RATE // 2):
        signal_[start : start + len(one)] = one
    path = folder / "chirps.wav"
    soundfile.write(path, signal_, RATE, subtype="PCM_16")
    return path, one


def onsets(audio: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Where the chirps start, in samples."""
    score = correlate(audio, template, mode="valid", method="fft")
    peaks, _ = find_peaks(score, height=0.3 * score.max(), distance=RATE // 4)
    return peaks


def delays(pair: Path, template: np.ndarray) -> np.ndarray:
    """Each chirp's delay from the first channel of `pair` to the second, in ms."""
    both = soundfile.read(pair, dtype="float32")[0]
    played, heard = onsets(both[:, 0], template), onsets(both[:, 1], template)
    found = []
    for start in played:
        later = heard[(heard >= start) & (heard < start + RATE // 2)]
        if len(later):
            found.append((later[0] - start) / RATE * 1000)
    return np.array(found)


def measure(
    setup: Setup, sound: Path, template: np.ndarray, pulse, folder: Path
) -> tuple[np.ndarray, float | None]:
    """Each chirp's delay (ms), and the end-to-end latency airmic's receiver reported at
    the end of the stream (from the sender's RTCP reports), if it is airmic."""
    pair = folder / "pair.wav"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    receiver = subprocess.Popen(setup.receiver, env=pulse, **quiet)
    time.sleep(2.0)  # start-up: imports, the virtual mic
    recorder = subprocess.Popen(
        record_pair("feed.monitor", setup.mic, pair),
        env=pulse,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert recorder.stdout is not None
    while "PLAYING" not in recorder.stdout.readline():
        pass
    sender = subprocess.Popen(setup.sender, env=pulse, **quiet)
    time.sleep(1.0)
    subprocess.run(["paplay", "--device=feed", str(sound)], env=pulse, check=True)
    time.sleep(0.5)
    # The recorder before the receiver: a receiver that exits takes its mic away, and the
    # recorder that loses a source mid-run ends without finishing its WAV.
    for process in (sender, recorder, receiver):
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    found, reported = delays(pair, template), None
    if STATS.exists():  # airmic: what its jitter buffer held, for the breakdown
        stream = json.loads(STATS.read_text())["streams"][0]
        print(f"    jitter buffer: delay {stream['delay_ms']} ms, target {stream['target_ms']} ms",
              file=sys.stderr)  # fmt: skip
        reported = stream.get("end_to_end_ms")
        STATS.unlink()
    return found, reported


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the chirp track")
    parser.add_argument(
        "--input",
        default="pulse:feed.monitor",
        help="airmic-send's capture: pulse:feed.monitor (libpulse) or device:pulse (PortAudio)",
    )
    parser.add_argument("--only", help="run only the set-ups whose name contains this")
    parser.add_argument("--server", choices=["pulseaudio", "pipewire"], default="pulseaudio",
                        help="the sound server the mic is made on")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        server = private_pipewire() if args.server == "pipewire" else private_pulseaudio(folder)
        pulse = stack.enter_context(server)
        pactl(pulse, "load-module", "module-null-sink", "sink_name=gstout", "rate=48000",
              "channels=1", "format=s16le", "norewinds=1")  # fmt: skip
        sound, template = chirps(args.seconds, folder)
        expected = int(args.seconds * 2)
        for setup in setups(free_udp_port(), args.input):
            if args.only and args.only not in setup.name:
                continue
            print(f"{setup.name}…", file=sys.stderr)
            delays, reported = measure(setup, sound, template, pulse, folder)
            results[setup.name] = {
                "median_ms": float(np.median(delays)) if len(delays) else None,
                "p95_ms": float(np.percentile(delays, 95)) if len(delays) else None,
                "last_ms": float(delays[-1]) if len(delays) else None,
                "reported_ms": reported,
                "found": len(delays),
                "expected": expected,
            }
    print(f"\non {args.server}\n")
    print("| set-up | latency median | p95 | last chirp | the receiver's own figure | chirps |")
    print("|---|---:|---:|---:|---:|---:|")

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f} ms"

    for name, r in results.items():
        print(f"| {name} | {ms(r['median_ms'])} | {ms(r['p95_ms'])} | {ms(r['last_ms'])} "
              f"| {ms(r['reported_ms'])} | {r['found']}/{r['expected']} |")  # fmt: skip
    (args.out / "bench_mic.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
