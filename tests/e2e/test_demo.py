"""scripts/demo.py as a new user runs it: after they started a receiver of their own, which
is advertised on the same machine (here on loopback) under the very name the demo uses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_pairing import receiver

pytestmark = pytest.mark.e2e

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


def test_the_demo_streams_beside_another_receiver(tmp_path, udp_port):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "user")}
    theirs = receiver(tmp_path / "theirs", udp_port, env, name="demo")
    demo = subprocess.run([sys.executable, DEMO, "--out", tmp_path / "demo"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert demo.returncode == 0, demo.stdout + demo.stderr
    correlation = float(re.search(r"correlation (\d\.\d+)", demo.stdout)[1])
    assert correlation > 0.9, demo.stdout
    # The demo paired with its own receiver, not with the user's.
    assert "paired with demo" in demo.stdout + demo.stderr
    listing = subprocess.run([Path(sys.executable).parent / "airmic-receive", "paired"],
                             env=env, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert "no paired sender" in listing.stdout, listing.stdout
    assert theirs.stop() == 0
