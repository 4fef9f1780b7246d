"""Writes sealed batches concurrently and completes them in order: checkpoint, ack, judge.

Sealed batches are written by worker threads (up to `max_writes` at once) while the next
one is built; they are completed in the order they were sealed, and a batch is acked (and
its state checkpointed) only when its own write has returned: nothing is acknowledged
before InfluxDB or the durable spool has it. Readings are idempotent, so concurrent
writes may land in any order; an hourly aggregate is a running total, so a batch carrying
an hour that a write in flight also carries waits for that write.

While neither storage nor the spool can take a batch, its worker holds it (backing off
up to 5 s) until one can, or until the collector stops: then it is not acked and the
broker redelivers it later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from collector.batch import Batch
from collector.batch_builder import SealedBatch
from collector.counters import Counters
from collector.dead_letters import DeadLetters
from collector.delivery import Delivery
from collector.metrics import Metrics
from collector.quarantine import Quarantine
from collector.spool import SpoolFull
from collector.state_store import StateStore
from collector.writer import StorageWriter, WriteOutcome

log = logging.getLogger(__name__)

#: acknowledges stored deliveries; returns how many were from an older connection
Ack = Callable[[list[Delivery]], int]
#: a batch is stored and acked: (batch, now in ms)
OnStored = Callable[[Batch, int], None]
#: storage refused these lines of the batch (before it counts as stored)
OnRefused = Callable[[Batch, list[str]], None]


@dataclass(frozen=True)
class _InFlight:
    sealed: SealedBatch
    future: Future[WriteOutcome | None]


class BatchWriter:
    def __init__(self, writer: StorageWriter, ack: Ack, dead_letters: DeadLetters,
                 counters: Counters, metrics: Metrics, on_stored: OnStored, *,
                 state: StateStore | None = None, max_writes: int = 2,
                 stopping: threading.Event | None = None,
                 quarantine: Quarantine | None = None,
                 on_refused: OnRefused | None = None) -> None:
        self.quarantine = quarantine
        self.on_refused = on_refused
        self.writer = writer
        self.ack = ack
        self.dead_letters = dead_letters
        self.counters = counters
        self.metrics = metrics
        self.on_stored = on_stored
        self.state = state
        self.max_writes = max_writes
        self.stopping = stopping if stopping is not None else threading.Event()
        self._inflight: deque[_InFlight] = deque()
        self._executor = ThreadPoolExecutor(max_writes, thread_name_prefix="storage-write")
        # Written by the worker threads, read by the pipeline's and the health endpoint's.
        self._lock = threading.Lock()
        self._replay_refused: list[tuple[str, str]] = []
        self._spool_full_since: float | None = None

    # --- the pipeline's thread ------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self._inflight

    @property
    def spool_full(self) -> bool:
        """Neither storage nor the spool can take a batch (a worker is holding one)."""
        with self._lock:
            return self._spool_full_since is not None

    def submit(self, sealed: SealedBatch) -> bool:
        """Start the batch's write; True unless an older write had to give up."""
        ok = True
        while self._inflight and (len(self._inflight) >= self.max_writes or any(
                not sealed.hours.isdisjoint(f.sealed.hours) for f in self._inflight)):
            ok = self.complete() and ok
        self._inflight.append(
            _InFlight(sealed, self._executor.submit(self._store, sealed.lines)))
        return ok

    def complete(self) -> bool:
        """Wait for the oldest write in flight, then checkpoint, ack and hand it on."""
        if not self._inflight:
            return True
        done = self._inflight.popleft()
        outcome = done.future.result()
        if outcome is None:
            return False  # stopping while nothing could take it: not acked, redelivered later
        b = done.sealed.batch
        self.counters.spooled += outcome.spooled
        self.dead_letters.lines(outcome.refused)
        if self.state is not None:
            try:
                self.state.save(done.sealed.snapshot)
            except Exception:  # the readings are stored: ack them anyway
                # A lost checkpoint costs repeats after a restart (harmless rewrites),
                # never a reading; not acking would redeliver the batch forever.
                log.exception("state checkpoint failed; acknowledging the stored batch")
                self.metrics.checkpoint_errors.inc()
        if outcome.refused and self.on_refused is not None:
            # after the checkpoint: an hour no longer in memory is reloaded from it
            self.on_refused(b, [line for line, _ in outcome.refused])
        self.counters.stale_acks += self.ack(b.deliveries)
        if self.quarantine is not None:
            self.quarantine.end(done.sealed.inflight_id, done.sealed.keys)
        self.counters.readings_stored += b.readings
        self.metrics.readings_stored.inc(b.readings)
        now_ms = time.time() * 1000
        for newest in b.newest:
            self.metrics.lag.observe(max(0.0, (now_ms - newest) / 1000))
        self.on_stored(b, int(now_ms))
        return True

    def complete_finished(self) -> None:
        """Complete the oldest writes that have returned, in order, without waiting."""
        while self._inflight and self._inflight[0].future.done():
            self.complete()

    def replay_spool(self, force: bool = False) -> None:
        """Write what waits in the spool (when it is due, or now if forced)."""
        self.dead_letters.lines(self.writer.replay(force=force))

    def close(self) -> None:
        """Complete every write in flight, stop the workers, replay the spool once more."""
        while self._inflight:
            self.complete()
        self._executor.shutdown()
        self.replay_spool(force=True)

    # --- worker threads -------------------------------------------------------------------

    def _store(self, lines: list[str]) -> WriteOutcome | None:
        """Storage or spool; holds the batch while neither can take it."""
        delay = 0.5
        self._add_refused(self.writer.replay())  # what waits in the spool goes first
        while True:
            try:
                outcome = self.writer.store(lines)
                break
            except SpoolFull as exc:
                with self._lock:
                    first = self._spool_full_since is None
                    if first:
                        self._spool_full_since = time.monotonic()
                if first:
                    log.error("cannot store or spool a batch: %s", exc)
                self.metrics.spool_full.set(1)
                if self.stopping.wait(delay):
                    return None
                delay = min(delay * 2, 5.0)
                self._add_refused(self.writer.replay(force=True))
        with self._lock:
            recovered = self._spool_full_since is not None
            self._spool_full_since = None
            refused, self._replay_refused = self._replay_refused, []
        if recovered:
            log.info("storage or spool accepts batches again")
            self.metrics.spool_full.set(0)
        if refused:
            return WriteOutcome(outcome.stored, outcome.spooled, refused + outcome.refused)
        return outcome

    def _add_refused(self, refused: list[tuple[str, str]]) -> None:
        if refused:
            with self._lock:
                self._replay_refused += refused
