"""How many streams one receiver carries: airmic-receive against GStreamer, on this machine.

N plain Opus streams (10 ms frames, the same speech, no copies) are sent in real time
from one paced sender thread, each from its own socket, first to one airmic-receive
writing a WAV file per stream, then to one with `--workers` (one process a core by
default), then to one gst-launch-1.0 with N branches of
`udpsrc ! rtpjitterbuffer ! rtpopusdepay ! opusdec ! wavenc` (the reference pipeline in
DESIGN.md). For each: the receiver's CPU over the sending window (% of one core, from
/proc, its workers' included), and for each stream the share of the speech it covered
and its longest gap against the input. Also an idle airmic-receive's CPU. Prints a
Markdown table and writes JSON. Loopback only; every run is bounded by --seconds.

    .venv/bin/python scripts/bench_scale.py [--streams 1,8,16,32,50] [--seconds 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from airmic.common.opus import OpusConfig, OpusEncoder  # noqa: E402
from airmic.common.rtp import Packetizer  # noqa: E402
from scripts.bench_cpu import cpu_seconds, free_port  # noqa: E402
from scripts.make_speech import make_speech  # noqa: E402
from tests.audio_match import match  # noqa: E402

BIN = Path(sys.executable).parent
CAPS = "application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96"
FRAME = 480
WORKERS = "airmic --workers"


def encode(speech: np.ndarray, seconds: float) -> list[bytes]:
    """Opus packets of `seconds` of the speech, looped."""
    frames = round(seconds * 100)
    loop = np.tile(speech, frames * FRAME // len(speech) + 1)
    encoder = OpusEncoder(OpusConfig())
    return [encoder.encode(loop[i * FRAME : (i + 1) * FRAME]) for i in range(frames)]


def send(
    payloads: list[bytes], targets: list[tuple[str, int]], sources: list[str] | None = None
) -> None:
    """Each target gets its own stream (socket, SSRC) of `payloads`, every 10 ms; from the
    address `sources[n]` if given (a loopback address of its own: a room of its own)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in targets]
    for sock, source in zip(sockets, sources or [], strict=False):
        sock.bind((source, 0))
    packetizers = [Packetizer(ssrc=1000 + n) for n in range(len(targets))]
    datagrams = [[p.packetize(payload, FRAME) for payload in payloads] for p in packetizers]
    start = time.monotonic() + 0.05
    for i in range(len(payloads)):
        delay = start + i * 0.01 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for sock, target, stream in zip(sockets, targets, datagrams, strict=True):
            sock.sendto(stream[i], target)
    for sock in sockets:
        sock.close()


def measured(process: subprocess.Popen, payloads: list[bytes], targets, sources=None) -> float:
    """Send, and the process's CPU share over the sending window."""
    sender = threading.Thread(target=send, args=(payloads, targets, sources))
    before, t0 = cpu_seconds(process.pid), time.monotonic()
    sender.start()
    sender.join()
    return 100 * (cpu_seconds(process.pid) - before) / (time.monotonic() - t0)


def coverage(reference: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """The share of the reference's sounding 10 ms frames heard, and the longest gap (ms)."""
    if not len(out):
        return 0.0, len(reference) / 48
    result = match(reference, out, max_lag=48_000)
    frames = len(reference) // FRAME
    power = [(x[: frames * FRAME].reshape(frames, FRAME) ** 2).mean(axis=1) for x in
             (reference, result.aligned)]  # fmt: skip
    sounding = power[0] > 1e-4
    heard = sounding & (power[1] > 0.01 * power[0])
    return float(heard.sum() / max(1, sounding.sum())), result.longest_gap * 10.0


def airmic(n: int, payloads, reference, folder: Path, workers: int = 0) -> dict:
    port = free_port()
    out = folder / f"airmic-{n}-{workers}"
    out.mkdir()
    receiver = subprocess.Popen(
        [BIN / "airmic-receive", "--listen", f"127.0.0.1:{port}", "--insecure",
         "--no-advertise", "--web", "off", "--max-streams", str(n), "--sink",
         f"wav:{out}/stream.wav", "--exit-after-idle", "3", "--workers", str(workers)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert receiver.stderr is not None
    while "listening on" not in receiver.stderr.readline():
        pass
    # Each stream from a loopback address of its own: a receiver takes only a few plain
    # streams from one host (a device churning SSRCs must not lock others out).
    sources = [f"127.0.{1 + i // 200}.{10 + i % 200}" for i in range(n)]
    cpu = measured(receiver, payloads, [("127.0.0.1", port)] * n, sources)
    receiver.communicate(timeout=60)
    return {"cpu": cpu, "streams": [coverage(reference, load(f)) for f in files(out, n)]}


def gstreamer(n: int, payloads, reference, folder: Path) -> dict:
    ports = [free_port() for _ in range(n)]
    out = folder / f"gst-{n}"
    out.mkdir()
    branches = " ".join(
        f"udpsrc address=127.0.0.1 port={port} caps={CAPS} ! rtpjitterbuffer ! rtpopusdepay "
        f"! opusdec ! wavenc ! filesink location={out}/stream-{i}.wav"
        for i, port in enumerate(ports)
    )
    gst = subprocess.Popen(
        ["gst-launch-1.0", "-e", *branches.split()], stdout=subprocess.PIPE, text=True
    )
    assert gst.stdout is not None
    while "PLAYING" not in gst.stdout.readline():
        pass
    cpu = measured(gst, payloads, [("127.0.0.1", port) for port in ports])
    time.sleep(0.5)
    gst.send_signal(signal.SIGINT)
    gst.wait(timeout=60)
    return {"cpu": cpu, "streams": [coverage(reference, load(f)) for f in files(out, n)]}


def files(folder: Path, n: int) -> list[Path]:
    found = sorted(folder.glob("*.wav"))
    return found + [folder / "missing.wav"] * (n - len(found))


def load(path: Path) -> np.ndarray:
    """A stream's output; none if it is missing or unreadable (a receiver that wrote no
    audio into it: wavenc's header is written with its first buffer), said on stderr."""
    try:
        audio = soundfile.read(path, dtype="float32", always_2d=True)[0]
    except (OSError, soundfile.LibsndfileError) as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return np.zeros(0, dtype=np.float32)
    return audio.mean(axis=1)


def idle_cpu(seconds: float) -> float:
    port = free_port()
    receiver = subprocess.Popen(
        [BIN / "airmic-receive", "--listen", f"127.0.0.1:{port}", "--sink", "null", "-q"],
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(3.0)
        before, t0 = cpu_seconds(receiver.pid), time.monotonic()
        time.sleep(seconds)
        return 100 * (cpu_seconds(receiver.pid) - before) / (time.monotonic() - t0)
    finally:
        receiver.terminate()
        receiver.wait(timeout=30)


def summary(result: dict) -> str:
    covered = [c for c, _ in result["streams"]]
    gaps = [g for _, g in result["streams"]]
    return (
        f"{result['cpu']:.1f} % | {result['cpu'] / len(covered):.2f} % | "
        f"{100 * min(covered):.1f} % | {max(gaps):.0f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,8,16,32,50")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="airmic's second run plays in this many worker processes",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "out" / "bench_scale.json")
    args = parser.parse_args()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    counts = [int(n) for n in args.streams.split(",")]
    results: dict = {"idle_cpu": idle_cpu(10.0), "runs": {}}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        speech = soundfile.read(make_speech(folder / "speech.wav"), dtype="float32")[0]
        payloads = encode(speech, args.seconds)
        reference = np.tile(speech, 3)[: round(args.seconds * 48_000)]
        for n in counts:
            results["runs"][n] = {
                "airmic": airmic(n, payloads, reference, folder),
                WORKERS: airmic(n, payloads, reference, folder, args.workers),
                "gstreamer": gstreamer(n, payloads, reference, folder),
            }
            print(f"measured {n} streams", file=sys.stderr)
    print(f"\nidle airmic-receive: {results['idle_cpu']:.2f} % of a core\n")
    print(f"{args.seconds:g} s of speech per stream, {os.cpu_count()} cores, % of one core\n")
    print("| streams | receiver | CPU | CPU per stream | least speech covered | longest gap |")
    print("|---:|---|---:|---:|---:|---:|")
    for n, run in results["runs"].items():
        for who in ("airmic", WORKERS, "gstreamer"):
            print(f"| {n} | {who} | {summary(run[who])} |")
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
