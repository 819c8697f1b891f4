"""The phone page in real browsers, Chromium and Firefox: each opens the receiver's HTTPS
page from another network namespace (a phone on the LAN), presses Start, and its
microphone's speech comes out of the receiver through WebRTC, the WHIP endpoint and
airmic's jitter buffer. Chromium's microphone is its fake device playing the speech in a
loop; Firefox's a PulseAudio source the speech is played into."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from playwright.sync_api import Error as PlaywrightError
from scipy import signal

from tests.audio_match import as_counted, match
from tests.chromium import chromium
from tests.firefox import Firefox, firefox
from tests.netns import namespace
from tests.processes import Process, ReceiverProcess
from tests.pulse import pactl, record_source

pytestmark = pytest.mark.browser
RATE = 48_000
ARTIFACTS = Path(__file__).parents[2] / "build" / "test-artifacts"
"""Kept after the run: the page's screenshot (docs/phone.png in the README is one)."""


@pytest.fixture
def lan():
    with namespace() as ns:
        yield ns


BROWSERS = ["chromium", "firefox"]


@pytest.fixture
def firefox_mic(pulse, tmp_path, speech):
    """Firefox's microphone, a real one to it: the private server's default source,
    `feed.monitor`, with the speech played into `feed` six times over."""
    samples, rate = soundfile.read(speech, dtype="float32")
    played = tmp_path / "speech-6x.wav"
    soundfile.write(played, np.tile(samples, 6), rate)
    pactl(pulse, "set-default-source", "feed.monitor")
    player = Process(["paplay", "--device=feed", str(played)], tmp_path, "paplay", pulse)
    yield pulse
    player.stop()


@pytest.fixture(params=BROWSERS)
def phone(request, tmp_path, lan, speech):
    """A phone's browser in the namespace `lan`, its microphone speaking: what it opens
    pages in (Playwright's browser context for Chromium, tests/firefox.py's for Firefox)."""
    if request.param == "chromium":
        with chromium(lan, speech, tmp_path) as context:
            yield context
    else:
        with firefox(lan, tmp_path, request.getfixturevalue("firefox_mic")) as browser:
            yield browser


def start_receiver(folder, port, lan, *extra, sinks=None, env=None):
    receiver = ReceiverProcess(
        folder,
        port,
        "--web",
        f"https://{lan.host_ip}:{port}",
        *extra,
        idle=None,
        sinks=sinks,
        env=env,
    )
    receiver.wait_for("phone page:")
    url = re.search(r"phone page: (\S+)", receiver.stderr).group(1)
    return receiver, url


def heard_part(out: np.ndarray) -> np.ndarray:
    """`out` from its first sound to its last."""
    loud = np.flatnonzero(np.abs(out) > 1e-3)
    return out[loud[0] : loud[-1] + 1] if len(loud) else out[:0]


def looped_reference(speech: np.ndarray, heard: np.ndarray) -> np.ndarray:
    """The part of `speech`, played in a loop (as Chromium's fake microphone does), that
    `heard` is a copy of."""
    loops = np.tile(speech, len(heard) // len(speech) + 3)
    opening = heard[: 3 * RATE]
    fit = signal.correlate(loops[: len(speech) + len(opening)], opening, mode="valid")
    # From a little later: the stream's start-up may have stretched its first frames, and
    # every part of the reference must have its copy in `heard`. Up to half a second before
    # its end: as the page stops, about one run in three has a 20 ms hole some 0.2 s before
    # the last sound (old engine and new alike, no packet lost, nothing counted: cause not
    # found yet, see the issue notes); the speech before it is what this compares.
    start = int(np.argmax(fit)) + RATE // 10
    return loops[start : start + len(heard) - RATE // 2]


MESSAGE = "document.querySelector('#message').textContent"


def open_page(context, url, name, preset=""):
    """A phone's page, streaming: its name and what is plugged in set, Start pressed."""
    page = context.new_page()
    for attempt in range(3):
        try:
            page.goto(url)
            break
        except PlaywrightError as exc:  # Chromium saw the namespace's fresh link as a change
            changed = "ERR_NETWORK_CHANGED" in str(exc) or "chrome-error://" in str(exc)
            if not changed or attempt == 2:
                raise
            time.sleep(0.5)
    page.click(".settings summary")  # collapsed at first: opened, as its user would
    page.fill("#name", name)
    page.wait_for_selector(f"#preset option[value='{preset}']", state="attached")
    page.select_option("#preset", preset)
    page.click("#start")
    try:
        page.wait_for_function("window.airmic && window.airmic.state === 'streaming'",
                               timeout=20_000)  # fmt: skip
    except Exception as exc:  # what the page says, for the report
        said = page.evaluate(f"[window.airmic.state, {MESSAGE}]")
        raise AssertionError(f"the page did not stream: {said}") from exc
    return page


def stop_page(page):
    """Press Stop (the page ends its WHIP session, and its stream ends); the receiver's
    view of the stream as the page last showed it."""
    page.wait_for_function("window.airmic.stats && window.airmic.stats.delay_ms != null",
                           timeout=10_000)  # fmt: skip
    stats = page.evaluate("window.airmic.stats")
    page.click("#stop")
    page.wait_for_function("window.airmic && window.airmic.state === 'idle'")
    print(f"\nthe receiver's view on the page: {stats}")
    assert stats["delay_ms"] is not None
    return stats


def read(recording) -> np.ndarray:
    return soundfile.read(recording, dtype="float32")[0]


def compare(recording, speech, what, reference=None):
    """How well a recording (WAV) matches the looped speech, or `reference` when given."""
    heard = heard_part(read(recording))
    assert len(heard) > 6 * RATE
    if reference is None:
        reference = looped_reference(read(speech), heard)
    result = match(reference, heard)
    print(f"\n{what}: correlation {result.correlation:.4f}, longest gap "
          f"{result.longest_gap} frames")  # fmt: skip
    return result


def compare_stream(stream, speech, reference=None):
    """How well a stream's WAV sink matches the looped speech (or `reference`)."""
    return compare(stream["sinks"][0].removeprefix("wav:"), speech, stream["stream"], reference)


def test_two_phones_stream_into_the_receiver(tmp_path, udp_port, lan, speech, phone):
    """Two pages at once, each its own stream and room; one names its transducer (the mic
    preset); each room's recording (Ogg Opus) has the page's speech; each page shows its
    stream's end-to-end latency."""
    record = tmp_path / "sessions"
    record.mkdir()
    receiver, url = start_receiver(tmp_path, udp_port, lan, "--record", str(record))
    kitchen = open_page(phone, url, "kitchen", preset="mic")
    hall = open_page(phone, url, "hall")
    time.sleep(8)
    for page in (kitchen, hall):  # the browser's first RTCP sender report can take 5 s
        page.wait_for_function("window.airmic.stats && window.airmic.stats.end_to_end_ms != null",
                               timeout=10_000)  # fmt: skip
    views = [stop_page(kitchen), stop_page(hall)]
    receiver.wait_for("(hall) closed")
    assert receiver.stop() == 0, receiver.stderr
    streams = {s["stream"]: s for s in receiver.stats()["streams"]}
    assert set(streams) == {"kitchen (WebRTC)", "hall (WebRTC)"}
    assert streams["kitchen (WebRTC)"]["dsp"] == "dc > limiter"  # the mic preset
    assert streams["hall (WebRTC)"]["dsp"] is None  # the receiver's own setting: none
    for view, stream in zip(views, streams.values(), strict=True):
        assert view["lost"] == 0 and stream["lost"] == 0
        # The end-to-end latency, from the browser's RTCP sender reports placed on this
        # clock by the page's measure of it: the buffer's delay and the way here, which on
        # one machine is a few ms (0.4-11 here). On CI once 22 ms under the buffer's delay:
        # a browser on a busy machine stamps its reports that far from its audio.
        assert 0 < view["end_to_end_ms"] < view["delay_ms"] + 100
    (session,) = record.iterdir()
    for room in ("kitchen", "hall"):
        stream = streams[f"{room} (WebRTC)"]
        # The packets as they came, decoded by libsndfile: what the browser sent. Firefox's
        # microphone (a PulseAudio source the speech plays into) sends a copy of it that
        # matches only 0.90-0.95 here, so the speech is asked of the browser's own at 0.85;
        # the receiver's playout of those packets is asked to match them as the others do.
        sent = compare(session / f"{room}.opus", speech, f"room {room}")
        assert sent.correlation >= (0.85 if isinstance(phone, Firefox) else 0.9)
        sent_audio = heard_part(read(session / f"{room}.opus"))
        # Its start (stretched as the stream starts) and last half second: as looped_reference.
        played = compare_stream(stream, speech, sent_audio[RATE // 10 : -RATE // 2])
        assert as_counted(played, stream, 0.9), stream


def test_the_page_keeps_one_stream_through_5_percent_loss(tmp_path, udp_port, lan, speech,
                                                           phone):  # fmt: skip
    """12 s at 5 % loss each way (media, RTCP, ICE and DTLS alike): browsers call a short
    dropout "disconnected"; the page waits for it to heal, so the stream stays one."""
    receiver, url = start_receiver(tmp_path, udp_port, lan)
    lan.lose_udp(5)
    page = open_page(phone, url, "kitchen")
    time.sleep(12)
    stop_page(page)
    receiver.wait_for("(kitchen) closed")
    assert receiver.stop() == 0, receiver.stderr
    (stream,) = receiver.stats()["streams"]  # one: not split by a reconnection
    result = compare_stream(stream, speech)
    dropped, datagrams = lan.udp_lost()
    sent = stream["received"] + stream["lost"]
    print(f"dropped {dropped} of {datagrams} datagrams; lost {stream['lost']} of {sent} packets "
          f"({100 * stream['lost'] / sent:.1f} %): {stream['recovered']} rebuilt by FEC, "
          f"{stream['concealed']} concealed ({100 * stream['concealed'] / sent:.1f} % of the "
          f"stream); delay {stream['delay_ms']} ms")  # fmt: skip
    assert stream["seconds"] > 10 and stream["lost"] >= 0.02 * sent  # the loss reached it
    assert stream["recovered"] + stream["concealed"] == stream["lost"]
    assert result.longest_gap <= 6  # no silent stretch longer than 60 ms
    assert result.correlation >= 0.85


def test_the_page_streams_into_the_virtual_mic(tmp_path, udp_port, lan, speech, pulse, phone):
    """The whole way a phone is used: page, WebRTC, receiver, the "AirMic" microphone, and
    an app recording it (parecord)."""
    receiver, url = start_receiver(tmp_path, udp_port, lan, sinks=("virtual",), env=pulse)
    recorded = tmp_path / "mic.wav"
    recorder = Process(record_source("airmic", recorded), tmp_path, "parecord", pulse)
    page = open_page(phone, url, "kitchen")
    time.sleep(8)
    stop_page(page)
    receiver.wait_for("(kitchen) closed")
    assert recorder.stop() == 0, recorder.stderr
    assert receiver.stop() == 0, receiver.stderr
    (stream,) = receiver.stats()["streams"]
    assert stream["stream"] == "kitchen (WebRTC)" and stream["lost"] == 0
    result = compare(recorded, speech, "recorded from the virtual mic")
    # As clean as the receiver played it: a browser and a receiver on two cores stall the
    # mic now and then (CI runs: 4 gaps of 45 ms in all, correlation 0.88), and it counts it
    assert as_counted(result, stream, 0.9), stream


def test_a_browser_without_webrtc_or_storage_is_handled(tmp_path, udp_port, lan, speech):
    """Storage blocked (cookies off): the page streams anyway. No WebRTC (an app's built-in
    browser): Start says so at once, instead of "connecting…" forever."""
    receiver, url = start_receiver(tmp_path, udp_port, lan)
    with chromium(lan, speech, tmp_path) as context:
        context.add_init_script(
            "Object.defineProperty(window, 'localStorage', "
            "{get() { throw new DOMException('blocked', 'SecurityError'); }});"
        )
        page = open_page(context, url, "kitchen")  # streams, storage or not
        stop_page(page)
        bare = context.new_page()
        bare.add_init_script("delete window.RTCPeerConnection;")
        told_no_webrtc(bare, url)
    assert receiver.stop() == 0, receiver.stderr


def told_no_webrtc(page, url):
    """Start, in a browser without WebRTC, says so at once."""
    page.goto(url)
    page.click("#start")
    page.wait_for_function("window.airmic && window.airmic.state === 'error'", timeout=5_000)
    assert "no WebRTC" in page.inner_text("#message")


def test_firefox_without_webrtc_is_told_so(tmp_path, udp_port, lan, firefox_mic):
    """WebRTC switched off (as some privacy set-ups do): Start says so at once."""
    receiver, url = start_receiver(tmp_path, udp_port, lan)
    prefs = {"media.peerconnection.enabled": False}
    with firefox(lan, tmp_path, firefox_mic, prefs) as browser:
        told_no_webrtc(browser.new_page(), url)
    assert receiver.stop() == 0, receiver.stderr


def test_a_receiver_restart_resumes_into_the_same_room(tmp_path, udp_port, lan, phone):
    """The receiver stops and comes back (an update, a reboot): the page says it is
    reconnecting, then streams again on its own, into the room of the same name."""
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
    first, url = start_receiver(tmp_path / "first", udp_port, lan, sinks=("null",))
    page = open_page(phone, url, "kitchen")
    page.wait_for_function("document.querySelector('#receiver-name').textContent"
                           ".startsWith('Connected to ')", timeout=5_000)  # fmt: skip
    assert first.stop() == 0, first.stderr
    page.wait_for_function("window.airmic.state === 'reconnecting'", timeout=40_000)
    second, _ = start_receiver(tmp_path / "second", udp_port, lan, sinks=("null",))
    page.wait_for_function("window.airmic.state === 'streaming'", timeout=40_000)
    page.wait_for_function("window.airmic.stats && window.airmic.stats.seconds > 1",
                           timeout=10_000)  # a second of it heard again  # fmt: skip
    stop_page(page)
    second.wait_for("(kitchen) closed")
    assert second.stop() == 0, second.stderr
    (stream,) = second.stats()["streams"]
    assert stream["stream"] == "kitchen (WebRTC)" and stream["received"] > 50


def test_a_dropout_that_needs_a_new_connection_stays_in_one_room(tmp_path, udp_port, lan,
                                                                 speech, phone):  # fmt: skip
    """The Wi-Fi gone long enough for the page to reconnect (a new WHIP session, a new
    stream at the receiver): the room goes on, in the same recording, with the time it
    was gone kept on its timeline."""
    record = tmp_path / "sessions"
    record.mkdir()
    receiver, url = start_receiver(tmp_path, udp_port, lan, "--record", str(record),
                                   sinks=("null",))  # fmt: skip
    page = open_page(phone, url, "kitchen")
    time.sleep(2)
    lan.lose_udp(100)
    page.wait_for_function("window.airmic.state === 'reconnecting'", timeout=40_000)
    lan.restore_udp()
    page.wait_for_function("window.airmic.state === 'streaming'", timeout=40_000)
    time.sleep(2)
    stop_page(page)
    receiver.wait_for("(kitchen) closed")
    assert receiver.stop() == 0, receiver.stderr
    (session,) = record.iterdir()
    assert sorted(p.name for p in session.iterdir()) == ["kitchen.opus", "session.json"]
    (room,) = json.loads((session / "session.json").read_text())["rooms"]
    starts = [stream["start_s"] for stream in room["streams"]]
    print(f"\nthe room's streams started at {starts} s")
    assert len(starts) >= 2  # streams (the old connection's, then the new), one room, one file
    assert starts[-1] - starts[0] > 5  # where the page came back, after the time it was gone
    audio, _ = soundfile.read(session / "kitchen.opus", dtype="float32")
    assert len(audio) / RATE > starts[-1] + 1.5  # the file goes on to the last stream's end


def test_mute_keeps_the_stream(tmp_path, udp_port, lan, phone):
    """Mute sends silence on the same stream (the room, its mic and its file go on), and
    the receiver's view of the level says so within a second or two."""
    receiver, url = start_receiver(tmp_path, udp_port, lan, sinks=("null",))
    page = open_page(phone, url, "kitchen")
    page.click("#mute")
    assert page.evaluate("window.airmic.muted") and page.inner_text("#state") == "muted"
    page.wait_for_function(HEARD.format("< -80"), timeout=10_000)
    page.click("#mute")
    page.wait_for_function(HEARD.format("> -60"), timeout=10_000)
    stop_page(page)
    receiver.wait_for("(kitchen) closed")
    assert receiver.stop() == 0, receiver.stderr
    assert [s["stream"] for s in receiver.stats()["streams"]] == ["kitchen (WebRTC)"]


def test_a_microphone_taken_away_is_said_and_taken_back(tmp_path, udp_port, lan, speech):
    """The system pausing the microphone (a call) or ending it (another app took it) is
    said on the page, and the page carries on with a microphone as soon as there is one,
    on the same stream. Chromium only: it delivers the track's events to the page; Firefox
    153 does not deliver them when dispatched from a test, and a PulseAudio source that
    goes away is replaced under Firefox by the server, so its track never ends."""
    receiver, url = start_receiver(tmp_path, udp_port, lan, sinks=("null",))
    with chromium(lan, speech, tmp_path) as context:
        page = open_page(context, url, "kitchen")
        track = "window.airmic.microphone().getAudioTracks()[0]"
        page.evaluate(f"{track}.dispatchEvent(new Event('mute'))")  # as the system would
        assert page.evaluate("window.airmic.state") == "interrupted"
        assert "paused the microphone" in page.inner_text("#message")
        page.evaluate(f"{track}.dispatchEvent(new Event('unmute'))")
        page.wait_for_function("window.airmic.state === 'streaming'", timeout=5_000)

        first = page.evaluate(f"{track}.id")  # stopped for real, and said so, as the system would
        ended = f"{track}.stop(); {track}.dispatchEvent(new Event('ended'))"
        said = f"[window.airmic.state, {MESSAGE}]"  # at once: the page soon takes it back
        state, message = page.evaluate(f"(() => {{ {ended}; return {said}; }})()")
        assert state == "interrupted" and "taken away" in message
        page.wait_for_function("window.airmic.state === 'streaming'", timeout=10_000)
        assert page.evaluate(f"{track}.id") != first  # another microphone,
        assert page.evaluate(f"{track}.readyState") == "live"
        page.wait_for_function(HEARD.format("> -60"), timeout=10_000)  # heard on the stream
        stop_page(page)
        receiver.wait_for("(kitchen) closed")
    assert receiver.stop() == 0, receiver.stderr
    assert [s["stream"] for s in receiver.stats()["streams"]] == ["kitchen (WebRTC)"]


HEARD = "window.airmic.stats && window.airmic.stats.heard_db {}"
"""The receiver's level of the stream, over the last second, compared."""


VIEWPORTS = {"pixel": (412, 915), "iphone": (390, 844)}


def test_the_page_fits_phones_upright_and_on_their_side(tmp_path, udp_port, lan, phone, request):
    """On a Pixel's and an iPhone's screen, upright and on its side, streaming with the
    settings open: nothing wider than the screen, every control at least 44 px square
    (Apple's and Google's touch-target guidance). The screenshots are kept."""
    receiver, url = start_receiver(tmp_path, udp_port, lan, sinks=("null",))
    page = open_page(phone, url, "kitchen")  # its settings open
    page.wait_for_function("window.airmic.stats && window.airmic.stats.delay_ms != null",
                           timeout=10_000)  # the receiver's figures shown  # fmt: skip
    engine = request.node.callspec.params["phone"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for device, (width, height) in VIEWPORTS.items():
        for orientation, size in (("portrait", (width, height)), ("landscape", (height, width))):
            page.set_viewport_size({"width": size[0], "height": size[1]})
            page.evaluate("new Promise((done) => requestAnimationFrame(() => done(true)))")
            layout = page.evaluate(LAYOUT)
            where = f"{engine} {device} {orientation}"
            assert layout["overflow"] <= 0, f"{where}: {layout['overflow']} px too wide"
            assert not layout["small"], f"{where}: touch targets under 44 px: {layout['small']}"
            page.screenshot(path=ARTIFACTS / f"phone-{engine}-{device}-{orientation}.png")
    stop_page(page)
    assert receiver.stop() == 0, receiver.stderr


LAYOUT = """(() => {
  const controls = "button, select, input:not([type=checkbox]), summary, label.toggle";
  const small = [...document.querySelectorAll(controls)]
    .filter((e) => e.offsetParent !== null)
    .map((e) => [e.id || e.className || e.tagName, e.getBoundingClientRect()])
    .filter(([, r]) => r.height < 44 || r.width < 44)
    .map(([name, r]) => `${name} ${Math.round(r.width)}x${Math.round(r.height)}`);
  return {overflow: document.documentElement.scrollWidth - window.innerWidth, small};
})()"""
