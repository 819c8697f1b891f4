"""airmic-receive: receive airmic (or any Opus/RTP) streams and play them into sinks."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import socket
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from airmic.common.cli import (
    DEFAULT_PORT,
    Parser,
    add_logging_options,
    freeze,
    number,
    parse_address,
    positive_float,
    run,
    stop_event,
)
from airmic.common.delay import MODES, LatencyRange, parse_latency
from airmic.common.dsp import add_dsp_options, settings_from_args
from airmic.common.errors import UsageError
from airmic.receiver.rooms import Room, parse_room
from airmic.receiver.web_config import WebConfig

# What receiving needs (aiortc, aiohttp, zeroconf, scipy, libpulse: a second and more to
# load) is imported in the functions that use it: --help and pair do not wait for it.
if TYPE_CHECKING:
    from airmic.receiver.sinks import SinkFactory

log = logging.getLogger(__name__)

MAX_STREAMS = 256
"""--max-streams at most: every stream holds files and memory (50 is what is measured)."""
MAX_WORKERS = 32
"""--workers at most."""
MAX_PPM = 10_000.0
"""--clock-ppm at most: a sound card's clock is off by well under 1,000."""

EXAMPLES = f"""\
sinks (--sink may be given several times; each stream goes to all of them):
  virtual[:NAME]      a microphone named "AirMic" (or "AirMic (NAME)") that any app can
                      pick: Linux with PulseAudio or PipeWire (see --list-sinks)
  wav:PATH            a 48 kHz mono WAV; with several streams, PATH, PATH-2.wav, PATH-3.wav…
  device:NAME|INDEX   a sound card output or virtual cable (see --list-devices)
  null                discard (for measuring)

examples:
  airmic-receive
      listen on UDP port {DEFAULT_PORT} of every interface, play into the "AirMic" microphone
      (or, with no PulseAudio server, to the default output device)
  airmic-receive --listen :5006 --sink virtual:kitchen
      a second receiver, with its own microphone "AirMic (kitchen)"
  airmic-receive --sink wav:talk.wav --sink device:"CABLE Input"
      record every stream and feed a virtual cable at the same time
  airmic-receive --listen 127.0.0.1:6000 --sink wav:out.wav --exit-after-idle 2 \\
                 --stats-json stats.json
      for scripts: exit 2 s after the last stream stops, write per-stream counters
  airmic-receive --insecure
  ffmpeg -re -i talk.mp3 -c:a libopus -f rtp rtp://127.0.0.1:{DEFAULT_PORT}
      any Opus/RTP sender works too (ffmpeg, GStreamer's rtpopuspay), unencrypted: only
      with --insecure
  airmic-receive --preset earbuds --gain 34dB
      run the DSP chain here, for senders that cannot run it (ffmpeg, GStreamer)

commands:
  airmic-receive pair          show a one-time code that pairs a sender (airmic-send pair)
  airmic-receive paired        list the paired senders
  airmic-receive unpair NAME   revoke one

exit codes: 0 done (Ctrl-C included), 1 error, 2 bad usage
"""


def latency_option(text: str) -> LatencyRange:
    try:
        return parse_latency(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def room_option(text: str) -> Room:
    try:
        return parse_room(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def web_option(text: str) -> WebConfig | bool:
    """--web: 'off' (False), or [http://|https://][HOST][:PORT] (port 0: any free port)."""
    if text == "off":
        return False
    match = re.fullmatch(
        r"(?:(?P<scheme>https?)://)?(?P<host>\[[^\]]*\]|[^:/]*)(?::(?P<port>\d+))?/?", text
    )
    if not match or not (match["host"] or match["port"]):
        raise argparse.ArgumentTypeError(f"not a web address: {text!r} (expected HOST:PORT or off)")
    host = match["host"].strip("[]") or "0.0.0.0"
    port = int(match["port"] or DEFAULT_PORT)
    if not 0 <= port < 65536:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (0-65535)")
    tls = match["scheme"] != "http"
    if not tls and host not in ("127.0.0.1", "localhost", "::1"):
        raise argparse.ArgumentTypeError(
            "browsers allow the microphone over plain http only on 127.0.0.1: use https://"
        )
    return WebConfig(host, port, tls)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="airmic-receive",
        description="Receive Opus over RTP/UDP from airmic-send, ffmpeg or GStreamer, smooth "
        "out the network, and play each stream into sinks.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=("0.0.0.0", DEFAULT_PORT),
        type=parse_address,
        help=f"where to listen (default 0.0.0.0:{DEFAULT_PORT})",
    )
    parser.add_argument(
        "--sink",
        metavar="SPEC",
        action="append",
        help="where the audio goes: virtual[:NAME], wav:PATH, device:NAME|INDEX or null "
        "(default: the virtual mic)",
    )
    parser.add_argument(
        "--latency",
        metavar="MODE",
        type=latency_option,
        default=MODES["balanced"],
        help="jitter buffer: low (up to 60 ms), balanced (default, up to 200 ms) or robust "
        "(20 to 300 ms) adapt to the network; 40ms fixes the delay (15ms to 1000ms; packets "
        "later than that are concealed); 20ms..200ms bounds it",
    )
    parser.add_argument(
        "--exit-after-idle",
        metavar="SECONDS",
        type=positive_float,
        help="exit this long after the last stream went silent (or after start, if none came)",
    )
    parser.add_argument(
        "--mics",
        choices=("one", "per-room"),
        default="one",
        help="one: every stream mixed into the one virtual mic (the default); per-room: a "
        'mic for each room (a sender, by its name), "AirMic (kitchen)", made when it '
        "first streams and kept until exit",
    )
    parser.add_argument(
        "--room",
        metavar="NAME[:SETTINGS]",
        action="append",
        type=room_option,
        default=[],
        help="a room's settings, for every stream of the sender of that name: gain=6dB "
        "(-40 to 40, at its mic), preset=earbuds (its DSP), mute (silence at its mic; its "
        "recording goes on); with --mics per-room its mic is made at start; repeatable",
    )
    parser.add_argument(
        "--record",
        metavar="DIR",
        type=Path,
        help="record every room (a sender, by its name) into a new folder in DIR, named by "
        "the start time: ROOM.opus each (the Opus packets as they arrived, on one timeline: "
        "the files play in step) and session.json",
    )
    parser.add_argument(
        "--stats-json", metavar="PATH", help="write per-stream counters to PATH on exit"
    )
    parser.add_argument(
        "--max-streams",
        type=number(int, 1, MAX_STREAMS),
        default=16,
        metavar="N",
        help=f"concurrent streams accepted, 1-{MAX_STREAMS} (default 16)",
    )
    parser.add_argument(
        "--workers",
        type=number(int, 0, MAX_WORKERS),
        default=0,
        metavar="N",
        help="play the streams in N worker processes (each stream in the one with the "
        "fewest), so that they use every core: many rooms at once (one process carries "
        "about 16 streams on a core, two workers 50 on two); files and virtual mics only. "
        "Default 0: in the receiver's own process",
    )
    parser.add_argument(
        "--clock-ppm",
        type=number(float, -MAX_PPM, MAX_PPM),
        default=0.0,
        metavar="PPM",
        help="run the file/null sinks' clock this many parts per million fast (negative: "
        f"slow), as a sound card would: for testing drift correction (at most {MAX_PPM:g})",
    )
    parser.add_argument(
        "--web",
        metavar="SPEC",
        type=web_option,
        default=None,
        help="the phone page and WHIP endpoint: [http://|https://][HOST][:PORT], or off "
        "(default: HTTPS on the --listen address and port number, over TCP; the page's "
        "link and QR code are printed at start; http:// only for 127.0.0.1)",
    )
    parser.add_argument(
        "--new-token",
        action="store_true",
        help="replace the page's access token: links and QR codes given out so far stop working",
    )
    parser.add_argument(
        "--name",
        default=socket.gethostname(),
        help="this receiver's name, as senders find it (default: the host name)",
    )
    parser.add_argument(
        "--interface",
        metavar="ADDR",
        help="advertise (mDNS) on this interface's address only, and that address "
        "(default: the --listen address; all interfaces if it is 0.0.0.0)",
    )
    parser.add_argument(
        "--no-advertise", action="store_true", help="do not advertise by mDNS/DNS-SD"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="also take plain, unencrypted RTP from anyone on the network (for ffmpeg and "
        "GStreamer senders); paired senders stay encrypted",
    )
    parser.add_argument("--list-devices", action="store_true", help="list sound devices and exit")
    parser.add_argument(
        "--list-sinks",
        action="store_true",
        help="list the virtual mic backends and output devices, and what is missing",
    )
    add_dsp_options(parser, default_preset=None)
    add_logging_options(parser)
    return parser


async def _main(args: argparse.Namespace) -> int:
    from airmic.common.devices import describe_devices
    from airmic.receiver.pipeline import ReceiverConfig, run_receiver
    from airmic.receiver.sinks import parse_sink
    from airmic.receiver.virtual_mic import describe_sinks

    freeze()
    if args.list_devices:
        print(describe_devices())
        return 0
    if args.list_sinks:
        print(describe_sinks())
        return 0
    with ExitStack() as opened:  # a virtual mic made at start is removed whatever happens
        sinks = []
        for spec in args.sink or [None]:
            if args.mics == "per-room" and spec in (None, "virtual"):
                sinks.append(room_mics([room.name for room in args.room]))
            else:
                sinks.append(parse_sink(spec) if spec else default_sink())
            opened.callback(sinks[-1].close)
        config = ReceiverConfig(
            listen=args.listen,
            sinks=sinks,
            latency=args.latency,
            exit_after_idle=args.exit_after_idle,
            stats_json=Path(args.stats_json) if args.stats_json else None,
            max_streams=args.max_streams,
            clock_ppm=args.clock_ppm,
            dsp=settings_from_args(args, default_preset=None),
            web=web_config(args),
            name=args.name,
            discovery=not args.no_advertise,
            interface=args.interface,
            insecure=args.insecure,
            record=args.record,
            rooms=args.room,
            workers=args.workers,
        )
        cards = [f.spec for f in sinks if f.spec.startswith("device:")]
        if args.workers and cards:  # a sound card plays in this process: say so now
            raise UsageError(f"--sink {cards[0]} plays in the receiver's process, not in "
                             "--workers: files and virtual mics only")  # fmt: skip
        await run_receiver(config, stop_event())
    return 0


def web_config(args: argparse.Namespace) -> WebConfig | None:
    if args.web is False:
        return None
    if args.web is None:  # the default: HTTPS where the UDP socket listens, same port number
        host, port = args.listen
        return WebConfig(host, port, tls=True, new_token=args.new_token)
    return dataclasses.replace(args.web, new_token=args.new_token)


def room_mics(rooms: list[str]) -> SinkFactory:
    """--mics per-room: a virtual mic per room (Linux: PulseAudio or PipeWire)."""
    from airmic.receiver.virtual_mic import PLATFORM, RoomMicsSinkFactory

    if PLATFORM != "linux":
        raise UsageError("--mics per-room needs PulseAudio or PipeWire (Linux) for now")
    return RoomMicsSinkFactory(rooms)


def default_sink() -> SinkFactory:
    """The virtual mic; without one, an error: never the speakers, which no one chose."""
    from airmic.receiver.sinks import parse_sink
    from airmic.receiver.virtual_mic import NoPulseServer

    try:
        return parse_sink("virtual")
    except NoPulseServer as exc:
        raise NoPulseServer(
            f"{exc}; or choose where the audio goes: --sink wav:PATH, --sink device:NAME "
            "(airmic-receive --list-sinks)"
        ) from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["pair"], ["paired"], ["unpair"]):
        from airmic.receiver import pairing_cli

        return run(pairing_cli.main, pairing_cli.build_parser().parse_args(argv))
    args = build_parser().parse_args(argv)
    return run(_main, args)


if __name__ == "__main__":
    sys.exit(main())
