"""A private PipeWire desktop for tests: PipeWire, WirePlumber and pipewire-pulse run by an
unprivileged user, as a Linux desktop runs them, on a session bus of their own.

The test (root) reaches it as any PulseAudio client would, through pipewire-pulse's socket.
Its folder lives outside pytest's (a root-only directory the user could not enter).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.pulse import CONFIG, pactl

USER = "airmic-desktop"
RESTARTS: dict[str, Callable[[], None]] = {}
"""By PULSE_SERVER: restarts that desktop's pipewire-pulse (its modules are gone after)."""


def restart_pipewire_pulse(env: dict[str, str]) -> None:
    """Restart pipewire-pulse under the desktop that `env` reaches, as a user's session
    would after a crash or an update."""
    RESTARTS[env["PULSE_SERVER"]]()


DAEMONS = ("dbus-daemon", "pipewire", "wireplumber", "pipewire-pulse")


def desktop_user() -> pwd.struct_passwd:
    """The unprivileged user the desktop runs as (made on first use: tests run as root)."""
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", USER], check=True,
                       capture_output=True, timeout=30)  # fmt: skip
        return pwd.getpwnam(USER)


def _wait_for(
    path: Path, what: str, processes: list[subprocess.Popen], timeout: float = 15.0
) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        for process in processes:
            if process.poll() is not None:
                raise AssertionError(f"{process.args[-1]} exited ({process.returncode})")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come up")
        time.sleep(0.05)


@contextmanager
def private_pipewire() -> Iterator[dict[str, str]]:
    """Start the desktop's sound stack; yield the environment that reaches pipewire-pulse."""
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run scripts/test, which installs them")
    user = desktop_user()
    folder = Path(tempfile.mkdtemp(prefix="airmic-desktop-"))
    runtime, home = folder / "run", folder / "home"
    for path in (runtime, home):
        path.mkdir(mode=0o700)
        os.chown(path, user.pw_uid, user.pw_gid)
    os.chmod(folder, 0o755)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={runtime}/bus",
    }
    as_user = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    processes: list[subprocess.Popen] = []
    logs = open(folder / "daemons.log", "wb")  # noqa: SIM115 (closed below)

    def start(*line: str) -> subprocess.Popen:
        process = subprocess.Popen([*as_user, *line], env=env, stdout=logs, stderr=logs)
        processes.append(process)
        return process

    def restart_pulse() -> None:  # what a desktop's pipewire-pulse restart looks like
        old = next(p for p in processes if p.args[-1] == "pipewire-pulse" and p.poll() is None)
        old.terminate()
        old.wait(timeout=10)
        (runtime / "pulse" / "native").unlink(missing_ok=True)
        start("pipewire-pulse")
        _wait_for(runtime / "pulse" / "native", "pipewire-pulse", processes[-1:])

    try:
        start("dbus-daemon", "--session", "--nofork", f"--address=unix:path={runtime}/bus")
        _wait_for(runtime / "bus", "the session bus", processes)
        start("pipewire")
        _wait_for(runtime / "pipewire-0", "PipeWire", processes)
        start("wireplumber")
        start("pipewire-pulse")
        _wait_for(runtime / "pulse" / "native", "pipewire-pulse", processes)
        client = {**os.environ, "PULSE_SERVER": f"unix:{runtime}/pulse/native",
                  "PIPEWIRE_RUNTIME_DIR": str(runtime)}  # fmt: skip
        deadline = time.monotonic() + 15
        while subprocess.run(["pactl", "info"], env=client, capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise AssertionError("pipewire-pulse does not answer")
            time.sleep(0.05)
        for line in CONFIG.splitlines()[1:]:  # the same "feed" and "speaker" as PulseAudio's
            pactl(client, *line.split())
        RESTARTS[client["PULSE_SERVER"]] = restart_pulse
        yield client
    finally:
        RESTARTS.pop(f"unix:{runtime}/pulse/native", None)
        for process in reversed(processes):
            if process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        logs.close()
        shutil.rmtree(folder, ignore_errors=True)
