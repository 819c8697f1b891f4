"""A UDP proxy on loopback that impairs what passes through it, with the same seeded model
as the in-process tests (airmic.common.impair).

    .venv/bin/python scripts/impair_proxy.py --listen 127.0.0.1:6000 --to 127.0.0.1:5004 \\
        --profile bursty-10 --seed 1 [--jitter 0.005] [--exit-after-idle 3]

Profiles: clean, wifi-good, wifi-powersave, loss-5, bursty-10. It only forwards to loopback
addresses: it is a test tool, not a network emulator for real links.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from airmic.common.cli import parse_address  # noqa: E402
from airmic.common.impair import PROFILES, Impairment, profile  # noqa: E402


class Proxy(asyncio.DatagramProtocol):
    def __init__(self, impairment: Impairment, target: tuple[str, int]) -> None:
        self.impairment = impairment
        self.target = target
        self.received = self.forwarded = 0
        self.last = 0.0
        self._out: asyncio.DatagramTransport | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._out = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = self._loop.time()
        self.received += 1
        self.last = now
        for at in self.impairment.deliveries(now):
            self._loop.call_at(at, self._forward, data)

    def _forward(self, data: bytes) -> None:
        assert self._out is not None
        self._out.sendto(data, self.target)
        self.forwarded += 1


async def run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    impairment = profile(args.profile, **args.changes).seeded(args.seed)
    transport, proxy = await loop.create_datagram_endpoint(
        lambda: Proxy(impairment, args.to), local_addr=args.listen
    )
    print(
        f"impairing {args.listen[0]}:{args.listen[1]} -> {args.to[0]}:{args.to[1]} "
        f"with {args.profile} (seed {args.seed})",
        file=sys.stderr,
        flush=True,
    )
    start = loop.time()
    try:
        while True:
            await asyncio.sleep(0.1)
            idle = loop.time() - (proxy.last or start)
            if args.exit_after_idle and idle > args.exit_after_idle:
                break
    finally:
        transport.close()
        print(f"received {proxy.received}, forwarded {proxy.forwarded}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=parse_address, required=True)
    parser.add_argument("--to", type=parse_address, required=True)
    parser.add_argument("--profile", default="clean", choices=sorted(PROFILES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loss", type=float, help="override the profile's random loss")
    parser.add_argument("--jitter", type=float, help="override the profile's jitter scale (s)")
    parser.add_argument("--exit-after-idle", type=float, default=0.0)
    args = parser.parse_args()
    if not ipaddress.ip_address(args.to[0]).is_loopback:
        parser.error("--to must be a loopback address (127.0.0.0/8 or ::1)")
    args.changes = {k: v for k in ("loss", "jitter") if (v := getattr(args, k)) is not None}
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
