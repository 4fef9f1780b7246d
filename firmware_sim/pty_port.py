"""A pseudo-terminal that stands in for a sensor's UART, with a stable path (symlink)."""

from __future__ import annotations

import contextlib
import errno
import os
import tty
from pathlib import Path

PTY_DIR = "/dev/pts/"


class LinkInUse(FileExistsError):
    """The --link path is something other than a simulator's symlink: left as it is."""


def _is_own_link(link: Path, target: str | None = None) -> bool:
    if not link.is_symlink():
        return False
    dest = os.readlink(link)
    return dest == target if target is not None else dest.startswith(PTY_DIR)


def _remove_stale_link(link: Path) -> None:
    """A symlink to a pseudo-terminal (a simulator's, maybe from a killed run) is replaced;
    a regular file, directory or any other symlink is refused, never deleted."""
    if not os.path.lexists(link):
        return
    if not _is_own_link(link):
        kind = ("a symlink to " + os.readlink(link) if link.is_symlink()
                else "a directory" if link.is_dir() else "a file")
        raise LinkInUse(f"--link {link}: {kind} is already there and is not a simulator's "
                        f"symlink to {PTY_DIR}*; remove it yourself or pick another path")
    link.unlink()


class PtyPort:
    """Master side is ours; the slave path is what the agent opens with pyserial."""

    def __init__(self, link: Path | None = None) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no CR/LF translation: bytes pass as on a UART
        os.set_blocking(self.master, False)
        self.slave_path = os.ttyname(self._slave)
        self.link = link
        self.dropped_bytes = 0
        if link is not None:
            try:
                _remove_stale_link(link)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(self.slave_path)
            except BaseException:
                self.link = None
                self.close()
                raise

    @property
    def path(self) -> str:
        return str(self.link) if self.link else self.slave_path

    def write(self, data: bytes) -> int:
        """Write without blocking; bytes nobody reads in time are dropped, as on a UART."""
        try:
            n = os.write(self.master, data)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EIO):
                self.dropped_bytes += len(data)
                return 0
            raise
        self.dropped_bytes += len(data) - n
        return n

    def read(self, size: int = 256) -> bytes:
        try:
            return os.read(self.master, size)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EIO):
                return b""
            raise

    def close(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.link is not None and _is_own_link(self.link, self.slave_path):
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
