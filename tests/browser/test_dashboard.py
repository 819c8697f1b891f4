"""The dashboard in Chromium, on the PC (loopback, no token): two paired senders' rooms
appear live, a mute from the page silences that room's mic and only it (each mic recorded
with parecord), a room whose sender stops goes idle, "Pair a device" shows a code and the
QR code; a screenshot is kept."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from tests.audio_match import as_counted, match
from tests.chromium import chromium
from tests.e2e.test_rooms import decode, homes, looped, sender, voices  # noqa: F401 (fixtures)
from tests.processes import Process, ReceiverProcess
from tests.pulse import record_source

pytestmark = pytest.mark.browser
RATE = 48_000
SCREENSHOT = Path(__file__).resolve().parents[2] / "out" / "dashboard.png"


def record(room: str, folder: Path, env: dict[str, str], seconds: float) -> np.ndarray:
    path = folder / f"{room}-{time.monotonic_ns()}.wav"
    recorder = Process(record_source(f"airmic_{room}", path), folder, f"rec-{room}", env)
    deadline = time.monotonic() + 20
    while not path.exists() or path.stat().st_size < seconds * RATE * 2 + 44:
        assert time.monotonic() < deadline, f"{room}'s mic was not recorded"
        time.sleep(0.05)
    recorder.stop()
    return decode(path)


def test_the_dashboard_shows_and_sets_the_rooms(tmp_path, udp_port, homes, voices, pulse):  # noqa: F811
    env = {**pulse, "XDG_CONFIG_HOME": homes["receiver"]["XDG_CONFIG_HOME"]}
    receiver = ReceiverProcess(tmp_path, udp_port, "--mics", "per-room", idle=None,
                               sinks=("virtual",), env=env, secure=True)  # fmt: skip
    receiver.wait_for("dashboard (every room")
    url = re.search(r"dashboard \(every room, live; pairing\): (\S+)", receiver.stderr)[1]
    assert url == f"https://127.0.0.1:{udp_port}/dashboard"  # on this PC: no token
    talking = {room: sender(tmp_path, udp_port, homes[room], room, voices[room], "--loop")
               for room in ("kitchen", "hall")}  # fmt: skip

    with chromium(None, None, tmp_path, phone=False) as context:
        page = context.new_page()
        page.set_viewport_size({"width": 1280, "height": 720})
        page.goto(url)
        for room in talking:
            page.wait_for_selector(f'.room[data-room="{room}"][data-live="true"]', timeout=20_000)
        kitchen = page.locator('.room[data-room="kitchen"]')
        assert kitchen.locator(".link").inner_text() == "UDP, encrypted"

        kitchen.locator(".mute").click()
        page.wait_for_selector('.room[data-room="kitchen"][data-muted="true"]', timeout=5_000)
        assert "muted" in receiver.stderr or receiver.wait_for("room kitchen: muted") is None
        time.sleep(0.3)  # the blocks already queued at the server play out
        silent, heard = (
            record("kitchen", tmp_path, pulse, 1.5),
            record("hall", tmp_path, pulse, 3.0),  # one stall counted (Chromium starting)
            # weighs less in 3 s: one CI run's 1.5 s matched 0.7995
        )
        assert np.max(np.abs(silent[RATE // 4 :])) < 1e-3  # muted: nothing at its mic
        said = decode(voices["hall"])
        hall = match(looped(said, heard), heard)  # the other room plays on: asserted below

        page.click("#pair")
        page.wait_for_selector("#pairing:not([hidden]) svg", timeout=5_000)
        code = page.locator("#code").inner_text()
        assert re.fullmatch(r"\d{3} \d{3}", code)
        assert page.locator("#command").inner_text() == f"airmic-send pair {code.replace(' ', '')}"
        page.wait_for_timeout(1500)  # a few seconds of history in the plots
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "dashboard.png", SCREENSHOT)

        talking["hall"].stop()  # its room goes idle: the sender ended its stream
        page.wait_for_selector('.room[data-room="hall"][data-live="false"]', timeout=15_000)
        assert page.locator('.room[data-room="kitchen"][data-live="true"]').count() == 1
    talking["kitchen"].stop()
    assert receiver.stop() == 0, receiver.stderr
    streams = {s["stream"].split()[0]: s for s in receiver.stats()["streams"]}
    # Chromium starting beside it stalls the mic now and then: what that cost must be counted.
    counted = {k: streams["hall"][k] for k in ("gaps", "gap_ms", "underruns", "stretched")}
    print(f"hall's mic: {hall.correlation:.3f}, longest gap {hall.longest_gap} frames; {counted}")
    assert as_counted(hall, streams["hall"], 0.9), (hall.correlation, hall.longest_gap, counted)
