"""Where airmic keeps what it must remember (certificate, tokens, later pairings), and how
it writes secrets there: readable by the user only, never visible with wider rights."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from platformdirs import user_config_dir

log = logging.getLogger(__name__)


def config_dir() -> Path:
    return Path(user_config_dir("airmic"))


def write_private(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all (a crash leaves the old file), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        temporary.chmod(0o600)  # a leftover that existed keeps its mode through O_CREAT
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def read_private(path: Path) -> bytes:
    """A secret's bytes; if others could read it (it was copied, or restored from a backup
    with wider rights), it is made the user's only, and said once. Raises OSError."""
    with path.open("rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o077:
            log.warning("%s was readable by others (mode %04o): made 0600", path, mode)
            os.fchmod(f.fileno(), 0o600)
        return f.read()
