"""Writes sealed batches concurrently and completes them in order: checkpoint, ack, judge.

A batch whose write has returned has its state checkpoint committed on the state store's
thread (in seal order, `StateStore.save_in_background`); it is acked and handed on once
that commit is done, so the pipeline's thread never waits for SQLite either.

Sealed batches are written by worker threads (up to `max_writes` at once) while the next
one is built; they are completed in the order they were sealed, and a batch is acked (and
its state checkpointed) only when its own write has returned or the batch is in the
durable spool: nothing is acknowledged before InfluxDB or the spool has it.

A slow storage never holds the pipeline's thread. A batch goes straight to the spool when
the write slots are full, when it shares an hour with a write still running (an hourly
aggregate is a running total, written in order), or when the spool already holds
batches (it goes behind them); a write that has not returned after `spill_after_s` is
copied to the spool and completed from there, so acks (and the broker's Receive Maximum)
keep moving. A background thread drains the spool in order, only while no direct write
runs, so a spooled batch never lands before one sealed earlier. A batch written both
directly and from the spool is written twice: harmless, a point's identity is its
measurement, tags and time. The counter `spooled_batches_total` says why each went there.

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


#: how often the drain thread looks at the spool when nothing wakes it
DRAIN_POLL_S = 0.05


@dataclass
class _InFlight:
    sealed: SealedBatch
    future: Future[WriteOutcome | None] | None  # None: nothing to store
    started: float  # time.monotonic() at submit
    spilled: threading.Event  # set once the batch is (also) in the spool
    spooling: bool = False  # a copy is on its way to the spool (`_spooler`)


@dataclass
class _Stored:
    """A batch InfluxDB or the spool has, its checkpoint on its way to disk."""

    sealed: SealedBatch
    refused: list[str]  # lines storage refused (dead-lettered already)
    checkpoint: Future[None] | None


class BatchWriter:
    def __init__(self, writer: StorageWriter, ack: Ack, dead_letters: DeadLetters,
                 counters: Counters, metrics: Metrics, on_stored: OnStored, *,
                 state: StateStore | None = None, max_writes: int = 2,
                 stopping: threading.Event | None = None,
                 quarantine: Quarantine | None = None,
                 on_refused: OnRefused | None = None,
                 spill_after_s: float | None = 1.0) -> None:
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
        #: None: never spill (wait for write slots and writes, as before)
        self.spill_after_s = spill_after_s
        self.stopping = stopping if stopping is not None else threading.Event()
        self._inflight: deque[_InFlight] = deque()
        self._stored: deque[_Stored] = deque()  # checkpointing, then acked in this order
        self._executor = ThreadPoolExecutor(max_writes, thread_name_prefix="storage-write")
        # Spool appends (a write and two fsyncs: 0.5 s on a busy disk) on one thread of
        # their own, in the order they were asked for: the pipeline's thread never waits
        # for the disk, and the spool still holds batches in seal order.
        self._spooler = ThreadPoolExecutor(1, thread_name_prefix="spool-append")
        # Written by the worker threads, read by the pipeline's and the health endpoint's.
        self._lock = threading.Lock()
        self._replay_refused: list[tuple[str, str]] = []
        self._spool_full_since: float | None = None
        #: direct writes whose worker has not returned: (hours of each), for the drain
        self._running: dict[int, frozenset[tuple[str, int]]] = {}
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._drain: threading.Thread | None = None
        if spill_after_s is not None:
            self._drain = threading.Thread(target=self._drain_spool, name="spool-drain",
                                           daemon=True)
            self._drain.start()

    # --- the pipeline's thread ------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self._inflight and not self._stored

    @property
    def spool_full(self) -> bool:
        """Neither storage nor the spool can take a batch (a worker is holding one)."""
        with self._lock:
            return self._spool_full_since is not None

    def submit(self, sealed: SealedBatch) -> bool:
        """Start the batch's write (or spool it); True unless an older write had to give up."""
        ok = True
        if self.spill_after_s is not None:
            self.complete_finished()
            if not sealed.lines:  # nothing to store (dead letters only): acked in turn
                self._inflight.append(
                    _InFlight(sealed, None, time.monotonic(), threading.Event()))
                return ok
            reason = self._spool_reason(sealed)
            if reason:
                spilled = threading.Event()
                with self._lock:  # if the spool cannot take it, a worker holds it
                    self._running[id(spilled)] = sealed.hours
                self._inflight.append(_InFlight(
                    sealed, self._spooler.submit(self._spool, sealed.lines, spilled, reason),
                    time.monotonic(), spilled, spooling=True))
                return ok
            if not self.spool_full:
                return self._start(sealed, ok)
        while self._inflight and self._must_wait(sealed):
            ok = self.complete() and ok
        return self._start(sealed, ok)

    def _start(self, sealed: SealedBatch, ok: bool) -> bool:
        spilled = threading.Event()
        with self._lock:
            self._running[id(spilled)] = sealed.hours
        self._inflight.append(_InFlight(
            sealed, self._executor.submit(self._store, sealed.lines, spilled),
            time.monotonic(), spilled))
        return ok

    def _spool(self, lines: list[str], spilled: threading.Event, reason: str
               ) -> WriteOutcome | None:
        """On the spool thread: into the spool, behind what waits there; if the spool
        cannot take it, written (or held) as a worker would."""
        try:
            self.writer.spool_now(lines, spilled)
        except SpoolFull:
            return self._store(lines, spilled)
        with self._lock:
            self._running.pop(id(spilled), None)
        self._count_spooled(reason)
        return WriteOutcome(0, len(lines), [])

    def _spill(self, lines: list[str], spilled: threading.Event) -> None:
        """On the spool thread: a copy of a write that is taking too long."""
        try:
            self.writer.spool_now(lines, spilled)
        except SpoolFull:
            return  # the write goes on; it is completed when it returns
        self._count_spooled("slow")

    def _must_wait(self, sealed: SealedBatch) -> bool:
        return len(self._inflight) >= self.max_writes or any(
            not sealed.hours.isdisjoint(f.sealed.hours) for f in self._inflight)

    def _spool_reason(self, sealed: SealedBatch) -> str:
        """Why the batch must go to the spool now rather than be written; "" if it need not."""
        if self.writer.spooling:
            return "queued"
        with self._lock:
            running = list(self._running.values())
            if self._spool_full_since is not None:
                return ""  # the spool takes nothing: wait for the held batch instead
        if len(running) >= self.max_writes or any(
                not sealed.hours.isdisjoint(hours) for hours in running):
            return "slow"
        return ""

    def _count_spooled(self, reason: str) -> None:
        self.metrics.spooled_batches.labels(reason).inc()
        self._wake.set()

    def complete(self) -> bool:
        """Wait for the oldest write in flight and its checkpoint, then ack and hand on it
        and every batch before it; False if that write gave up (it is not acked)."""
        ok = True
        if self._inflight:
            ok = self._checkpoint(self._inflight.popleft())
        self._ack_checkpointed(wait=True)
        return ok

    def _checkpoint(self, done: _InFlight) -> bool:
        """A write has returned (or the batch is spooled): count it, start its checkpoint."""
        if done.future is None or done.spilled.is_set():
            # in the spool: whatever its direct write did, the spool's copy is replayed
            # (and a line storage refuses is dead-lettered then, once)
            outcome: WriteOutcome | None = WriteOutcome(0, len(done.sealed.lines), [])
        else:
            outcome = done.future.result()
        if outcome is None:
            return False  # stopping while nothing could take it: not acked, redelivered later
        if outcome.spool_reason:
            self._count_spooled(outcome.spool_reason)
        self.counters.spooled += outcome.spooled
        self._take_replay_refused()
        self.dead_letters.lines(outcome.refused)
        checkpoint = None
        if self.state is not None:
            try:
                checkpoint = self.state.save_in_background(done.sealed.snapshot)
            except Exception:  # e.g. the store is closing: handled as a failed checkpoint
                failed: Future[None] = Future()
                failed.set_exception(RuntimeError("the checkpoint could not be started"))
                checkpoint = failed
        self._stored.append(_Stored(done.sealed, [line for line, _ in outcome.refused],
                                    checkpoint))
        return True

    def _ack_checkpointed(self, wait: bool) -> None:
        """Ack and hand on, in order, the stored batches whose checkpoint is committed."""
        while self._stored:
            head = self._stored[0]
            if head.checkpoint is not None:
                if not wait and not head.checkpoint.done():
                    return
                if head.checkpoint.exception() is not None:  # the readings are stored
                    # A lost checkpoint costs repeats after a restart (harmless rewrites),
                    # never a reading; not acking would redeliver the batch forever.
                    log.error("state checkpoint failed; acknowledging the stored batch",
                              exc_info=head.checkpoint.exception())
                    self.metrics.checkpoint_errors.inc()
            self._stored.popleft()
            self._hand_on(head)

    def _hand_on(self, done: _Stored) -> None:
        b = done.sealed.batch
        if done.refused and self.on_refused is not None:
            # after the checkpoint: an hour no longer in memory is reloaded from it
            self.on_refused(b, done.refused)
        self.counters.stale_acks += self.ack(b.deliveries)
        if self.quarantine is not None:
            self.quarantine.end(done.sealed.inflight_id, done.sealed.keys)
        self.counters.readings_stored += b.readings
        self.metrics.readings_stored.inc(b.readings)
        now_ms = time.time() * 1000
        for newest in b.newest:
            self.metrics.lag.observe(max(0.0, (now_ms - newest) / 1000))
        self.on_stored(b, int(now_ms))

    def complete_finished(self) -> None:
        """Complete the oldest writes that have returned or are spooled, in order, without
        waiting; a write running longer than `spill_after_s` is copied to the spool first.
        Batches whose checkpoint is committed are acked and handed on."""
        now = time.monotonic()
        while self._inflight:
            head = self._inflight[0]
            if head.future is not None and not head.future.done() \
                    and not head.spilled.is_set():
                if (head.spooling or self.spill_after_s is None
                        or now - head.started < self.spill_after_s):
                    break
                head.spooling = True  # copied to the spool on its thread; done when set
                self._spooler.submit(self._spill, head.sealed.lines, head.spilled)
                break
            self._checkpoint(self._inflight.popleft())
        self._take_replay_refused()
        self._ack_checkpointed(wait=False)

    def _take_replay_refused(self) -> None:
        with self._lock:
            refused, self._replay_refused = self._replay_refused, []
        self.dead_letters.lines(refused)

    def replay_spool(self, force: bool = False) -> None:
        """Write what waits in the spool (when it is due, or now if forced); unforced, with
        the drain thread running, only wakes it: a slow replay never holds this thread."""
        if self._drain is not None and not force:
            self._wake.set()
            return
        self.dead_letters.lines(self.writer.replay(force=force))

    def close(self) -> None:
        """Complete every write in flight, stop the workers, replay the spool once more."""
        while self._inflight or self._stored:
            self.complete()
        self._executor.shutdown()
        self._spooler.shutdown()
        self._closed.set()
        self._wake.set()
        if self._drain is not None:
            self._drain.join()
        self._take_replay_refused()
        self.replay_spool(force=True)

    # --- the drain thread -----------------------------------------------------------------

    def _drain_spool(self) -> None:
        """Replay the spool in the background, only while no direct write runs."""
        while not self._closed.is_set():
            self._wake.wait(DRAIN_POLL_S)
            self._wake.clear()
            with self._lock:
                if self._running or self._spool_full_since is not None:
                    continue  # a batch sealed earlier is still being written
            try:
                self._add_refused(self.writer.replay())
            except Exception:  # a bug here must not stop the drain for good
                log.exception("spool replay failed")

    # --- worker threads -------------------------------------------------------------------

    def _store(self, lines: list[str], spilled: threading.Event) -> WriteOutcome | None:
        """Storage or spool; holds the batch while neither can take it."""
        try:
            return self._store_held(lines, spilled)
        finally:
            with self._lock:
                self._running.pop(id(spilled), None)
            self._wake.set()

    def _store_held(self, lines: list[str], spilled: threading.Event) -> WriteOutcome | None:
        delay = 0.5
        if self.spill_after_s is None:
            self._add_refused(self.writer.replay())  # what waits in the spool goes first
        while True:
            try:
                outcome = self.writer.store(lines, spilled)
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
            if self.spill_after_s is None:
                refused, self._replay_refused = self._replay_refused, []
            else:
                refused = []  # the pipeline's thread takes them (complete_finished)
        if recovered:
            log.info("storage or spool accepts batches again")
            self.metrics.spool_full.set(0)
        if refused:
            return WriteOutcome(outcome.stored, outcome.spooled, refused + outcome.refused,
                                outcome.spool_reason)
        return outcome

    def _add_refused(self, refused: list[tuple[str, str]]) -> None:
        if refused:
            with self._lock:
                self._replay_refused += refused
