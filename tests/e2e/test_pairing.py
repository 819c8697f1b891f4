"""Discovery and pairing between real processes, each side with its own config folder: the
sender finds the receiver by name (mDNS on loopback, and from another network namespace),
pairs with the code, and then streams with no address given, across restarts."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import pty
import re
import select
import ssl
import subprocess
import termios
import time
import urllib.error
import urllib.request
from http.client import HTTPSConnection

import pytest
import soundfile

from airmic.common.identity import Identity
from airmic.common.pairing import FAILURES_PER_ADDRESS, MAX_FAILURES, WRONG_CODE, SenderPairing
from tests.audio_match import as_counted, match
from tests.conftest import command, free_udp_port
from tests.netns import namespace
from tests.processes import Process, ReceiverProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def homes(tmp_path):
    """Separate config folders (keys, pairings) for the receiver and the sender."""
    return tuple({**os.environ, "XDG_CONFIG_HOME": str(tmp_path / side)} for side in ("r", "s"))


def receiver(folder, port, env, *extra, name="studio"):
    folder.mkdir(exist_ok=True)
    process = ReceiverProcess(folder, port, "--name", name, *extra, idle=None, env=env,
                              secure=True)  # fmt: skip
    process.wait_for("advertised as")
    return process


def sender(folder, env, *args, name="sender", interface="127.0.0.1"):
    line = [command("airmic-send"), *args, "--interface", interface]
    return Process(line, folder, name, env)


def open_window(folder, env) -> tuple[Process, str]:
    window = Process([command("airmic-receive"), "pair"], folder, "window", env)
    window.wait_for("airmic-send pair")
    return window, re.search(r"airmic-send pair (\d{6})", window.stdout + window.stderr)[1]


def test_no_receiver_found_is_a_clear_error(tmp_path, homes):
    alone = sender(tmp_path, homes[1], "--input", "tone:440")
    assert alone.wait() == 1 and "no receiver found" in alone.stderr


def test_a_name_no_receiver_has_is_a_host_name(tmp_path, homes):
    """--to NAME looks for a receiver of that name, then for a host (localhost, pc)."""
    line = ("--to", "no-such-host", "--input", "tone:440", "--insecure")
    alone = sender(tmp_path, homes[1], *line)
    assert alone.wait() == 1, alone.stderr
    assert (
        "no receiver named 'no-such-host' (found: none), and no host of that name" in alone.stderr
    )


def test_the_sender_finds_the_receiver_on_loopback(tmp_path, udp_port, homes):
    receiving, sending = homes
    studio = receiver(tmp_path, udp_port, receiving)
    listing = sender(tmp_path, sending, "--discover")
    assert listing.wait() == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith("studio"))
    assert f"127.0.0.1:{udp_port}" in row and " no " in row  # found, not paired
    assert f"https://127.0.0.1:{udp_port}" in row
    assert studio.stop() == 0


def test_pairing_then_streaming_with_no_address(tmp_path, udp_port, homes, speech, speech_samples):
    receiving, sending = homes
    studio = receiver(tmp_path / "first", udp_port, receiving)
    unpaired = sender(tmp_path, sending, "--input", "tone:440", name="unpaired")
    assert unpaired.wait() == 2 and "not paired yet" in unpaired.stderr

    window, code = open_window(tmp_path, receiving)
    assert f"phones: scan this, or open https://127.0.0.1:{udp_port}/?token=" in window.stdout
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    refused = sender(tmp_path, sending, "pair", wrong, "--name", "laptop", name="wrong")
    assert refused.wait() == 1 and "wrong code" in refused.stderr
    time.sleep(1.1)  # attempts are at least a second apart
    shown = (code[:3], code[3:])  # typed as the window shows it: "123 456"
    paired = sender(tmp_path, sending, "pair", "studio", *shown, "--name", "laptop", name="pair")
    assert paired.wait() == 0, paired.stderr
    assert "paired with studio" in paired.stdout
    assert window.wait() == 0 and "paired with laptop" in window.stdout
    assert "from 127.0.0.1: wrong code" in window.stdout  # the window showed the attempt
    listed = Process([command("airmic-receive"), "paired"], tmp_path, "paired", receiving)
    assert listed.wait() == 0 and "laptop" in listed.stdout
    assert studio.stop() == 0

    # Both sides restart: the pairing is kept, and the sender needs no address.
    studio = receiver(tmp_path / "second", udp_port, receiving)
    streaming = sender(tmp_path, sending, "--input", f"file:{speech}", "--duration", "3",
                       name="stream")  # fmt: skip
    assert streaming.wait() == 0, streaming.stderr
    assert f"found studio at 127.0.0.1:{udp_port}" in streaming.stderr
    assert studio.finish() == 0
    out, _ = soundfile.read(tmp_path / "second" / "out.wav", dtype="float32")
    (stream,) = studio.stats()["streams"]
    # What was sent (3 s; against the whole speech the rest read as a 690 ms "gap"), clean
    # unless the receiver counted damage (CI once: 0.896, a sender starting on a busy machine)
    result = match(speech_samples[: 3 * 48_000], out, max_lag=len(out))
    print(f"\ncorrelation {result.correlation:.4f}, longest gap {result.longest_gap}, {stream}")
    assert as_counted(result, stream, 0.95), (result.correlation, result.longest_gap, stream)


def test_one_device_cannot_close_the_window_and_many_are_few(tmp_path, udp_port, homes):
    """Wrong codes from another address (a device on the same Wi-Fi, guessing): after three
    that address is refused, and the user's sender still pairs with the code. Ten wrong
    codes from four addresses close the window, even to the right code."""
    receiving, sending = homes
    studio = receiver(tmp_path, udp_port, receiving)
    window, code = open_window(tmp_path, receiving)
    for n in range(FAILURES_PER_ADDRESS):
        if n:
            time.sleep(1.05)  # one address's attempts are a second apart
        assert _guess(udp_port, wrong(code, n + 1), "127.0.0.2") == (403, WRONG_CODE)
    time.sleep(1.05)
    status, text = _guess(udp_port, code, "127.0.0.2")  # even the right code, from there
    assert status == 403 and "3 wrong codes from this address" in text
    paired = sender(tmp_path, sending, "pair", code, "--name", "laptop", name="pair")
    assert paired.wait() == 0, paired.stderr
    assert window.wait() == 0 and "paired with laptop" in window.stdout
    assert "from 127.0.0.2: wrong code (0 more from this address, 3 in all)" in window.stdout

    window, code = open_window(tmp_path, receiving)
    sources = [f"127.0.0.{3 + n % 4}" for n in range(MAX_FAILURES)]  # 3, 3, 2, 2 each
    for n, source in enumerate(sources):
        if n and n % 4 == 0:
            time.sleep(1.05)
        assert _guess(udp_port, wrong(code), source) == (403, WRONG_CODE)
    assert window.wait() == 1 and f"closed after {MAX_FAILURES} wrong codes" in window.stdout
    late = sender(tmp_path, sending, "pair", code, name="late")  # even the right code
    assert late.wait() == 1 and "no pairing window" in late.stderr
    assert studio.stop() == 0
    assert studio.stderr.count("paired with sender") == 1


def test_unpair_revokes_a_sender(tmp_path, udp_port, homes):
    receiving, sending = homes
    studio = receiver(tmp_path, udp_port, receiving)
    window, code = open_window(tmp_path, receiving)
    assert sender(tmp_path, sending, "pair", code, "--name", "laptop").wait() == 0
    assert window.wait() == 0
    unpair = Process([command("airmic-receive"), "unpair", "laptop"], tmp_path, "unpair", receiving)
    assert unpair.wait() == 0 and "unpaired laptop" in unpair.stdout
    listed = Process([command("airmic-receive"), "paired"], tmp_path, "paired", receiving)
    assert listed.wait() == 0 and "laptop" not in listed.stdout
    again = Process([command("airmic-receive"), "unpair", "laptop"], tmp_path, "again", receiving)
    assert again.wait() == 2 and "no paired sender is named 'laptop'" in again.stderr
    assert studio.stop() == 0


def test_the_sender_finds_the_receiver_from_another_namespace(tmp_path, udp_port, homes, speech):
    """The sender on another "machine" (a network namespace joined by a veth pair): mDNS
    crosses the pair, and the sender finds the receiver's LAN address by itself."""
    receiving, sending = homes
    with namespace() as lan:
        studio = receiver(tmp_path, udp_port, receiving, "--listen", f"{lan.host_ip}:{udp_port}",
                          "--insecure")  # discovery only: no pairing here  # fmt: skip
        line = [command("airmic-send"), "--discover", "--interface", lan.ip]
        listing = Process(lan.run(*line), tmp_path, "discover", sending)
        assert listing.wait() == 0, listing.stderr
        assert f"{lan.host_ip}:{udp_port}" in listing.stdout
        line = [command("airmic-send"), "--to", "studio", "--interface", lan.ip,
                "--input", f"file:{speech}", "--duration", "2", "--insecure"]  # fmt: skip
        named = Process(lan.run(*line), tmp_path, "named", sending)
        assert named.wait() == 0, named.stderr
        assert studio.stop() == 0
    (stream,) = studio.stats()["streams"]
    assert stream["stream"].startswith(lan.ip) and stream["received"] >= 190


def test_junk_cannot_burn_the_window_and_pair_shows_every_attempt(tmp_path, udp_port, homes):
    """Malformed pairing requests, a second apart and more, while a window is open: refused,
    not counted, each shown by `airmic-receive pair` with its source; the real sender then
    pairs with the code. Without a window, junk gets the same answer (it cannot tell that
    a window is open), and a real attempt the same as once it closed."""
    receiving, sending = homes
    studio = receiver(tmp_path, udp_port, receiving)
    url = f"https://127.0.0.1:{udp_port}/pair"
    assert _post(url, b"[1,2,3]") == (403, "malformed pairing message (no name)")
    start = b'{"name": "x", "spake": "AAAA"}'  # well-formed, not a valid SPAKE2 element
    assert _post(url, start) == (403, "no pairing window is open: run airmic-receive pair (again)")
    window, code = open_window(tmp_path, receiving)
    for junk in (b"[1,2,3]", b'{"name": "x"}', b'{"name": "x", "spake": "AAAA"}', b"[]", b"{}"):
        status, text = _post(url, junk)
        assert status == 403 and "malformed" in text
        time.sleep(1.05)
    assert sender(tmp_path, sending, "pair", code, "--name", "laptop").wait() == 0
    assert window.wait() == 0 and "paired with laptop" in window.stdout
    shown = re.findall(r"from 127\.0\.0\.1: (.*)", window.stdout)
    print("\n" + "\n".join(shown))
    assert len(shown) == 5 + 2 and all("malformed" in line for line in shown[:5])
    assert shown[5] == "an attempt"  # the first well-formed one
    assert shown[6] == "paired with laptop"
    assert studio.stop() == 0


def wrong(code: str, n: int = 1) -> str:
    return f"{(int(code) + n) % 10**6:06d}"


def _guess(port: int, code: str, source: str) -> tuple[int, str]:
    """One whole pairing attempt with `code`, from `source` (another loopback address: a
    device of its own to the receiver): the receiver's status and text at its end."""
    context = ssl._create_unverified_context()  # the receiver's self-signed certificate
    http = HTTPSConnection("127.0.0.1", port, timeout=10, context=context,
                           source_address=(source, 0))  # fmt: skip
    attempt = SenderPairing(code, Identity.generate(), "guesser")
    try:
        http.request("POST", "/pair", json.dumps(attempt.start()))
        response = http.getresponse()
        text = response.read().decode().strip()
        if response.status != 200:
            return response.status, text
        reply = json.loads(text)
        http.request("POST", reply["next"], json.dumps(attempt.finish(reply)))
        response = http.getresponse()
        return response.status, response.read().decode().strip()
    finally:
        http.close()


def _post(url: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST")
    context = ssl._create_unverified_context()  # the receiver's self-signed certificate
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, response.read().decode().strip()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode().strip()


def test_a_paired_receiver_that_starts_late_is_found_and_remembered(tmp_path, udp_port, homes):
    """The sender keeps looking until its paired receiver answers (bounded), and keeps where
    it was seen and the name it goes by; `airmic-send paired` and `unpair` manage the list."""
    receiving, sending = homes
    studio = receiver(tmp_path / "first", udp_port, receiving)
    window, code = open_window(tmp_path, receiving)
    assert sender(tmp_path, sending, "pair", code).wait() == 0
    assert window.wait() == 0 and studio.stop() == 0

    streaming = sender(tmp_path, sending, "--input", "tone:440", "--duration", "1", name="early")
    streaming.wait_for("looking for studio")
    studio = receiver(tmp_path / "second", udp_port, receiving)  # after the sender began
    assert streaming.wait() == 0, streaming.stderr
    assert f"found studio at 127.0.0.1:{udp_port}" in streaming.stderr
    assert studio.stop() == 0 and studio.stats()["streams"][0]["received"] >= 90

    (entry,) = json.loads((tmp_path / "s" / "airmic" / "paired-receivers.json").read_text())
    assert entry["seen"][1:] == ["127.0.0.1", udp_port]
    listed = Process([command("airmic-send"), "paired"], tmp_path, "paired", sending)
    assert listed.wait() == 0 and listed.stdout.startswith("receiver") and "studio" in listed.stdout
    unpair = Process([command("airmic-send"), "unpair", "studio"], tmp_path, "unpair", sending)
    assert unpair.wait() == 0 and "unpaired studio" in unpair.stdout
    listed = Process([command("airmic-send"), "paired"], tmp_path, "paired-after", sending)
    assert listed.wait() == 0 and "no paired receiver yet" in listed.stdout


def test_two_receivers_of_one_name_are_told_apart(tmp_path, homes):
    receiving, sending = homes
    first, second = free_udp_port(), free_udp_port()
    receiver(tmp_path / "a", first, receiving, name="vm")
    other = receiver(tmp_path / "b", second, receiving, name="vm")
    other.wait_for("another receiver on the network is named 'vm': this one is 'vm-2'")
    listing = sender(tmp_path, sending, "--discover")
    assert listing.wait() == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert set(rows) == {"vm", "vm-2"}
    assert f"127.0.0.1:{first}" in rows["vm"] and f"127.0.0.1:{second}" in rows["vm-2"]
    typo = sender(tmp_path, sending, "--to", "vm-3", "--input", "tone:440", name="typo")
    assert typo.wait() == 1 and "no receiver named 'vm-3' (found: vm, vm-2)" in typo.stderr
    asked = _on_a_terminal([command("airmic-send"), "--interface", "127.0.0.1"], sending)
    try:
        _read_until(asked.fd, b"which receiver? 1-2: ")
        os.write(asked.fd, b"\x03")  # Ctrl-C, typed
        assert asked.process.wait(timeout=5) in (0, 130)
    finally:
        asked.process.kill()
        os.close(asked.fd)


@dataclasses.dataclass
class _Terminal:
    process: subprocess.Popen
    fd: int  # the terminal's side: what the program prints, what the user types


def _on_a_terminal(line: list[str], env: dict[str, str]) -> _Terminal:
    main, child = pty.openpty()

    def controlling_terminal() -> None:  # so that a typed Ctrl-C is a SIGINT, as in a shell
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(line, stdin=child, stdout=child, stderr=child, env=env,
                               preexec_fn=controlling_terminal)  # fmt: skip
    os.close(child)
    return _Terminal(process, main)


def _read_until(fd: int, text: bytes, timeout: float = 30) -> bytes:
    seen, deadline = b"", time.monotonic() + timeout
    while text not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"never printed {text!r}: {seen!r}"
        seen += os.read(fd, 4096)
    return seen
