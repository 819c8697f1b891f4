"""Debian's Chromium, driven by Playwright, as a phone would use the page: in its own
network namespace, with a WAV file as its microphone; or on this PC, for the dashboard."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.netns import Namespace

CHROMIUM = "/usr/bin/chromium"

FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # else it calls Google's hosts, refused here
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",  # "allow the microphone?" answered yes
]


@contextmanager
def chromium(
    ns: Namespace | None,
    microphone: Path | None,
    folder: Path,
    phone: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator:
    """A Playwright browser context in Chromium inside `ns` (None: on this machine), sized
    as a phone's screen, whose microphone plays `microphone` in a loop; or, with None,
    captures the default source of the PulseAudio server that `env` names."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: run scripts/test, which installs it")
    from playwright.sync_api import sync_playwright

    # Playwright talks to the browser over a pipe, so the browser can live in the namespace.
    wrapper = folder / "chromium-in-netns"
    line = ns.run(CHROMIUM) if ns is not None else [CHROMIUM]
    wrapper.write_text(f'#!/bin/sh\nexec {" ".join(line)} "$@"\n')
    wrapper.chmod(0o755)
    profile = folder / "profile"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(wrapper),
            headless=True,
            args=FLAGS + fake_microphone(microphone),
            env=env,
        )
        try:
            context = browser.new_context(
                ignore_https_errors=True,  # the receiver's self-signed certificate, accepted
                viewport={"width": 390, "height": 844} if phone else None,
                device_scale_factor=2 if phone else None,
                is_mobile=phone,
                has_touch=phone,
            )
            yield context
        finally:
            browser.close()
            shutil.rmtree(profile, ignore_errors=True)


def fake_microphone(wav: Path | None) -> list[str]:
    if wav is None:
        return []
    return ["--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}"]
