"""Storage writer: retry with backoff, bisect a refused batch, spool on outage, replay in order.

`store(lines)` returns once the lines are in storage or in the durable spool (the caller
may then ack); it raises SpoolFull when neither can take them (the caller must not ack).
While the spool holds anything, new batches go behind it, so storage sees batches in the
order they arrived. `spool(lines)` puts a batch in the spool at once (a slow storage must
not hold up ingest: `collector.batch_writer`).

The spool's head is written in chunks: one that times out is halved before the next try,
so a batch storage cannot take in one request within its timeout (a huge first batch, a
storage starved of CPU) is stored piece by piece instead of blocking everything behind it.
The pieces already stored are not written again while the process runs (a restart rewrites
them: harmless, a point's identity is its measurement, tags and time).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from collector.errors import Rejected, RetryLater, TimedOut
from collector.spool import Spool
from collector.storage_sink import StorageSink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteOutcome:
    stored: int  # lines now in storage
    spooled: int  # lines now in the spool
    refused: list[tuple[str, str]]  # (line, storage's reason): for the dead letter
    #: why the lines went to the spool: "down" (storage failed), "slow" (timed out),
    #: "queued" (behind batches already spooled); "" when nothing was spooled
    spool_reason: str = ""


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
        # Writes run in several threads; the spool is touched by one at a time, and never
        # held during a write (the pipeline's thread appends to the spool).
        self._lock = threading.Lock()
        self._replay_lock = threading.Lock()  # one replay at a time, in order
        self._head_done = 0  # lines of the spool's head already stored
        self._head_chunk = 0  # lines per write of the head; 0: the whole batch
        #: smallest piece the head is split into on timeouts
        self.min_chunk_lines = 1

    @property
    def write_retries(self) -> int:
        with self._count_lock:
            return self._write_retries

    def store(self, lines: list[str], spilled: threading.Event | None = None) -> WriteOutcome:
        """Storage or spool. `spilled` set (by another thread, under the spool's lock)
        means the batch was copied to the spool meanwhile: then it is not spooled again."""
        if not lines:
            return WriteOutcome(0, 0, [])
        with self._lock:
            if len(self.spool):
                if spilled is not None and spilled.is_set():
                    return WriteOutcome(0, 0, [])
                self.spool.append(lines)  # behind what is waiting, to keep the order
                return WriteOutcome(0, len(lines), [], "queued")
        delay = self.backoff_s
        slow = False
        for attempt in range(self.retries + 1):
            try:
                refused = self._write(lines)
                self.healthy = True
                return WriteOutcome(len(lines) - len(refused), 0, refused)
            except RetryLater as exc:
                slow = isinstance(exc, TimedOut)
                self.healthy = False
                with self._count_lock:
                    self._write_retries += 1
                log.warning("storage unavailable (attempt %d): %s", attempt + 1, exc)
                if spilled is not None and spilled.is_set():
                    return WriteOutcome(0, 0, [])
                if attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
        with self._lock:
            if spilled is not None and spilled.is_set():
                return WriteOutcome(0, 0, [])
            self.spool.append(lines)
            self._next_replay = time.monotonic() + self._replay_delay
        log.warning("storage %s: spooled %d lines (spool depth %d lines)",
                    "slow" if slow else "down", len(lines), self.spool.lines)
        return WriteOutcome(0, len(lines), [], "slow" if slow else "down")

    def spool_now(self, lines: list[str], spilled: threading.Event | None = None) -> None:
        """Into the spool at once, behind what waits there (raises SpoolFull)."""
        with self._lock:
            self.spool.append(lines)
            if spilled is not None:
                spilled.set()

    @property
    def spooling(self) -> bool:
        """The spool holds batches: new ones go behind them. Read without the lock, which
        an append holds through its fsyncs: the pipeline's thread asks this per batch."""
        return len(self.spool) > 0

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
        """Write spooled batches oldest first until one fails, the spool is empty or a
        batch had lines storage refused; returns those lines."""
        with self._replay_lock:
            return self._replay(force)

    def _replay(self, force: bool) -> list[tuple[str, str]]:
        refused: list[tuple[str, str]] = []
        with self._lock:
            if not len(self.spool) or (not force and time.monotonic() < self._next_replay):
                return refused
        while True:
            with self._lock:
                lines = self.spool.oldest()
                if lines is None:
                    self._replay_delay = self.backoff_s
                    self.healthy = True
                    log.info("spool replayed; storage is back")
                    return refused
            try:
                self._write_head(lines, refused)
            except RetryLater as exc:
                self.healthy = False
                with self._lock:
                    self._replay_delay = min(self._replay_delay * 2, self.replay_backoff_max_s)
                    self._next_replay = time.monotonic() + self._replay_delay
                log.warning("spool replay waits %.1f s: %s", self._replay_delay, exc)
                return refused
            with self._lock:
                self.spool.pop_oldest()
                self._head_done = self._head_chunk = 0
            if refused:  # dead-lettered now, not once a long spool is drained
                return refused

    def _write_head(self, lines: list[str], refused: list[tuple[str, str]]) -> None:
        """Write the spool's head from where the last try stopped, in chunks; a chunk that
        times out halves the chunk size for the next try. Raises RetryLater."""
        while self._head_done < len(lines):
            size = self._head_chunk or len(lines) - self._head_done
            chunk = lines[self._head_done:self._head_done + size]
            try:
                refused += self._write(chunk)
            except TimedOut:
                self._head_chunk = max(self.min_chunk_lines, len(chunk) // 2)
                if len(chunk) > self._head_chunk:
                    log.warning("spool head: %d lines timed out; split into writes of %d",
                                len(chunk), self._head_chunk)
                raise
            self._head_done += len(chunk)
