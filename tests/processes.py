"""Running the real airmic commands (and other programs) as processes in tests."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import ClassVar

from tests.conftest import command


class Process:
    """A program started with its output in files; ended by `stop()` or `wait()`, or after
    the test by `reap()` (a failed assertion must not leave it running into the next test)."""

    live: ClassVar[set[Process]] = set()

    def __init__(
        self, args: list[str], folder: Path, name: str, env: dict[str, str] | None = None
    ) -> None:
        self.args = args
        self.stdout_path = folder / f"{name}.out"
        self.stderr_path = folder / f"{name}.err"
        self._stdout = self.stdout_path.open("wb")
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            args, stdout=self._stdout, stderr=self._stderr, stdin=subprocess.DEVNULL, env=env
        )
        Process.live.add(self)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 15.0) -> None:
        """Wait until the program prints `text` (on stderr or stdout)."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr and text not in self.stdout:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.args[0]} exited early:\n{self.stderr}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.args[0]} never said {text!r}:\n{self.stderr}")
            time.sleep(0.02)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._close()

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        finally:
            self._close()

    def _close(self) -> None:
        Process.live.discard(self)
        self._stdout.close()
        self._stderr.close()

    @classmethod
    def reap(cls) -> None:
        """End every process a test left running: SIGINT, then SIGKILL."""
        for process in list(cls.live):
            try:
                process.stop(timeout=5)
            except subprocess.TimeoutExpired:
                process.proc.wait(5)


IDLE = 4.0
"""Seconds a test receiver waits for its first stream, and after its last, before it exits."""
ENDED = re.compile(r"^stream .* ended \(", re.MULTILINE)  # the receiver's line for each


class ReceiverProcess(Process):
    """airmic-receive on 127.0.0.1, writing WAV files and a stats file into `folder`."""

    def __init__(
        self,
        folder: Path,
        port: int,
        *extra: str,
        # A sender takes 1.6 s here to send its first packet (it imports scipy for its DSP
        # chain), and a slow spell of the machine makes it half as long again: with 2 s,
        # the receiver gave up before the stream came.
        idle: float | None = IDLE,
        sinks: tuple[str, ...] | None = None,
        env: dict[str, str] | None = None,
        secure: bool = False,
    ) -> None:
        self.folder = folder
        self.stats_path = folder / "stats.json"
        args = [
            command("airmic-receive"),
            "--listen",
            f"127.0.0.1:{port}",
            "--stats-json",
            str(self.stats_path),
            *extra,
        ]
        for sink in sinks or (f"wav:{folder / 'out.wav'}",):
            args += ["--sink", sink]
        if idle is not None:
            args += ["--exit-after-idle", str(idle)]
        if not secure:  # plain RTP, as ffmpeg, GStreamer and send() below send it
            args.append("--insecure")
        super().__init__(args, folder, "receiver", env)
        self.wait_for("listening on")

    def stats(self) -> dict:
        return json.loads(self.stats_path.read_text())

    def finish(self, streams: int = 1, timeout: float = 60.0) -> int:
        """Once `streams` streams have ended (drained, their files closed), stop the receiver
        as Ctrl-C does; its exit code. Its idle time after the last stream is not waited
        out (a peer that never says goodbye, as ffmpeg, is ended by that: `wait()`)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and len(ENDED.findall(self.stderr)) < streams:
            if time.monotonic() > deadline:
                raise AssertionError(f"not {streams} streams ended:\n{self.stderr}")
            time.sleep(0.05)
        return self.stop()


def send(
    port: int, *args: str, folder: Path, name: str = "sender", env: dict[str, str] | None = None
) -> Process:
    """airmic-send to a receiver on 127.0.0.1, in plain RTP: these tests are about the audio
    path; the encrypted one is tested with paired identities (e2e/test_secure.py)."""
    line = [command("airmic-send"), "--to", f"127.0.0.1:{port}", "--insecure", *args]
    return Process(line, folder, name, env)
