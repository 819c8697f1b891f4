"""A voice into the virtual mic while other processes take the cores: the gaps a listener
hears, and the gaps the receiver counted.

For each load (none, one core spinning, both cores spinning), on a private PulseAudio
daemon: the receiver with its virtual mic, `parecord` on the mic, `airmic-send` playing
SECONDS of speech (plain RTP on loopback), and that many processes spinning at normal
priority. The recording is aligned with the speech; a gap is a 5 ms frame where the speech
sounds and the mic is silent.

The speech never repeats (numbers read out, at random): a looped sentence would, and an
output time-warped by the delay control then matches one repetition shifted by a whole
sentence better than the whole run at its true delay; the recording, aligned with the
wrong repetition, would read as seconds of gaps.

    .venv/bin/python scripts/bench_hog.py [--seconds 60] [--loads 0,1,2]

Prints a Markdown table; writes out/bench_hog.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.make_speech import make_speech  # noqa: E402
from tests.audio_match import match, silences  # noqa: E402
from tests.conftest import free_udp_port  # noqa: E402
from tests.pulse import private_pulseaudio, record_source  # noqa: E402

BIN = Path(sys.executable).parent
SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"


def program(folder: Path, seconds: float, seed: int = 7) -> Path:
    """`seconds` of speech that never repeats: random numbers, read out."""
    rng = np.random.default_rng(seed)
    text = ". ".join(str(n) for n in rng.integers(1_000, 100_000, int(seconds) + 10))
    data = soundfile.read(make_speech(folder / "numbers.wav", text), dtype="float32")[0]
    if len(data) < seconds * 48_000:
        raise SystemExit(f"the speech is only {len(data) / 48_000:.0f} s long")
    soundfile.write(folder / "speech.wav", data[: int(seconds * 48_000)], 48_000)
    return folder / "speech.wav"


def run(hogs: int, seconds: float, speech: Path, folder: Path) -> dict[str, float]:
    port = free_udp_port()
    stats = folder / "stats.json"
    recorded = folder / "mic.wav"
    with private_pulseaudio(folder) as env:
        receiver = subprocess.Popen(
            [str(BIN / "airmic-receive"), "--listen", f"127.0.0.1:{port}", "--insecure", "-q",
             "--sink", "virtual", "--web", "off", "--no-advertise", "--stats-json", str(stats)],
            env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(3)  # its mic made
        recorder = subprocess.Popen(record_source("airmic", recorded), env=env)
        spinners = [
            subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=seconds + 10)])
            for _ in range(hogs)
        ]
        sender = subprocess.run(
            [str(BIN / "airmic-send"), "--to", f"127.0.0.1:{port}", "--insecure", "-q",
             "--input", f"file:{speech}"],
            env=env, capture_output=True, text=True, timeout=seconds + 60,
        )  # fmt: skip
        time.sleep(0.5)
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=10)
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
        receiver.send_signal(signal.SIGINT)
        _, errors = receiver.communicate(timeout=30)
    if sender.returncode or receiver.returncode:
        raise SystemExit(f"a run failed:\n{sender.stderr}\n{errors}")
    reference = soundfile.read(speech, dtype="float32")[0]
    out = soundfile.read(recorded, dtype="float32")[0]
    result = match(reference, out, max_lag=10 * 48_000)
    heard, heard_ms, longest_ms = silences(reference, result.aligned)
    (stream,) = json.loads(stats.read_text())["streams"]
    return {
        "correlation": result.correlation,
        "heard": heard,
        "heard_ms": heard_ms,
        "longest_ms": longest_ms,
        "counted": stream["gaps"],
        "counted_ms": stream["gap_ms"],
        "underruns": stream["underruns"],
        "delay_ms": stream["delay_ms"] or 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each run")
    parser.add_argument("--loads", default="0,1,2", help="spinning processes, per run")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        speech = program(Path(scratch), args.seconds)
        for hogs in (int(n) for n in args.loads.split(",")):
            folder = Path(scratch) / f"hogs{hogs}"
            folder.mkdir()
            print(f"{hogs} cores hogged, {args.seconds:g} s…", file=sys.stderr)
            rows.append({"hogs": hogs, **run(hogs, args.seconds, speech, folder)})
    print(f"\n{os.cpu_count()} cores; {args.seconds:g} s of speech into the virtual mic\n")
    print("| cores hogged | correlation | gaps heard | heard ms | longest ms | mic gaps "
          "counted | counted ms | stream underruns |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['hogs']} | {r['correlation']:.3f} | {r['heard']} | {r['heard_ms']:.0f} | "
              f"{r['longest_ms']:.0f} | {r['counted']} | {r['counted_ms']:.0f} | "
              f"{r['underruns']} |")  # fmt: skip
    out = ROOT / "out"
    out.mkdir(exist_ok=True)
    (out / "bench_hog.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
