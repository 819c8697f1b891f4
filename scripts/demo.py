"""The airmic demo: a speech sample streamed from airmic-send to airmic-receive on this
machine, over real UDP on 127.0.0.1, then a summary of what arrived. The two pair first,
as two machines would (a one-time code), so the stream is encrypted; each keeps its keys
in a folder of its own under --out, away from this user's real pairings.

    scripts/demo [--input SPEC] [--frame-ms N] [--low-latency] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import soundfile
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.make_speech import make_speech  # noqa: E402
from tests.audio_match import match  # noqa: E402

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_bound(port: int, receiver: subprocess.Popen[bytes]) -> None:
    """Wait until the receiver holds the port (binding it ourselves then fails)."""
    while receiver.poll() is None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)
    raise SystemExit("airmic-receive did not start")


def pair(homes: dict[str, dict[str, str]], address: str) -> None:
    """airmic-receive pair shows a code; airmic-send pair ADDRESS CODE uses it. By address,
    not by name: other receivers may be advertised on this machine or network."""
    console = Console()
    console.print("[bold]Pairing[/]: airmic-receive pair, then airmic-send pair ADDRESS CODE")
    window = subprocess.Popen([BIN / "airmic-receive", "pair"], env=homes["receiver"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert window.stdout is not None
        code = None
        for line in window.stdout:
            print(f"  {line}", end="")
            found = re.search(r"airmic-send pair (\d{3} ?\d{3})", line)
            if found:
                code = found[1].replace(" ", "")
                break
        if code is None:
            raise SystemExit("airmic-receive pair showed no code")
        sender = [BIN / "airmic-send", "pair", address, code, "--name", "demo-sender"]
        paired = subprocess.run(sender, env=homes["sender"], timeout=60)
        print(f"  {window.communicate(timeout=30)[0]}", end="")
    except subprocess.TimeoutExpired:
        raise SystemExit("pairing did not finish in time") from None
    finally:
        end(window)
    if paired.returncode or window.returncode:
        raise SystemExit("pairing failed")


def end(process: subprocess.Popen) -> None:
    """Stop a process the demo started, whatever happened: Ctrl-C, then a kill."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", help="what to send (default: a speech sample made here)")
    parser.add_argument("--frame-ms", default="10")
    parser.add_argument("--low-latency", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    args = parser.parse_args()
    console = Console(stderr=True)

    args.out.mkdir(parents=True, exist_ok=True)
    source = args.out / "speech.wav"
    if args.input is None:
        console.print(f"[bold]Making a speech sample[/] with espeak-ng: {source}")
        make_speech(source)
        spec = f"file:{source}"
    else:
        spec = args.input
    received, stats = args.out / "received.wav", args.out / "stats.json"
    received.unlink(missing_ok=True)
    port = free_port()

    homes = {side: {**os.environ, "XDG_CONFIG_HOME": str(args.out / f"{side}-config")}
             for side in ("receiver", "sender")}  # fmt: skip
    console.print(f"[bold]Starting airmic-receive[/] on 127.0.0.1:{port} (named 'demo')")
    receiver = subprocess.Popen(
        [BIN / "airmic-receive", "--listen", f"127.0.0.1:{port}", "--name", "demo",
         "--sink", f"wav:{received}", "--stats-json", str(stats)],
        env=homes["receiver"],
    )  # fmt: skip
    try:
        wait_until_bound(port, receiver)
        address = f"127.0.0.1:{port}"
        pair(homes, address)
        console.print(f"[bold]Starting airmic-send[/] with {spec}, to {address}")
        sender = [BIN / "airmic-send", "--to", address, "--input", spec,
                  "--frame-ms", args.frame_ms]  # fmt: skip
        if args.low_latency:
            sender.append("--low-latency")
        if subprocess.run(sender, env=homes["sender"]).returncode:
            return 1
        time.sleep(0.5)  # the last packets play out
        receiver.send_signal(signal.SIGINT)
        if receiver.wait(timeout=30):
            return 1
    except subprocess.TimeoutExpired:
        console.print("[red]airmic-receive did not stop in time[/]")
        return 1
    finally:
        end(receiver)

    report = json.loads(stats.read_text())
    if not report["streams"]:
        console.print("[red]Nothing arrived.[/]")
        return 1
    stream = report["streams"][0]
    table = Table(title="What arrived", show_header=False)
    table.add_row("stream", stream["stream"])
    table.add_row("audio received", f"{stream['seconds']:.2f} s in {stream['received']} packets")
    table.add_row(
        "repaired from copies / lost / recovered by FEC / late",
        f"{stream['repaired']} / {stream['lost']} / {stream['recovered']} / {stream['late']}",
    )
    table.add_row("written to", str(received))
    if args.input is None:
        sent, _ = soundfile.read(source, dtype="float32")
        got, _ = soundfile.read(received, dtype="float32")
        result = match(sent, got)
        table.add_row("sent audio", f"{len(sent) / 48_000:.2f} s")
        table.add_row(
            "match with what was sent",
            f"correlation {result.correlation:.3f}, codec delay {result.lag / 48:.1f} ms",
        )
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
