"""The jitter buffer benchmark: airmic's playout against GStreamer's rtpjitterbuffer, on the
same seeded packet traces.

For each network profile, speech is encoded as airmic-send does (Opus VOIP, 64 kbit/s, FEC,
10 ms, one redundant copy per packet; GStreamer gets the copies too, through rtpreddec),
the impairment model turns the send times into a packet trace, and
- airmic's playout plays it on a virtual clock (scripts run in seconds, not in real time);
- then, in real time, the same datagrams at the same times go over loopback into a real
  airmic-receive and into GStreamer (udpsrc ! rtpjitterbuffer do-lost=true ! rtpopusdepay
  ! opusdec plc=true), both playing into a private PulseAudio whose
  null sink is recorded: what a listener would hear, late packets included. GStreamer runs
  with its default latency (200 ms), then with the smallest latency that scores as well as
  that (within 0.1 PESQ). GStreamer's delay is measured by its latency tracer (udpsrc to
  pulsesink, per buffer); airmic's by its own stats (arrival to playout, per packet).
Both outputs are scored against the clean input: PESQ wide-band and STOI.

    .venv/bin/python scripts/bench_jitter.py [--seconds 20] [--drift-seconds 600] [--no-gstreamer]

Prints a Markdown table; writes out/bench_jitter.json and out/bench_jitter.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import soxr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from airmic.common.delay import parse_latency  # noqa: E402
from airmic.common.impair import PROFILES, Profile  # noqa: E402
from airmic.common.playout import Playout  # noqa: E402
from airmic.common.red import RED_PAYLOAD_TYPE  # noqa: E402
from airmic.common.rtp import parse_media  # noqa: E402
from airmic.common.virtual import play_trace  # noqa: E402
from airmic.sender.virtual import Trace, send  # noqa: E402
from scripts.make_speech import make_speech  # noqa: E402
from tests.audio_match import match  # noqa: E402
from tests.pulse import private_pulseaudio, record_speaker  # noqa: E402

RATE = 48_000
BIN = Path(sys.executable).parent
GST_LATENCIES = [10, 20, 30, 40, 60, 80, 120, 160, 200]
CAPS = "application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96"


@dataclass
class Score:
    latency_ms: float  # median delay the buffer adds
    latency_p95_ms: float | None
    concealed_pct: float | None
    pesq: float
    stoi: float
    glitches: int | None
    cpu_pct: float | None = None  # of one core, per stream
    extra: dict[str, float] = field(default_factory=dict)


def speech_of(seconds: float, folder: Path) -> np.ndarray:
    voices = [make_speech(folder / f"s{i}.wav", voice=v) for i, v in enumerate(["en", "en-us"])]
    sample = np.concatenate([soundfile.read(v, dtype="float32")[0] for v in voices])
    return np.tile(sample, int(seconds * RATE / len(sample)) + 1)[: int(seconds * RATE)]


def trace_of(speech: np.ndarray, profile: Profile, ppm: float, seed: int, args) -> Trace:
    return send(speech, profile.seeded(seed), args.redundancy, sender_ppm=ppm, cap=args.cap)


def quality(clean: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """PESQ wide-band and STOI of `out` against `clean` (both at 48 kHz). PESQ aligns each
    utterance itself; STOI does not, and both receivers shift their timeline as they adapt,
    so for STOI `out` is realigned every half second first."""
    from pesq import pesq
    from pystoi import stoi

    def at16(x: np.ndarray) -> np.ndarray:
        return soxr.resample(x.astype(np.float32), RATE, 16_000)

    found = match(clean, out, window=RATE // 2, max_lag=10 * RATE)  # recordings start early
    lag = found.lag
    shifted = out[lag:] if lag >= 0 else np.concatenate((np.zeros(-lag, np.float32), out))
    shifted = np.concatenate((shifted, np.zeros(max(0, len(clean) - len(shifted)), np.float32)))
    score = pesq(16_000, at16(clean), at16(shifted[: len(clean)]), "wb")
    return float(score), float(stoi(at16(clean), at16(found.aligned), 16_000))


def run_airmic(
    speech, trace: Trace, latency: str
) -> tuple[Score, list[tuple[float, float, float]]]:
    playout = Playout(parse_latency(latency))
    playout.wait_log = []
    timeline: list[tuple[float, float, float]] = []

    def watch(now: float, p: Playout) -> None:
        if round(now * 100) % 50 == 0 and p.delay.current is not None:
            timeline.append((now, p.delay.current * 1000, p.target(now) * 1000))

    arrivals = [(t, parse_media(d)) for t, d in trace.arrivals]
    start = time.process_time()
    out = play_trace(playout, arrivals, on_block=watch)
    cpu = (time.process_time() - start) / (len(speech) / RATE) * 100
    waits = np.array(playout.wait_log) * 1000
    stats = playout.stats
    seconds = min(len(speech), 30 * RATE)  # PESQ on the first 30 s
    pesq, stoi = quality(speech[:seconds], out[: seconds + RATE])
    return Score(
        latency_ms=float(np.median(waits)),
        latency_p95_ms=float(np.percentile(waits, 95)),
        concealed_pct=100 * stats.concealed_samples / max(1, stats.decoded_samples),
        pesq=pesq,
        stoi=stoi,
        glitches=stats.glitches,
        cpu_pct=cpu,
        extra={
            "drops": stats.drops,
            "inserts": stats.inserts,
            "drift_ppm": stats.drift_ppm,
            "lost": playout.jitter.stats.lost,
            "recovered": playout.jitter.stats.recovered,
            "repaired": playout.jitter.stats.repaired,
            "wire_kbits": trace.wire_kbits,
        },
    ), timeline


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def replay(trace, port: int) -> None:
    """Send each datagram of `trace` to 127.0.0.1:`port` at its arrival time (bounded: one
    datagram per entry, loopback only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        start = time.monotonic()
        for at, datagram in trace:
            delay = start + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sock.sendto(datagram, ("127.0.0.1", port))


@contextlib.contextmanager
def recording(out: Path, pulse: dict[str, str]):
    """Record what plays into the private PulseAudio's `speaker` sink."""
    record = subprocess.Popen(record_speaker(out), env=pulse)
    try:
        yield
    finally:
        record.send_signal(signal.SIGINT)
        record.wait(timeout=30)


def run_gstreamer(
    trace: Trace, latency_ms: int, folder: Path, pulse: dict[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Replay `trace` in real time into GStreamer's receive pipeline playing into PulseAudio,
    and record what it played: late packets and gaps included. Also returns each buffer's
    time from udpsrc to pulsesink (GStreamer's latency tracer), in ms: its buffer's delay."""
    port, out, log = free_port(), folder / f"gst-{latency_ms}.wav", folder / "gst-trace.log"
    tracing = {"GST_TRACERS": "latency", "GST_DEBUG": "GST_TRACER:7", "GST_DEBUG_NO_COLOR": "1"}
    with recording(out, pulse), log.open("w") as trace_log:
        # do-lost: lost packets become gaps that opusdec conceals. (Its use-inband-fec would
        # add a fixed 120 ms of latency, so it stays off.) rtpreddec unpacks the copies.
        pipeline = (
            f"gst-launch-1.0 udpsrc address=127.0.0.1 port={port} caps={CAPS} "
            f"! rtpreddec pt={RED_PAYLOAD_TYPE} "
            f"! rtpjitterbuffer latency={latency_ms} do-lost=true ! rtpopusdepay "
            "! opusdec plc=true ! audioconvert ! audioresample "
            "! pulsesink device=speaker buffer-time=40000 latency-time=10000"
        )
        gst = subprocess.Popen(
            pipeline.split(),
            stdout=subprocess.PIPE,
            stderr=trace_log,
            text=True,
            env={**pulse, **tracing},
        )
        assert gst.stdout is not None
        while "PLAYING" not in gst.stdout.readline():
            pass
        replay(trace.arrivals, port)
        time.sleep(latency_ms / 1000 + 0.5)
        gst.send_signal(signal.SIGINT)
        gst.wait(timeout=30)
    delays = [
        int(line.split("time=(guint64)")[1].split(",")[0]) / 1e6
        for line in log.read_text(errors="replace").splitlines()
        if "src-element=(string)udpsrc" in line and "time=(guint64)" in line
    ]
    return soundfile.read(out, dtype="float32")[0], np.array(delays)


def run_airmic_live(trace: Trace, latency: str, folder: Path, pulse: dict[str, str]):
    """The same, through a real airmic-receive playing into PulseAudio."""
    port, out, stats = free_port(), folder / "airmic-live.wav", folder / "stats.json"
    with recording(out, pulse):
        receiver = subprocess.Popen(
            [
                BIN / "airmic-receive",
                "--insecure",  # the traces replay plain RTP
                "--listen",
                f"127.0.0.1:{port}",
                "--sink",
                "device:pulse",
                "--latency",
                latency,
                "--stats-json",
                str(stats),
                "-q",
            ],
            env=pulse,
        )
        time.sleep(2.0)  # imports and bind
        replay(trace.arrivals, port)
        time.sleep(0.5)
        receiver.send_signal(signal.SIGINT)
        receiver.wait(timeout=30)
    return soundfile.read(out, dtype="float32")[0], json.loads(stats.read_text())["streams"][0]


def gstreamer_scores(
    speech, trace: Trace, folder: Path, pulse: dict[str, str]
) -> tuple[Score, Score]:
    scored: dict[int, Score] = {}

    def score(latency: int) -> Score:
        if latency not in scored:
            heard, delays = run_gstreamer(trace, latency, folder, pulse)
            pesq, stoi = quality(speech, heard)
            median = float(np.median(delays)) if len(delays) else float(latency)
            p95 = float(np.percentile(delays, 95)) if len(delays) else None
            scored[latency] = Score(
                median, p95, None, pesq, stoi, None, extra={"latency_setting_ms": latency}
            )
            print(
                f"    gstreamer latency={latency}: PESQ {pesq:.2f}, delay {median:.1f} ms",
                file=sys.stderr,
            )
        return scored[latency]

    default = score(200)
    tuned = next(lat for lat in GST_LATENCIES if score(lat).pesq >= default.pesq - 0.1)
    return default, scored[tuned]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="trace length per profile")
    parser.add_argument(
        "--drift-seconds",
        type=float,
        default=600.0,
        help="simulated length of the drift profile (airmic only)",
    )
    parser.add_argument("--latency", default="balanced", help="airmic's latency mode")
    parser.add_argument(
        "--redundancy",
        type=int,
        help="redundant copies per packet (RFC 2198), fixed; by default the sender's "
        "protection follows the receiver's reports, as airmic-send's does",
    )
    parser.add_argument(
        "--cap", type=int, help="the adaptive sender's bandwidth cap, bit/s on the wire"
    )
    parser.add_argument("--no-gstreamer", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    args = parser.parse_args()
    if not args.no_gstreamer and shutil.which("gst-launch-1.0") is None:
        parser.error("gst-launch-1.0 is missing (scripts/setup --test installs it)")
    args.out.mkdir(parents=True, exist_ok=True)
    cases = [(name, PROFILES[name], 0.0, args.seconds) for name in PROFILES]
    cases.append(("drift-300ppm", PROFILES["clean"], 300.0, args.drift_seconds))
    results: dict[str, dict[str, object]] = {}
    senders: dict[str, Trace] = {}
    timelines = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        pulse = {} if args.no_gstreamer else stack.enter_context(private_pulseaudio(folder))
        long_speech = speech_of(max(args.seconds, args.drift_seconds), folder)
        for name, profile, ppm, seconds in cases:
            print(f"{name}: airmic", file=sys.stderr)
            speech = long_speech[: int(seconds * RATE)]
            trace = trace_of(speech, profile, ppm, args.seed, args)
            airmic, timelines[name] = run_airmic(speech, trace, args.latency)
            senders[name] = trace
            results[name] = {"airmic": asdict(airmic)}
            if not args.no_gstreamer:
                short = long_speech[: int(args.seconds * RATE)]
                short_trace = trace_of(short, profile, ppm, args.seed, args)
                heard, stream = run_airmic_live(short_trace, args.latency, folder, pulse)
                pesq, stoi = quality(short, heard)
                results[name]["airmic_live"] = asdict(
                    Score(
                        stream["delay_ms"],
                        None,
                        None,
                        pesq,
                        stoi,
                        None,
                        extra={"lost": stream["lost"], "late": stream["late"]},
                    )
                )
                default, tuned = gstreamer_scores(short, short_trace, folder, pulse)
                results[name]["gstreamer_default"] = asdict(default)
                results[name]["gstreamer_tuned"] = asdict(tuned)
    print_table(results)
    print("\n| profile | on the wire | the sender's protection, as it changed |")
    print("|---|---:|---|")
    for name, trace in senders.items():
        print(f"| {name} | {trace.wire_kbits:.0f} kbit/s | {'; '.join(trace.levels)} |")
    for name, trace in senders.items():
        results[name]["sender"] = {"wire_kbits": trace.wire_kbits, "levels": trace.levels}
    (args.out / "bench_jitter.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(timelines, results, args.out / "bench_jitter.png")
    return 0


def print_table(results: dict[str, dict[str, object]]) -> None:
    def cell(value: object, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    print(
        "\n| profile | receiver | delay median | delay p95 | concealed | PESQ-WB | STOI "
        "| glitches | CPU |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        for who, s in runs.items():
            if who == "sender":
                continue
            assert isinstance(s, dict)
            print(
                f"| {name} | {who.replace('_', ' ')} | {cell(s['latency_ms'], '.1f')} ms "
                f"| {cell(s['latency_p95_ms'], '.1f')} | {cell(s['concealed_pct'], '.2f')} % "
                f"| {s['pesq']:.2f} | {s['stoi']:.3f} | {cell(s['glitches'], 'd')} "
                f"| {cell(s['cpu_pct'], '.2f')} % |"
            )


def plot(timelines, results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(timelines), 1, figsize=(10, 2.2 * len(timelines)), squeeze=False)
    for ax, (name, points) in zip(axes[:, 0], timelines.items(), strict=True):
        if points:
            t, current, target = np.array(points).T
            ax.plot(t, current, label="airmic delay")
            ax.plot(t, target, "--", label="airmic target")
        tuned = results[name].get("gstreamer_tuned")
        if isinstance(tuned, dict):
            ax.axhline(tuned["latency_ms"], color="red", lw=1, label="GStreamer tuned")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("ms")
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    sys.exit(main())
