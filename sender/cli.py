"""airmic-send: capture audio, encode it as Opus, and stream it to airmic-receive."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
import textwrap
from typing import TYPE_CHECKING

from airmic.common.cli import (
    DEFAULT_PORT,
    Parser,
    add_logging_options,
    auto_or,
    bandwidth,
    bitrate,
    freeze,
    parse_address,
    positive_float,
    run,
    stop_event,
)
from airmic.common.dsp import PRESETS, add_dsp_options, settings_from_args
from airmic.common.errors import NetworkError, UsageError
from airmic.common.opus import FRAME_MS, OpusConfig
from airmic.common.red import MAX_DEPTH, MAX_REACH, RED_PAYLOAD_TYPE

# What streaming needs (aiortc, zeroconf, scipy, sounddevice: a second and more to load) is
# imported in the functions that use it: --help, pair and --list-devices do not wait for it.
if TYPE_CHECKING:
    from airmic.sender.webrtc import WhipTarget

log = logging.getLogger(__name__)


def _presets() -> str:
    lines = []
    for name, preset in PRESETS.items():
        wrapped = [line for note in preset.notes for line in textwrap.wrap(note, 76)]
        lines += [f"  {name if i == 0 else '':11s}{line}" for i, line in enumerate(wrapped)]
    return "\n".join(lines)


EXAMPLES = f"""\
inputs:
  pulse[:SOURCE]      a PulseAudio/PipeWire source, through libpulse: the lowest latency on
                      Linux; 'pulse' alone is the server's default (pactl list sources short)
  device:NAME|INDEX   a sound card input (see --list-devices); 'device' alone is the default
  file:PATH           a WAV, FLAC or OGG file, streamed in real time, then the sender exits
  tone:FREQ           a sine wave, for checking a set-up

commands:
  airmic-send pair [RECEIVER] CODE   pair with a receiver, once (airmic-receive pair shows
                                     the code: 123 456)
  airmic-send paired                 list the paired receivers
  airmic-send unpair NAME            forget one
  airmic-send probe [--input SPEC]   record a few seconds, say what the input needs and which
                                     preset and gain suit it (airmic-send probe --help)

examples:
  airmic-send
      stream the default microphone to the paired receiver, found on the network
  airmic-send --to 192.168.1.20
      stream the default microphone to the receiver on 192.168.1.20, port {DEFAULT_PORT}
  airmic-send --to 127.0.0.1:{DEFAULT_PORT} --input file:speech.wav --loop
      stream a file again and again (Ctrl-C stops)
  airmic-send --to pc.local --input tone:440 --duration 5
      a 440 Hz tone for five seconds
  airmic-send --to 192.168.1.20 --input device:USB --frame-ms 5 --low-latency
      the lowest latency: 5 ms frames and low-delay Opus (no in-band FEC)
  airmic-send --to 192.168.1.20 --preset earbuds --gain 34dB --invert
      earbuds plugged into the mic jack: gain, EQ, hum and noise removal, levelling
  airmic-send --to 192.168.1.20 --preset speaker --eq presence:+4dB@3k --no-gate
      a loudspeaker driver, with one more EQ band and no gate
  airmic-send --to 'https://192.168.1.20:{DEFAULT_PORT}/?token=...' --name office
      over WebRTC, where UDP is blocked: the link is the phone page's, as airmic-receive
      prints it (its certificate's fingerprint is shown; --fingerprint checks it)

presets:
{_presets()}
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="airmic-send",
        description="Stream audio from a microphone, file or tone to airmic-receive, as Opus "
        "over RTP/UDP or WebRTC.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--to",
        metavar="NAME|HOST[:PORT]|LINK",
        help="the receiver: its name on the network, its address for RTP/UDP (port "
        f"{DEFAULT_PORT} if none is given), or the link airmic-receive prints "
        "(https://HOST:PORT/?token=...) for WebRTC; default: the paired receiver found",
    )
    parser.add_argument(
        "--discover", action="store_true", help="list the receivers on the network and exit"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="plain, unencrypted RTP, for receivers that are not airmic (ffmpeg, GStreamer) "
        "or run with --insecure; by default the stream is encrypted for a paired receiver",
    )
    parser.add_argument(
        "--interface",
        metavar="ADDR",
        help="look for receivers (mDNS) on this interface's address only (default: all)",
    )
    parser.add_argument(
        "--transport",
        choices=("udp", "webrtc"),
        help="RTP over UDP (the lowest latency) or WebRTC through the receiver's HTTPS port "
        "(default: as --to says)",
    )
    parser.add_argument(
        "--name",
        default=socket.gethostname(),
        help="this sender's name on the receiver, its room there, for WebRTC and plain RTP "
        "(a paired sender's is the name it paired with; default: the host name)",
    )
    parser.add_argument(
        "--fingerprint",
        metavar="SHA256",
        help="WebRTC: the receiver's certificate fingerprint, as airmic-receive prints it; "
        "any other certificate is refused",
    )
    parser.add_argument(
        "-i",
        "--input",
        metavar="SPEC",
        default=None,
        help="what to send: pulse[:SOURCE], device:NAME|INDEX, file:PATH or tone:FREQ "
        "(default: the PulseAudio server's default source where there is one, else the "
        "default input device)",
    )
    parser.add_argument("--list-devices", action="store_true", help="list sound devices and exit")
    parser.add_argument("--loop", action="store_true", help="repeat a file input until stopped")
    parser.add_argument(
        "--duration", metavar="SECONDS", type=positive_float, help="stop after this much audio"
    )
    opus = parser.add_argument_group("Opus encoding")
    opus.add_argument(
        "--frame-ms",
        type=float,
        default=10.0,
        choices=FRAME_MS,
        help="frame duration in ms (default 10)",
    )
    opus.add_argument(
        "--bitrate",
        type=bitrate,
        default=64_000,
        metavar="BIT/S",
        help="Opus bitrate: 64000 or 64k (default 64k; 6k to 510k)",
    )
    opus.add_argument(
        "--max-bandwidth",
        type=bandwidth,
        default=None,
        metavar="BIT/S",
        help="the most the stream may take on the wire, copies and headers included, e.g. "
        "160k: when losses call for copies, the Opus bitrate comes down to make room for "
        "them (to 16k; then fewer copies). Default: no cap (64k audio with the most copies "
        "takes about 300k)",
    )
    opus.add_argument(
        "--low-latency",
        action="store_true",
        help="low-delay Opus (CELT only, 2.5 ms look-ahead instead of 6.5), which carries no FEC",
    )
    opus.add_argument(
        "--expected-loss",
        type=auto_or(0, 100),
        default=None,
        metavar="PERCENT",
        help="loss the in-band FEC is tuned for; auto (the default, over UDP): 1 %% while "
        "the copies adapt (they bring a lost packet back exact, where FEC costs quality); "
        "with --redundancy fixed, from the receiver's reports, 1 %% on a clean network and up "
        "to 25 %% (10 %% until a report comes, and always over WebRTC)",
    )
    opus.add_argument("--no-fec", action="store_true", help="no in-band FEC")
    opus.add_argument(
        "--redundancy",
        type=auto_or(0, MAX_DEPTH),
        default=None,
        metavar="N",
        help="also send copies of the last N packets in each one (RFC 2198, payload type "
        f"{RED_PAYLOAD_TYPE}): a lost packet comes back exact, for N+1 times the bitrate. "
        "auto (the default): from the receiver's reports, none on a clean network; when it "
        f"loses, up to {MAX_DEPTH} copies spaced to reach back as far as its losses come in a "
        f"row (up to {MAX_REACH} packets); 1 until 3 s of reports without a loss; 0 for peers "
        "that only take plain Opus",
    )
    add_dsp_options(parser)
    opus.add_argument(
        "--payload-type",
        type=int,
        default=96,
        metavar="PT",
        help="RTP payload type, 96-127 (default 96)",
    )
    add_logging_options(parser)
    return parser


async def _main(args: argparse.Namespace) -> int:
    if args.list_devices:
        print(list_devices())
        return 0
    if args.discover:
        from airmic.sender.pairing import list_receivers

        return await list_receivers(args.interface)
    # The options first, before the slow imports: a mistyped one is refused at once.
    if not 96 <= args.payload_type <= 127:
        raise UsageError("--payload-type must be a dynamic type, 96-127 (RFC 7587)")
    try:
        opus = OpusConfig(
            frame_ms=args.frame_ms,
            bitrate=args.bitrate,
            low_latency=args.low_latency,
            fec=not args.no_fec,
            expected_loss=10 if args.expected_loss is None else args.expected_loss,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    dsp = settings_from_args(args)
    from airmic.sender.pipeline import SenderConfig, run_sender

    to = await destination(args)  # imports discovery, the secure link, WebRTC
    freeze()
    config = SenderConfig(
        to=to,
        input=args.input,
        opus=opus,
        loop=args.loop,
        payload_type=args.payload_type,
        redundancy=args.redundancy,
        max_bandwidth=args.max_bandwidth,
        adaptive_fec=args.expected_loss is None,
        duration=args.duration,
        insecure=args.insecure,
        dsp=dsp,
        name=args.name,
    )
    await run_sender(config, stop_event())
    return 0


def list_devices() -> str:
    """--list-devices: the sound server's sources (Linux), then PortAudio's devices."""
    from airmic.common.devices import describe_devices
    from airmic.common.errors import DeviceError

    parts = []
    if sys.platform == "linux":
        from airmic.sender.pulse_source import describe_sources

        try:
            listing = describe_sources()
        except DeviceError as exc:
            listing = f"  none: {exc}"
        parts.append(f"PulseAudio / PipeWire sources (--input pulse:NAME):\n{listing}")
    try:
        listing = describe_devices()
    except DeviceError as exc:
        listing = f"none: {exc}"
    parts.append(f"sound devices (--input device:NAME|INDEX):\n{textwrap.indent(listing, '  ')}")
    return "\n\n".join(parts)


async def destination(args: argparse.Namespace) -> tuple[str, int] | WhipTarget:
    """--to and --transport: an address for RTP/UDP, or a link for WebRTC; with no --to, or
    a name, the receiver found on the network (the paired one)."""
    from airmic.sender.discovery import PATIENCE, choose, discover, names, paired_found
    from airmic.sender.secure import receivers
    from airmic.sender.webrtc import WhipTarget

    if args.to is None or (_is_name(args.to) and args.transport != "webrtc"):
        known = receivers()
        if args.to is None and known.all():  # until the paired receiver answers
            log.info("looking for %s on the network…", " or ".join(p.name for p in known.all()))
            everyone = await discover(args.interface, PATIENCE, paired_found(known), known)
        else:  # a name, or none paired yet: whoever answers
            everyone = await discover(args.interface, known=known)
        named = args.to is not None and any(f.name.lower() == args.to.lower() for f in everyone)
        if args.to is None or named:
            found = await choose(everyone, known, args.to)
            log.info("found %s at %s:%d", found.name, found.address, found.port)
            return found.address, found.port
        # no receiver of that name: a host name (localhost, pc) as before
        if not await _resolves(args.to):
            raise NetworkError(
                f"no receiver named {args.to!r} (found: {names(everyone)}), and no host of "
                f"that name: cannot resolve {args.to!r}"
            )
    link = args.to.startswith(("https://", "http://"))
    if args.transport == "udp" and link:
        raise UsageError("RTP/UDP goes to an address: --to HOST[:PORT], not a link")
    if args.transport == "webrtc" and not link:
        raise UsageError(
            "WebRTC needs the receiver's link with its token: --to 'https://HOST:PORT/?token=...'"
            " (airmic-receive prints it at start)"
        )
    if link:
        return WhipTarget.parse(args.to, args.name, args.fingerprint)
    try:
        return parse_address(args.to)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(str(exc)) from None


async def _resolves(host: str) -> bool:
    try:
        await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        return False
    return True


def _is_name(text: str) -> bool:
    """A receiver's name rather than an address: no dots, colons or digits first."""
    return not (text[0].isdigit() or "." in text or ":" in text or text.startswith("["))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pair"]:
        from airmic.sender import pairing

        return run(pairing.main, pairing.build_parser().parse_args(argv[1:]))
    if argv[:1] in (["paired"], ["unpair"]):
        from airmic.sender import pairing

        return run(pairing.peers, pairing.build_peers_parser().parse_args(argv))
    if argv[:1] == ["probe"]:
        from airmic.sender import probe

        return run(probe.probe, probe.build_parser().parse_args(argv[1:]))
    args = build_parser().parse_args(argv)
    return run(_main, args)


if __name__ == "__main__":
    sys.exit(main())
