"""Writing files that may hold secrets: created with mode 0600 before any byte is written."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


def write_file(path: Path, data: bytes | str, mode: int = SECRET_MODE) -> None:
    """Atomically replace `path`; the temp file has `mode` from its creation on.

    A replaced file keeps its owner and group where the caller may set them: the broker
    reads its password file and ACLs as its own user (`chown` once, they stay so).
    """
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask; this is not
        if old is not None and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
            with contextlib.suppress(PermissionError):
                os.fchown(fd, old.st_uid, old.st_gid)
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
