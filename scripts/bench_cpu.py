"""CPU use of airmic-send and airmic-receive for one stream, as real processes on 127.0.0.1.

Each configuration streams speech for a while; the CPU time both processes use in a window
in the middle of the stream (start-up excluded) is read from /proc. Prints a Markdown table
and writes JSON.

    .venv/bin/python scripts/bench_cpu.py [--seconds 10] [--json out/bench_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.make_speech import make_speech  # noqa: E402

BIN = Path(sys.executable).parent
TICKS = os.sysconf("SC_CLK_TCK")
CONFIGS = {
    "default (VOIP, FEC, 10 ms)": [],
    "20 ms frames": ["--frame-ms", "20"],
    "5 ms frames": ["--frame-ms", "5"],
    "low latency, 2.5 ms": ["--frame-ms", "2.5", "--low-latency"],
}


def cpu_seconds(pid: int) -> float:
    """The CPU time of a process and of the live processes it started (a receiver's
    workers)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # itself, or its child
            total += (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
    return total


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(speech: Path, options: list[str], window: float, sink: str) -> dict[str, float]:
    port = free_port()
    receiver = subprocess.Popen(
        # Plain RTP: SRTP adds about 2 µs a packet on each side (pylibsrtp, AES-GCM).
        [
            BIN / "airmic-receive",
            "--listen",
            f"127.0.0.1:{port}",
            "--sink",
            sink,
            "-q",
            "--insecure",
        ]
    )
    time.sleep(1.5)  # imports and bind
    sender = subprocess.Popen(
        [
            BIN / "airmic-send",
            "--insecure",
            "--to",
            f"127.0.0.1:{port}",
            "--input",
            f"file:{speech}",
            "--loop",
            "--duration",
            str(window + 4),
            "-q",
            *options,
        ]
    )
    try:
        time.sleep(2.0)  # past start-up: the stream is flowing
        before = cpu_seconds(sender.pid), cpu_seconds(receiver.pid), time.monotonic()
        time.sleep(window)
        after = cpu_seconds(sender.pid), cpu_seconds(receiver.pid), time.monotonic()
    finally:
        sender.wait(timeout=window + 30)
        receiver.terminate()
        receiver.wait(timeout=30)
    wall = after[2] - before[2]
    return {
        "sender_cpu_percent": 100 * (after[0] - before[0]) / wall,
        "receiver_cpu_percent": 100 * (after[1] - before[1]) / wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window")
    parser.add_argument("--json", type=Path, default=ROOT / "out" / "bench_cpu.json")
    args = parser.parse_args()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        speech = make_speech(Path(folder) / "speech.wav")
        for name, options in CONFIGS.items():
            for sink in ("null", f"wav:{folder}/out.wav"):
                key = f"{name}, sink {sink.split(':')[0]}"
                results[key] = measure(speech, options, args.seconds, sink)
                print(f"measured {key}", file=sys.stderr)
    print(
        f"\nCPU for one stream ({os.cpu_count()} cores, % of one core, {args.seconds:g} s window)\n"
    )
    print("| configuration | airmic-send | airmic-receive |")
    print("|---|---:|---:|")
    for key, r in results.items():
        print(f"| {key} | {r['sender_cpu_percent']:.1f} % | {r['receiver_cpu_percent']:.1f} % |")
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
