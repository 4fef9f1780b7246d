"""The storage sink interface: where line protocol goes (chosen in `collector.app`)."""

from __future__ import annotations

from typing import Protocol


class StorageSink(Protocol):
    """Writes line protocol (ms precision). Raises RetryLater or Rejected."""

    def write(self, lines: list[str]) -> None: ...

    def close(self) -> None: ...
