"""Debian's Firefox ESR, driven over WebDriver BiDi, as a phone would use the page: in its
own network namespace, its microphone the default source of a private PulseAudio server.

Firefox speaks BiDi (the W3C protocol) natively, over a websocket. Why not a library:
Playwright drives only its own patched Firefox builds (a download, not allowed here);
puppeteer-core would put a Node process between these Python tests and the browser;
Selenium needs geckodriver, which Debian does not ship. The page needs a handful of BiDi
commands, sent here with aiohttp's websocket client. The pages are driven the way the
Chromium tests drive theirs (Playwright's names: goto, fill, click, wait_for_function...),
so a test can run in either browser.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.netns import Namespace

FIREFOX = "/usr/bin/firefox-esr"
PREFS = {
    "media.navigator.permission.disabled": True,  # "allow the microphone?" answered yes
    "media.autoplay.default": 0,
    "network.captive-portal-service.enabled": False,  # no calls to Mozilla's hosts
    "network.connectivity-service.enabled": False,
    "app.update.disabledForTesting": True,
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
}
CLONE_NEWNET = 0x40000000
LISTENING = re.compile(r"WebDriver BiDi listening on (ws://\S+)")


class BidiError(AssertionError):
    """A command the browser refused, or a page that never got where it was asked to."""


class Firefox:
    """One browser and its BiDi session. Its commands run on a thread of their own, with
    its own event loop, inside the browser's network namespace (where the browser's
    websocket listens on loopback)."""

    def __init__(self, url: str, ns: Namespace | None) -> None:
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ns, ready), name="firefox", daemon=True
        )
        self._thread.start()
        ready.wait()
        self._ws = self._await(self._connect(url))
        self._next = 0
        self.command("session.new", capabilities={"alwaysMatch": {"acceptInsecureCerts": True}})

    def _run(self, ns: Namespace | None, ready: threading.Event) -> None:
        if ns is not None:  # a network namespace is a thread's: this one joins the browser's
            fd = os.open(f"/run/netns/{ns.name}", os.O_RDONLY)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
        asyncio.set_event_loop(self._loop)
        ready.set()
        self._loop.run_forever()

    def _await(self, coroutine: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _connect(self, url: str) -> aiohttp.ClientWebSocketResponse:
        self._http = aiohttp.ClientSession()
        return await self._http.ws_connect(url + "/session", max_msg_size=0)

    def command(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        return self._await(self._command(self._next, method, params))

    async def _command(self, number: int, method: str, params: dict) -> dict[str, Any]:
        await self._ws.send_json({"id": number, "method": method, "params": params})
        while True:  # events (none subscribed) and older answers are passed over
            message = await self._ws.receive_json()
            if message.get("id") == number:
                if message.get("type") == "error":
                    raise BidiError(f"{method}: {message['error']}: {message.get('message')}")
                return message["result"]

    def new_page(self) -> Page:
        context = self.command("browsingContext.create", type="tab")["context"]
        self.command("browsingContext.setViewport", context=context, devicePixelRatio=2,
                     viewport={"width": 390, "height": 844})  # a phone's  # fmt: skip
        return Page(self, context)

    def add_init_script(self, script: str) -> None:
        """Runs in every page before its own scripts (as Playwright's does)."""
        self.command("script.addPreloadScript", functionDeclaration=f"() => {{ {script} }}")

    def close(self) -> None:
        async def end() -> None:
            await self._ws.close()
            await self._http.close()

        try:
            self._await(end(), timeout=5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)


class Page:
    """A tab, with the part of Playwright's page API the tests use."""

    def __init__(self, browser: Firefox, context: str) -> None:
        self._browser = browser
        self._context = context

    def goto(self, url: str) -> None:
        self._browser.command("browsingContext.navigate", context=self._context, url=url,
                              wait="complete")  # fmt: skip

    def evaluate(self, expression: str) -> Any:
        """The expression's value (awaited, through JSON)."""
        result = self._browser.command(
            "script.evaluate",
            expression=f"(async () => JSON.stringify(await ({expression})))()",
            target={"context": self._context},
            awaitPromise=True,
        )
        if result["type"] == "exception":
            raise BidiError(f"{expression}: {result['exceptionDetails']['text']}")
        value = result["result"].get("value")
        return None if value is None else json.loads(value)

    def wait_for_function(self, expression: str, timeout: float = 30_000) -> None:
        deadline = time.monotonic() + timeout / 1000
        while not self.evaluate(f"(() => {{ try {{ return !!({expression}); }} "
                                "catch (e) { return false; } })()"):  # fmt: skip
            if time.monotonic() > deadline:
                raise BidiError(f"not within {timeout / 1000:g} s: {expression}")
            time.sleep(0.1)

    def wait_for_selector(self, selector: str, state: str = "attached") -> None:
        self.wait_for_function(f"document.querySelector({json.dumps(selector)})")

    def fill(self, selector: str, text: str) -> None:
        self._set(selector, text, "input")

    def select_option(self, selector: str, value: str) -> None:
        self._set(selector, value, "change")

    def _set(self, selector: str, value: str, event: str) -> None:
        found, value, event = (json.dumps(x) for x in (selector, value, event))
        self.evaluate(f"(() => {{ const e = document.querySelector({found}); e.value = {value}; "
                      f"e.dispatchEvent(new Event({event}, {{bubbles: true}})); }})()")  # fmt: skip

    def click(self, selector: str) -> None:
        """A real click (the browser's input, with the user activation it gives), at the
        element's middle."""
        x, y = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
            "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
            "return [Math.round(r.x + r.width / 2), Math.round(r.y + r.height / 2)]; })()"
        )
        actions = [
            {"type": "pointerMove", "x": x, "y": y},
            {"type": "pointerDown", "button": 0},
            {"type": "pointerUp", "button": 0},
        ]
        pointer = {"type": "pointer", "id": "mouse", "actions": actions}
        self._browser.command("input.performActions", context=self._context, actions=[pointer])

    def set_viewport_size(self, size: dict[str, int]) -> None:
        self._browser.command("browsingContext.setViewport", context=self._context,
                              viewport=size, devicePixelRatio=2)  # fmt: skip

    def inner_text(self, selector: str) -> str:
        return self.evaluate(f"document.querySelector({json.dumps(selector)}).innerText")

    def screenshot(self, path: Path) -> None:
        shot = self._browser.command("browsingContext.captureScreenshot", context=self._context)
        Path(path).write_bytes(base64.b64decode(shot["data"]))


@contextmanager
def firefox(
    ns: Namespace | None, folder: Path, env: dict[str, str], prefs: dict[str, Any] | None = None
) -> Iterator[Firefox]:
    """Firefox ESR inside `ns` (None: on this machine), headless, sized as a phone's screen;
    its microphone is the default source of the PulseAudio server that `env` names."""
    if not Path(FIREFOX).exists():
        pytest.fail("firefox-esr is missing: run scripts/test, which installs it")
    profile = folder / "firefox-profile"
    profile.mkdir(exist_ok=True)
    settings = {**PREFS, **(prefs or {})}
    (profile / "user.js").write_text(
        "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in settings.items())
    )
    line = [FIREFOX, "--headless", "--no-remote", "--profile", str(profile),
            "--remote-debugging-port=0"]  # fmt: skip
    log = (folder / "firefox.log").open("w")
    process = subprocess.Popen(
        ns.run(*line) if ns is not None else line,
        stdout=log,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "MOZ_HEADLESS": "1"},
    )
    browser = None
    copying = threading.Thread(target=shutil.copyfileobj, args=(process.stderr, log))
    try:
        url = _listening(process, log)
        copying.start()  # the rest of its stderr (a full pipe would block the browser)
        browser = Firefox(url, ns)
        yield browser
    finally:
        if browser is not None:
            with contextlib.suppress(Exception):  # the browser may be gone: it is stopped next
                browser.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if copying.ident is not None:
            copying.join(timeout=5)
        log.close()
        shutil.rmtree(profile, ignore_errors=True)


def _listening(process: subprocess.Popen, log: Any) -> str:
    """The websocket the browser says it listens on (its stderr, to here, goes to `log`)."""
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    for line in process.stderr:
        log.write(line)
        found = LISTENING.search(line)
        if found:
            return found[1]
        if time.monotonic() > deadline:
            break
    raise BidiError(f"Firefox did not start (exit {process.poll()}): see {log.name}")
