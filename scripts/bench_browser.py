"""Browser-to-receiver latency: the phone page in real Chromium and Firefox, measured
with chirps.

On a private PulseAudio daemon, chirps (two a second) play into the null sink `feed`.
The browser, in a network namespace joined to this host by a veth pair (a phone on the
LAN), opens the receiver's page and streams `feed.monitor` (remapped as its default
microphone) over WebRTC, with `--loss` percent of the namespace's datagrams dropped;
the receiver plays it into the virtual mic. One recorder takes `feed.monitor` and the
virtual mic side by side on one clock; each chirp's delay is where it turns up in the
second channel after the first. airmic-send over UDP runs on the same daemon, as the
yardstick. Needs root (the namespace).

    .venv/bin/python scripts/bench_browser.py [--seconds 30] [--browsers chromium,firefox]
                                              [--loss 0]

Prints a Markdown table; writes out/bench_browser.json.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_mic import chirps, delays, setups  # noqa: E402
from scripts.bench_mic import measure as measure_udp  # noqa: E402
from tests.chromium import chromium  # noqa: E402
from tests.conftest import free_udp_port  # noqa: E402
from tests.firefox import firefox  # noqa: E402
from tests.netns import namespace  # noqa: E402
from tests.processes import Process, ReceiverProcess  # noqa: E402
from tests.pulse import pactl, private_pulseaudio, record_pair  # noqa: E402


def measure_browser(
    browser: str, latency: str, loss: int, sound: Path, template: np.ndarray, pulse, folder: Path
):
    """The chirps' delays through the page, and the receiver's view of the stream."""
    run = Path(tempfile.mkdtemp(prefix=f"{browser}-{latency}-", dir=folder))
    port = free_udp_port()
    with namespace() as lan:
        if loss:
            lan.lose_udp(loss)
        receiver = ReceiverProcess(run, port, "--web", f"https://{lan.host_ip}:{port}",
                                   "--latency", latency, idle=None, sinks=("virtual",),
                                   env=pulse)  # fmt: skip
        recorder = Process(record_pair("feed.monitor", "airmic", run / "pair.wav"), run,
                           "recorder", pulse)  # fmt: skip
        try:
            receiver.wait_for("phone page:")
            url = re.search(r"phone page: (\S+)", receiver.stderr).group(1)  # type: ignore[union-attr]
            recorder.wait_for("PLAYING")
            opened = (
                chromium(lan, None, run, env=pulse)
                if browser == "chromium"
                else (firefox(lan, run, pulse))
            )
            with opened as context:
                page = context.new_page()
                page.goto(url)
                page.click(".settings summary")
                page.fill("#name", "bench")
                page.click("#start")
                try:
                    page.wait_for_function("window.airmic.state === 'streaming'", timeout=20_000)
                except Exception:
                    message = page.text_content("#message")
                    raise SystemExit(f"the page did not stream: {message}") from None
                time.sleep(1.0)
                subprocess.run(["paplay", "--device=feed", str(sound)], env=pulse, check=True)
                time.sleep(0.5)
                view = page.evaluate("window.airmic.stats")
                page.click("#stop")
                page.wait_for_function("window.airmic.state === 'idle'")
        finally:
            recorder.stop(signal.SIGINT)
            receiver.stop()
    return delays(run / "pair.wav", template), view


def summary(found: np.ndarray, expected: int) -> dict:
    return {
        "median_ms": float(np.median(found)) if len(found) else None,
        "p95_ms": float(np.percentile(found, 95)) if len(found) else None,
        "first_ms": float(found[0]) if len(found) else None,
        "last_ms": float(found[-1]) if len(found) else None,
        "found": len(found),
        "expected": expected,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the chirp track")
    parser.add_argument("--browsers", default="chromium,firefox",
                        help="which browsers, comma-separated")  # fmt: skip
    parser.add_argument("--loss", type=int, default=0, help="percent of datagrams dropped")
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp, private_pulseaudio(Path(tmp)) as pulse:
        folder = Path(tmp)
        # Chromium lists no monitor as a microphone: a remapped source of `feed` is one.
        pactl(pulse, "load-module", "module-remap-source", "master=feed.monitor",
              "source_name=phone", "channels=1")  # fmt: skip
        pactl(pulse, "set-default-source", "phone")
        sound, template = chirps(args.seconds, folder)
        expected = int(args.seconds * 2)
        for browser in args.browsers.split(","):
            for latency in ("balanced", "low"):
                print(f"{browser} page, --latency {latency}…", file=sys.stderr)
                found, view = measure_browser(
                    browser, latency, args.loss, sound, template, pulse, folder
                )
                name = f"{browser} page over WebRTC, receiver --latency {latency}"
                name += f" (run {sum(k.startswith(name) for k in results) + 1})"
                results[name] = summary(found, expected) | {
                    "jitter_buffer_ms": view and view["delay_ms"],
                    "receiver_says_ms": view and view.get("end_to_end_ms"),
                    "lost": view and view["lost"],
                }
        udp = next(s for s in setups(free_udp_port(), "pulse:feed.monitor") if "default" in s.name)
        print("airmic-send over UDP…", file=sys.stderr)
        found, _ = measure_udp(udp, sound, template, pulse, folder)
        results["airmic-send over UDP (the yardstick)"] = summary(found, expected)
    print(f"\n{args.loss} % of the datagrams lost\n")
    print("| path | latency median | p95 | first chirp | last chirp | chirps found | "
          "jitter buffer | receiver's end to end | lost |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    ms = lambda value: "n/a" if value is None else f"{value:.1f} ms"  # noqa: E731
    for name, r in results.items():
        buffer = f"{r['jitter_buffer_ms']} ms" if r.get("jitter_buffer_ms") else ""
        says = f"{r['receiver_says_ms']} ms" if r.get("receiver_says_ms") else ""
        print(f"| {name} | {ms(r['median_ms'])} | {ms(r['p95_ms'])} | {ms(r['first_ms'])} | "
              f"{ms(r['last_ms'])} | {r['found']}/{r['expected']} | {buffer} | {says} | "
              f"{r.get('lost', '')} |")  # fmt: skip
    (args.out / "bench_browser.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
