"""The dashboard: a page for the PC that shows every room live and sets it.

    GET  /dashboard                 the page (dashboard.html, .js, .css, no build step)
    GET  /dashboard/events          server-sent events: the rooms, four times a second
    POST /dashboard/rooms/NAME      {"muted": true, "gain_db": 6, "preset": "earbuds"}
    POST /dashboard/rooms/NAME/end  end the room's streams (a sender reconnects at once)
    POST /dashboard/rooms/NAME/unpair   revoke the paired sender of that name
    POST /dashboard/pair            open a pairing window: its code, and the phone page's QR

Open from this PC (a loopback address) without the token; from anywhere else only with it.
Changes are JSON posts: a page of another site cannot send those without the CORS preflight
that nothing here answers, so it cannot mute a room behind the user's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import segno
from aiohttp import web

from airmic.common.dsp import PRESETS
from airmic.common.errors import UsageError
from airmic.common.pairing import FAILURES_PER_ADDRESS, WINDOW_SECONDS, new_code
from airmic.receiver.access import Access
from airmic.receiver.pairing import open_window, read_window

log = logging.getLogger(__name__)

PAGE = Path(__file__).parent / "page"
FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
EVERY = 0.25
"""Seconds between two updates on the page."""


class Control(Protocol):
    """What the dashboard needs of the receiver (receiver/pipeline.py's Receiver)."""

    def rooms_view(self) -> list[dict[str, Any]]: ...
    def set_room(self, name: str, changes: dict[str, Any]) -> None: ...
    def end_room(self, name: str) -> int: ...
    def unpair_room(self, name: str) -> None: ...


@dataclass
class Dashboard:
    control: Control
    access: Access
    folder: Path  # the receiver's config: the pairing window's file
    page_link: Callable[[], str]  # the phone page's link, with its token
    closing: asyncio.Event
    _page: bytes = field(default=b"", init=False)  # the page, read once by routes()

    def routes(self, app: web.Application) -> None:
        self._page = (PAGE / "dashboard.html").read_bytes()
        app.router.add_get("/dashboard", self.page)
        app.router.add_get("/dashboard/events", self.events)
        app.router.add_post("/dashboard/pair", self.pair)
        app.router.add_post("/dashboard/rooms/{name}", self.change)
        app.router.add_post("/dashboard/rooms/{name}/end", self.end)
        app.router.add_post("/dashboard/rooms/{name}/unpair", self.unpair)
        for name, kind in FILES.items():
            body = (PAGE / name).read_bytes()
            app.router.add_get(f"/dashboard/{name}", self._file(body, kind))
        app.on_shutdown.append(self._shutdown)

    def _allowed(self, request: web.Request) -> None:
        if _local(request) or self.access.allows(request):
            return
        raise web.HTTPUnauthorized(
            text="the dashboard is open on this PC; from elsewhere it needs the token\n"
        )

    def _file(self, body: bytes, kind: str) -> Callable[[web.Request], Any]:
        async def serve(request: web.Request) -> web.StreamResponse:  # no data in them
            return web.Response(body=body, content_type=kind, headers={"Cache-Control": "no-store"})

        return serve

    async def page(self, request: web.Request) -> web.StreamResponse:
        self._allowed(request)
        return web.Response(
            body=self._page, content_type="text/html", headers={"Cache-Control": "no-store"}
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        """The rooms as server-sent events, until the page goes or the receiver stops."""
        self._allowed(request)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        presets = list(PRESETS)
        while not self.closing.is_set():
            update = {"rooms": self.control.rooms_view(), "presets": presets}
            try:
                await response.write(f"data: {json.dumps(update)}\n\n".encode())
            except (ConnectionResetError, RuntimeError):  # the page went away
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), EVERY)
        return response

    async def change(self, request: web.Request) -> web.StreamResponse:
        name = await self._room_request(request)
        changes = await _json(request)
        try:
            self.control.set_room(name, changes)
        except UsageError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        return web.json_response({"ok": True})

    async def end(self, request: web.Request) -> web.StreamResponse:
        name = await self._room_request(request)
        return web.json_response({"ended": self.control.end_room(name)})

    async def unpair(self, request: web.Request) -> web.StreamResponse:
        name = await self._room_request(request)
        try:
            self.control.unpair_room(name)
        except UsageError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        return web.json_response({"ok": True})

    async def pair(self, request: web.Request) -> web.StreamResponse:
        self._allowed(request)
        _json_only(request)
        window = read_window(self.folder)
        code = new_code()
        if window is not None and "outcome" not in window:
            raise web.HTTPConflict(text="a pairing window is open already (airmic-receive pair?)\n")
        open_window(self.folder, code, WINDOW_SECONDS)
        link = self.page_link()
        log.info("pairing window opened from the dashboard")
        return web.json_response(
            {
                "code": f"{code[:3]} {code[3:]}",
                "command": f"airmic-send pair {code}",
                "minutes": WINDOW_SECONDS / 60,
                "attempts": FAILURES_PER_ADDRESS,
                "link": link,
                "qr": segno.make(link, error="l").svg_inline(scale=5, dark="#000", light="#fff"),
            }
        )

    async def _room_request(self, request: web.Request) -> str:
        self._allowed(request)
        _json_only(request)
        return request.match_info["name"]

    async def _shutdown(self, app: web.Application) -> None:
        self.closing.set()  # the event streams end, so the server's close does not wait


def _local(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def _json_only(request: web.Request) -> None:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="changes are application/json\n")


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise web.HTTPBadRequest(text="not JSON\n") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="a JSON object, please\n")
    return body
