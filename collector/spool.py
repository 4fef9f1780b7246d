"""Durable on-disk spool: batches of line protocol kept while storage is unreachable.

One file per batch, named by a counter so replay is in arrival order. A file is written
to a temp name, fsynced and renamed, so a crash leaves either the whole batch or nothing.
Replay may write a batch twice (crash after the write, before the unlink): harmless,
because a point's identity is (measurement, tags, time) and a rewrite overwrites.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from collector.errors import CollectorError

SUFFIX = ".lp"


class SpoolFull(CollectorError):
    """The spool cannot take more (size cap or a full disk): do not ack, keep the data."""


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink()  # a batch whose write never finished was never acked either
        self._files = sorted(self.dir.glob(f"*{SUFFIX}"))
        self._next = int(self._files[-1].stem) + 1 if self._files else 1
        self.bytes = sum(f.stat().st_size for f in self._files)
        self.lines = sum(self._count_lines(f) for f in self._files)

    @staticmethod
    def _count_lines(path: Path) -> int:
        with path.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))

    def __len__(self) -> int:
        return len(self._files)

    def append(self, lines: list[str]) -> None:
        body = ("\n".join(lines) + "\n").encode()
        if self.bytes + len(body) > self.max_bytes:
            raise SpoolFull(f"spool {self.dir} holds {self.bytes} bytes, cap {self.max_bytes}")
        final = self.dir / f"{self._next:020d}{SUFFIX}"
        tmp = final.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, final)
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            what = "disk full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "write failed"
            raise SpoolFull(f"spool {self.dir}: {what}: {exc}") from exc
        self._next += 1
        self._files.append(final)
        self.bytes += len(body)
        self.lines += len(lines)

    def oldest(self) -> list[str] | None:
        """The oldest batch's lines, or None when the spool is empty."""
        if not self._files:
            return None
        # Split on line feeds only, as InfluxDB does: str.splitlines would also split on
        # CR, U+0085, U+2028, … which a tag or string field may hold.
        text = self._files[0].read_bytes().decode("utf-8")
        return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")

    def pop_oldest(self) -> None:
        """Forget the oldest batch once storage has it."""
        path = self._files.pop(0)
        size = path.stat().st_size
        n = self._count_lines(path)
        path.unlink()
        self.bytes -= size
        self.lines -= n
