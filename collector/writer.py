"""Storage writer: retry with backoff, bisect a refused batch, spool on outage, replay in order.

`store(lines)` returns once the lines are in storage or in the durable spool (the caller
may then ack); it raises SpoolFull when neither can take them (the caller must not ack).
While the spool holds anything, new batches go behind it, so storage sees batches in the
order they arrived.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from collector.errors import Rejected, RetryLater
from collector.spool import Spool
from collector.storage_sink import StorageSink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteOutcome:
    stored: int  # lines now in storage
    spooled: int  # lines now in the spool
    refused: list[tuple[str, str]]  # (line, storage's reason): for the dead letter


class StorageWriter:
    def __init__(
        self, sink: StorageSink, spool: Spool, retries: int = 2, backoff_s: float = 0.2,
        replay_backoff_max_s: float = 10.0,
        observe_latency: Callable[[float], None] = lambda s: None,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.retries = retries
        self.backoff_s = backoff_s
        self.replay_backoff_max_s = replay_backoff_max_s
        self.observe_latency = observe_latency
        self.healthy = True  # last write reached storage
        self._write_retries = 0
        self._count_lock = threading.Lock()  # writes retry in several threads at once
        self._replay_delay = backoff_s
        self._next_replay = 0.0
        # Writes run in several threads; the spool is touched by one at a time.
        self._lock = threading.Lock()

    @property
    def write_retries(self) -> int:
        with self._count_lock:
            return self._write_retries

    def store(self, lines: list[str]) -> WriteOutcome:
        if not lines:
            return WriteOutcome(0, 0, [])
        with self._lock:
            if len(self.spool):
                self.spool.append(lines)  # behind what is waiting, to keep the order
                return WriteOutcome(0, len(lines), [])
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                refused = self._write(lines)
                self.healthy = True
                return WriteOutcome(len(lines) - len(refused), 0, refused)
            except RetryLater as exc:
                self.healthy = False
                with self._count_lock:
                    self._write_retries += 1
                log.warning("storage unavailable (attempt %d): %s", attempt + 1, exc)
                if attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
        with self._lock:
            self.spool.append(lines)
            self._next_replay = time.monotonic() + self._replay_delay
        log.warning("storage down: spooled %d lines (spool depth %d lines)", len(lines),
                    self.spool.lines)
        return WriteOutcome(0, len(lines), [])

    def _write(self, lines: list[str]) -> list[tuple[str, str]]:
        """Write; on a refusal, bisect so only the bad lines come back. Raises RetryLater."""
        t0 = time.perf_counter()
        try:
            self.sink.write(lines)
            self.observe_latency(time.perf_counter() - t0)
            return []
        except Rejected as exc:
            if len(lines) == 1:
                return [(lines[0], str(exc))]
        mid = len(lines) // 2
        return self._write(lines[:mid]) + self._write(lines[mid:])

    def replay(self, force: bool = False) -> list[tuple[str, str]]:
        """Write spooled batches oldest first until one fails; returns refused lines."""
        with self._lock:
            return self._replay(force)

    def _replay(self, force: bool) -> list[tuple[str, str]]:
        refused: list[tuple[str, str]] = []
        if not len(self.spool) or (not force and time.monotonic() < self._next_replay):
            return refused
        while True:
            lines = self.spool.oldest()
            if lines is None:
                self._replay_delay = self.backoff_s
                self.healthy = True
                log.info("spool replayed; storage is back")
                return refused
            try:
                refused += self._write(lines)
            except RetryLater as exc:
                self.healthy = False
                self._replay_delay = min(self._replay_delay * 2, self.replay_backoff_max_s)
                self._next_replay = time.monotonic() + self._replay_delay
                log.warning("spool replay waits %.1f s: %s", self._replay_delay, exc)
                return refused
            self.spool.pop_oldest()
