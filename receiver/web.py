"""The receiver's web server: the phone page and the WHIP endpoint, over HTTPS.

GET  /?token=T            the page (a phone opens it from the QR code)
GET  /presets?token=T     the DSP presets a browser's stream can ask for (JSON)
GET  /about?token=T       the receiver's name (JSON), for the page's "connected to"
POST /whip?token=T        an SDP offer -> 201, the answer and the session's Location
                          (&name=ROOM names the stream, &preset=NAME processes it)
GET  /whip/ID?token=T     the receiver's view of that stream (JSON: delay, loss, level),
                          and its wall clock (&offset=S: the page's measure of it against
                          its own, for the stream's end-to-end latency)
DELETE /whip/ID?token=T   the end of that stream
POST /pair, /pair/ID      a sender's pairing attempt (no token: the code is the proof)
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, cast

import segno
from aiohttp import web

from airmic.common.dsp import PRESETS
from airmic.common.errors import NetworkError
from airmic.common.log import OnceLogger
from airmic.common.pairing import PairingError
from airmic.common.status import CONSOLE
from airmic.receiver.access import Access
from airmic.receiver.dashboard import Control, Dashboard
from airmic.receiver.pairing import PairingDesk
from airmic.receiver.tls import Certificate, load_certificate
from airmic.receiver.web_config import WebConfig, lan_addresses
from airmic.receiver.web_gate import KEEPALIVE, GatedSite
from airmic.receiver.whip import MAX_OFFER, BadOffer, WhipEndpoint

log = logging.getLogger(__name__)

PAGE = resources.files("airmic.receiver") / "page"
ASSETS = {
    "app.js": "text/javascript",
    "style.css": "text/css",
    "theme.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
LABEL = re.compile(r"[^\w .'-]+")


@dataclass
class WebServer:
    runner: web.AppRunner
    base: str  # scheme, host and port
    token: str
    fingerprint: str | None  # of the certificate
    also: list[tuple[str, str]] = field(default_factory=list)  # other bases, their interface
    dashboard: str = ""  # the dashboard's link, for this PC

    @property
    def url(self) -> str:
        """What the user opens: the page, with its token."""
        return f"{self.base}/?token={self.token}"

    def announce(self) -> None:
        """The URL, its QR code and the certificate's fingerprint, on the terminal; the other
        addresses it is served at (a VPN, a second network). No QR code of a loopback link:
        a phone cannot open it."""
        if ipaddress.ip_address(urllib.parse.urlsplit(self.base).hostname or "").is_loopback:
            log.info(
                "phone page: %s (on this PC only, no QR code: a phone cannot open a loopback "
                "address; --listen 0.0.0.0 serves it on the LAN)",
                self.url,
            )
        else:
            CONSOLE.print(qr_code(self.url), end="", highlight=False)
            log.info("phone page: %s", self.url)
        for base, interface in self.also:
            log.info("  also on %s: %s/?token=%s", interface, base, self.token)
        if self.fingerprint:
            log.info("its certificate's SHA-256 fingerprint: %s", self.fingerprint)
        if self.dashboard:
            log.info("dashboard (every room, live; pairing): %s", self.dashboard)

    async def close(self) -> None:
        await self.runner.cleanup()


MAX_OFFSET = 86_400.0
"""A browser's clock may be set a day wrong, no more (seconds)."""


def clock_offset(text: str) -> float | None:
    """The page's measure of how far this host's wall clock is ahead of the browser's: its
    RTCP sender reports are on the browser's clock. None if it is not a sane number."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if abs(value) <= MAX_OFFSET else None


def qr_code(text: str) -> str:
    """`text` as a QR code for the terminal (half-block characters)."""
    qr = io.StringIO()
    segno.make(text, error="l").terminal(out=qr, compact=True)
    return qr.getvalue()


async def start_web(
    config: WebConfig,
    folder: Path,
    whip: WhipEndpoint,
    stream_stats: Callable[[str], dict[str, Any] | None],
    desk: PairingDesk,
    control: Control | None = None,
) -> WebServer:
    access = Access.load(folder / "token", renew=config.new_token)
    host = config.public_host()
    certificate = load_certificate(folder / "tls", [host]) if config.tls else None
    app = build_app(access, whip, stream_stats, desk)
    server: list[WebServer] = []
    if control is not None:
        dashboard = Dashboard(control, access, folder, lambda: server[0].url, asyncio.Event())
        dashboard.routes(app)
    server.append(await serve(app, config, host, certificate, access.token))
    return server[0]


def build_app(
    access: Access,
    whip: WhipEndpoint,
    stream_stats: Callable[[str], dict[str, Any] | None],
    desk: PairingDesk,
) -> web.Application:
    """The routes; `stream_stats(publication id)` is the receiver's view of a stream.
    Pairing needs no token: the code proves itself (SPAKE2), and the desk limits attempts."""
    index = (PAGE / "index.html").read_bytes()  # read once: a few kB, never changed
    denied = (PAGE / "denied.html").read_bytes()
    assets = {name: (PAGE / name).read_bytes() for name in ASSETS}

    def allowed(request: web.Request) -> None:
        if not access.allows(request):
            raise web.HTTPUnauthorized(
                text="a valid token is needed: open the link or QR code the receiver shows\n",
                headers={"WWW-Authenticate": 'Bearer realm="airmic"'},
            )

    async def page(request: web.Request) -> web.StreamResponse:
        headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        if not access.allows(request):  # a phone's user: a page that says what to do
            headers["WWW-Authenticate"] = 'Bearer realm="airmic"'
            return web.Response(status=401, body=denied, content_type="text/html", headers=headers)
        return web.Response(body=index, content_type="text/html", headers=headers)

    async def about(request: web.Request) -> web.StreamResponse:
        allowed(request)
        return web.json_response({"name": desk.name})

    async def favicon(request: web.Request) -> web.StreamResponse:
        return web.Response(body=assets["favicon.svg"], content_type=ASSETS["favicon.svg"])

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise web.HTTPNotFound()
        return web.Response(body=assets[name], content_type=ASSETS[name])

    async def publish(request: web.Request) -> web.StreamResponse:
        allowed(request)
        if request.content_type != "application/sdp":
            raise web.HTTPUnsupportedMediaType(text="the offer must be application/sdp\n")
        try:
            offer = (await request.read()).decode()  # client_max_size bounds it
        except UnicodeDecodeError:
            raise web.HTTPBadRequest(text="the offer is not text\n") from None
        name = LABEL.sub("", request.query.get("name", ""))[:40].strip()
        label = name or f"WHIP from {request.remote}"
        preset = request.query.get("preset") or None
        if preset is not None and preset not in PRESETS:
            raise web.HTTPBadRequest(text=f"unknown preset: one of {', '.join(PRESETS)}\n")
        try:
            publication, answer = await whip.publish(offer, label, preset)
        except BadOffer as exc:
            log.info("refused a WHIP offer from %s: %s", request.remote, exc)
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": f"/whip/{publication.id}"},
        )

    async def presets(request: web.Request) -> web.StreamResponse:
        allowed(request)
        return web.json_response(
            [{"name": name, "about": p.notes[0] if p.notes else ""} for name, p in PRESETS.items()]
        )

    async def stats(request: web.Request) -> web.StreamResponse:
        allowed(request)
        publication_id = request.match_info["id"]
        publication = whip.publications.get(publication_id)
        if publication is None:
            raise web.HTTPNotFound()
        if "offset" in request.query:  # the page's measure of this clock against its own
            publication.offset = clock_offset(request.query["offset"])
        return web.json_response(
            {"label": publication.label, "state": publication.pc.connectionState}
            | {"stream": stream_stats(publication_id), "clock": time.time()},
            headers={"Cache-Control": "no-store"},
        )

    async def end(request: web.Request) -> web.StreamResponse:
        allowed(request)
        if not await whip.end(request.match_info["id"]):
            raise web.HTTPNotFound()
        return web.Response(status=200)

    async def pairing_message(request: web.Request) -> Any:
        try:
            return json.loads(await request.read())
        except ValueError:
            raise web.HTTPBadRequest(text="a pairing message is JSON\n") from None

    async def pair(request: web.Request) -> web.StreamResponse:
        start = await pairing_message(request)
        try:
            attempt_id, reply = desk.begin(start, request.remote or "?")
        except PairingError as exc:
            raise web.HTTPForbidden(text=f"{exc}\n") from None
        return web.json_response(reply | {"next": f"/pair/{attempt_id}"})

    async def pair_finish(request: web.Request) -> web.StreamResponse:
        finish = await pairing_message(request)
        try:
            answer = desk.finish(request.match_info["id"], finish, request.remote or "?")
        except PairingError as exc:
            raise web.HTTPForbidden(text=f"{exc}\n") from None
        return web.json_response(answer)

    async def no_trickle(request: web.Request) -> web.StreamResponse:
        # The answer carries every candidate (aiortc gathers them first), so there is
        # nothing to trickle: RFC 9725 section 4.3.1 lets the server say so with 405.
        raise web.HTTPMethodNotAllowed("PATCH", ["GET", "DELETE"])

    errors = OnceLogger(log)

    @web.middleware
    async def contained(request: web.Request, handler: Any) -> web.StreamResponse:
        """A request that breaks a handler gets a 500 and one log line per kind of failure
        (aiohttp would log a traceback for each: anyone could fill the log)."""
        try:
            return cast(web.StreamResponse, await handler(request))
        except web.HTTPException:
            raise
        except Exception as exc:
            errors.report(
                type(exc).__name__, "web: %s %s failed: %r", request.method, request.path, exc
            )
            raise web.HTTPInternalServerError(text="the receiver could not answer this\n") from None

    app = web.Application(client_max_size=4 * MAX_OFFER, middlewares=[contained])
    # (a body larger than client_max_size gets a 413 before it is read)
    app.router.add_get("/", page)
    app.router.add_get("/presets", presets)
    app.router.add_get("/about", about)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/{name:[a-z]+\\.(?:js|css|svg)}", asset)
    app.router.add_post("/whip", publish)
    app.router.add_get("/whip/{id}", stats)
    app.router.add_delete("/whip/{id}", end)
    app.router.add_patch("/whip/{id}", no_trickle)
    app.router.add_post("/pair", pair)
    app.router.add_post("/pair/{id}", pair_finish)
    return app


async def serve(
    app: web.Application, config: WebConfig, shown: str, certificate: Certificate | None, token: str
) -> WebServer:
    host, port = config.host, config.port
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=KEEPALIVE)
    await runner.setup()
    context = certificate.context() if certificate else None
    site = GatedSite(runner, host, port, ssl_context=context)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise NetworkError(
            f"cannot serve the web page on {host}:{port}: {exc.strerror} "
            "(choose another port with --web HOST:PORT, or --web off)"
        ) from None
    bound = runner.addresses[0][1] if port == 0 else port
    scheme = "https" if context else "http"
    base = f"{scheme}://{_host(shown)}:{bound}"
    also = []
    if host in ("0.0.0.0", ""):  # every IPv4 interface
        also = [(f"{scheme}://{ip}:{bound}", name) for ip, name in lan_addresses() if ip != shown]
    loopback = host in ("0.0.0.0", "", "localhost") or _loopback(host)
    dashboard = (
        f"{scheme}://127.0.0.1:{bound}/dashboard" if loopback else f"{base}/dashboard?token={token}"
    )
    fingerprint = certificate.fingerprint if certificate else None
    return WebServer(runner, base, token, fingerprint, also, dashboard)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name
        return False


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
