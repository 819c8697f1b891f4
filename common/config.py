"""Where airmic keeps what it must remember (certificate, tokens, later pairings), and how
it writes secrets there: readable by the user only, never visible with wider rights."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_config_dir


def config_dir() -> Path:
    return Path(user_config_dir("airmic"))


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(0o600)  # a file that existed keeps its mode through O_CREAT
