"""Many rooms into one receiver, each into its own mic and its own recording.

N plain Opus streams (10 ms frames, speech, no copies) are sent in real time from one
paced thread, each from its own loopback address (127.0.0.10, .11, …), so each is a room
of its own, to `airmic-receive --mics per-room --record DIR` in a private PulseAudio. Every
room is named at start (`--room`), so its mic exists before the audio comes, and one
GStreamer pipeline records all the mics on one clock. Reported: the receiver's CPU over
the sending window (% of one core, from /proc), and for each room, at its mic and in its
Ogg Opus file, the share of the speech it covered and its longest gap, against the input.
Prints a Markdown table and writes JSON. Loopback only; bounded by --seconds.

    .venv/bin/python scripts/bench_rooms.py [--rooms 4,16] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
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
from scripts.bench_cpu import cpu_seconds, free_port  # noqa: E402
from scripts.bench_scale import coverage, encode, load, send  # noqa: E402
from scripts.make_speech import make_speech  # noqa: E402
from tests.pulse import private_pulseaudio  # noqa: E402

BIN = Path(sys.executable).parent


def host(n: int) -> str:
    return f"127.0.0.{10 + n}"


def mic(n: int) -> str:
    """The source of room `host(n)`'s mic (its name with the dots made underscores)."""
    return f"airmic_{host(n).replace('.', '_')}"


def decoded(path: Path) -> np.ndarray:
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", "48000", "-"],
        capture_output=True,
        timeout=120,
    )
    return np.frombuffer(out.stdout, dtype=np.float32)


def run(
    n: int, payloads: list[bytes], reference: np.ndarray, folder: Path, log_to: Path | None
) -> dict:
    port = free_port()
    out = folder / f"rooms-{n}"
    out.mkdir()
    pulse_folder = out / "pulse"
    pulse_folder.mkdir()
    log = out / "receiver.log"
    with private_pulseaudio(pulse_folder) as env:
        rooms = [arg for i in range(n) for arg in ("--room", host(i))]
        receiver = subprocess.Popen(
            [BIN / "airmic-receive", "--listen", f"127.0.0.1:{port}", "--insecure",
             "--no-advertise", "--web", "off", "--max-streams", str(n), "--mics", "per-room",
             *rooms, "--record", str(out), "--sink", "virtual", "--exit-after-idle", "4",
             "--stats-json", str(out / "stats.json"), *(["-vv"] if log_to else [])],
            stderr=log.open("w"), env=env,
        )  # fmt: skip
        # A file, not a pipe: a pipe nobody reads while the rooms stream blocks the
        # receiver's logging once full, and with it the thread that logs.
        while "listening on" not in log.read_text():
            if receiver.poll() is not None:
                raise SystemExit(f"the receiver failed:\n{log.read_text()}")
            time.sleep(0.05)
        caps = "audio/x-raw,rate=48000,channels=1,format=S16LE"
        branches = " ".join(
            f"pulsesrc provide-clock=false device={mic(i)} ! {caps} ! wavenc "
            f"! filesink location={out}/mic-{i:02d}.wav"
            for i in range(n)
        )
        recorder = subprocess.Popen(
            ["gst-launch-1.0", "-e", *branches.split()], stdout=subprocess.PIPE, text=True, env=env
        )
        assert recorder.stdout is not None
        while "PLAYING" not in recorder.stdout.readline():
            pass
        targets = [("127.0.0.1", port)] * n
        sender = threading.Thread(
            target=send, args=(payloads, targets, [host(i) for i in range(n)])
        )
        before, t0 = cpu_seconds(receiver.pid), time.monotonic()
        sender.start()
        sender.join()
        cpu = 100 * (cpu_seconds(receiver.pid) - before) / (time.monotonic() - t0)
        time.sleep(0.5)
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)
        receiver.wait(timeout=60)
        if log_to is not None:
            shutil.copy(log, log_to / f"receiver-{n}.log")
    (session,) = [p for p in out.iterdir() if p.is_dir() and p.name != "pulse"]
    mics = [coverage(reference, load(out / f"mic-{i:02d}.wav")) for i in range(n)]
    files = [coverage(reference, decoded(session / f"{host(i)}.opus")) for i in range(n)]
    stats = json.loads((out / "stats.json").read_text())["streams"]
    counted = {"gaps": sum(s["gaps"] for s in stats), "gap_ms": sum(s["gap_ms"] for s in stats)}
    return {"cpu": cpu, "mics": mics, "files": files, "counted": counted}


def row(n: int, result: dict) -> str:
    def worst(pairs: list[tuple[float, float]]) -> str:
        covered = min(c for c, _ in pairs)
        gap = max(g for _, g in pairs)
        return f"{100 * covered:.1f} % | {gap:.0f} ms"

    per_room = result["cpu"] / n
    mics, files = worst(result["mics"]), worst(result["files"])
    counted = f"{result['counted']['gaps']} ({result['counted']['gap_ms']:.0f} ms)"
    return f"| {n} | {result['cpu']:.1f} % | {per_room:.2f} % | {mics} | {counted} | {files} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", default="4,16")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=ROOT / "out" / "bench_rooms.json")
    parser.add_argument("--log", type=Path, metavar="DIR",
                        help="keep each run's receiver log here, at debug level")  # fmt: skip
    args = parser.parse_args()
    counts = [int(n) for n in args.rooms.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        speech = soundfile.read(make_speech(folder / "speech.wav"), dtype="float32")[0]
        payloads = encode(speech, args.seconds)
        reference = np.tile(speech, len(payloads) * 480 // len(speech) + 1)[: len(payloads) * 480]
        results = {}
        for n in counts:
            print(f"  {n} rooms…", file=sys.stderr)
            results[n] = run(n, payloads, reference, folder, args.log)
    print(f"\n{args.seconds:g} s of speech per room; worst room shown\n")
    print("| rooms | receiver CPU | per room | mic: speech covered | mic: longest gap | "
          "mic gaps counted (all rooms) | file: speech covered | file: longest gap |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, result in results.items():
        print(row(n, result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({str(n): r for n, r in results.items()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
