"""Batch writer: concurrent writes, in-order completion and acks, the held batch."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from collector.batch import Batch
from collector.batch_builder import SealedBatch
from collector.batch_writer import BatchWriter
from collector.counters import Counters
from collector.dead_letters import DeadLetters
from collector.delivery import Delivery
from collector.errors import Rejected, RetryLater
from collector.metrics import Metrics
from collector.spool import Spool
from collector.state_store import Snapshot, StateStore
from collector.writer import StorageWriter
from tests.support.wait import wait_for


class GatedSink:
    """Each write waits until its first line is released; `written` in landing order."""

    def __init__(self) -> None:
        self.gates: dict[str, threading.Event] = {}
        self.started: list[str] = []
        self.written: list[str] = []
        self.down = False
        self._lock = threading.Lock()

    def gate(self, line: str) -> threading.Event:
        return self.gates.setdefault(line, threading.Event())

    def write(self, lines: list[str]) -> None:
        with self._lock:
            self.started.append(lines[0])
        assert self.gate(lines[0]).wait(10)
        if self.down:
            raise RetryLater("storage down")
        with self._lock:
            self.written.extend(lines)

    def close(self) -> None:
        pass


class Harness:
    def __init__(self, tmp_path: Path, max_writes: int = 2, spool_bytes: int = 1 << 20,
                 retries: int = 0, spill_after_s: float | None = None,
                 state: StateStore | None = None) -> None:
        self.sink = GatedSink()
        self.acked: list[str] = []
        self.stored: list[str] = []
        self.counters = Counters()
        self.metrics = metrics = Metrics()
        self.spool = Spool(tmp_path / "spool", spool_bytes)
        storage = StorageWriter(self.sink, self.spool, retries=retries, backoff_s=0.01)
        dead = DeadLetters(lambda *a, **k: None, "airgrid", self.counters, metrics)
        self.writer = BatchWriter(storage, self._ack, dead, self.counters, metrics,
                                  lambda b, now_ms: self.stored.append(b.deliveries[0].topic),
                                  max_writes=max_writes, spill_after_s=spill_after_s,
                                  state=state)

    def _ack(self, deliveries: list[Delivery]) -> int:
        self.acked.extend(d.topic for d in deliveries)
        return 0

    @staticmethod
    def sealed(name: str, hours: frozenset[tuple[str, int]] = frozenset()) -> SealedBatch:
        batch = Batch(deliveries=[Delivery(name, b"", 0, 1, 0)], lines=[name])
        return SealedBatch(batch, [name], Snapshot([], []), hours)


def test_a_write_that_lands_first_waits_for_the_older_batch_before_its_ack(
        tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.writer.submit(h.sealed("a"))
    h.writer.submit(h.sealed("b"))
    assert wait_for(lambda: sorted(h.sink.started) == ["a", "b"], 10)
    h.sink.gate("b").set()
    assert wait_for(lambda: h.sink.written == ["b"], 10)
    h.writer.complete_finished()
    assert h.acked == [] and h.stored == []  # "b" is stored but "a" is not yet
    h.sink.gate("a").set()
    assert wait_for(lambda: h.sink.written == ["b", "a"], 10)
    h.writer.close()
    assert h.acked == ["a", "b"] and h.stored == ["a", "b"]


def test_no_more_writes_in_flight_than_allowed(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_writes=1)
    h.writer.submit(h.sealed("a"))
    released = threading.Timer(0.3, h.sink.gate("a").set)
    released.start()
    h.sink.gate("b").set()
    h.writer.submit(h.sealed("b"))  # returns once "a" is complete
    assert h.acked == ["a"] and h.sink.written == ["a"]
    h.writer.close()
    assert h.acked == ["a", "b"]


def test_a_batch_sharing_an_hour_with_a_write_in_flight_waits_for_it(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_writes=4)
    hour = frozenset({("d1", 0)})
    h.writer.submit(h.sealed("a", hour))
    h.sink.gate("b").set()
    t = threading.Thread(target=h.writer.submit, args=(h.sealed("b", hour),))
    t.start()
    time.sleep(0.3)
    assert h.sink.started == ["a"]  # the running total for the hour is written in order
    h.sink.gate("a").set()
    t.join(10)
    h.writer.close()
    assert h.sink.written == ["a", "b"] and h.acked == ["a", "b"]


def test_a_batch_neither_storage_nor_spool_takes_is_held_then_stored(tmp_path: Path) -> None:
    h = Harness(tmp_path, spool_bytes=1)  # the spool takes nothing
    h.sink.down = True
    h.sink.gate("a").set()
    h.writer.submit(h.sealed("a"))
    assert wait_for(lambda: h.writer.spool_full, 10)
    h.writer.complete_finished()
    assert h.acked == []
    h.sink.down = False
    assert wait_for(lambda: not h.writer.spool_full, 10)
    h.writer.close()
    assert h.acked == ["a"] and h.sink.written == ["a"]


def test_stopping_while_a_batch_is_held_leaves_it_unacknowledged(tmp_path: Path) -> None:
    h = Harness(tmp_path, spool_bytes=1)
    h.sink.down = True
    h.sink.gate("a").set()
    h.writer.submit(h.sealed("a"))
    assert wait_for(lambda: h.writer.spool_full, 10)
    h.writer.stopping.set()
    assert h.writer.complete() is False
    assert h.acked == [] and h.stored == []  # the broker redelivers it


def test_refused_replay_lines_from_concurrent_writers_are_all_dead_lettered(
        tmp_path: Path) -> None:
    h = Harness(tmp_path)
    threads = [threading.Thread(target=lambda i=i: [h.writer._add_refused([(f"{i}-{k}", "x")])
                                                    for k in range(500)]) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    h.sink.gate("a").set()
    h.writer.submit(h.sealed("a"))
    h.writer.close()
    assert h.counters.rejected["storage_refused"] == 2000


# --- a slow storage does not hold the pipeline's thread (spill to the spool) -------------


def completed(h: Harness, acked: list[str]) -> bool:
    """What the pipeline's housekeeping does, then whether these batches are acked."""
    h.writer.complete_finished()
    return h.acked == acked


class SlowDisk(Spool):
    """A spool whose appends wait for `disk` (a busy disk's fsync)."""

    disk = threading.Event()

    def append(self, lines: list[str]) -> None:
        assert self.disk.wait(10)
        super().append(lines)


def test_a_slow_spool_append_never_holds_the_pipelines_thread(tmp_path: Path) -> None:
    """Spool appends (a write and two fsyncs) run on a thread of their own, in order: the
    pipeline's thread neither submits nor completes slower, and acks keep their order."""
    h = Harness(tmp_path, max_writes=1, spill_after_s=0.1)
    h.writer.writer.spool = SlowDisk(tmp_path / "slow-spool", 1 << 20)
    SlowDisk.disk.clear()
    h.writer.submit(h.sealed("a"))  # its write hangs: copied to the spool after 0.1 s
    assert wait_for(lambda: h.sink.started == ["a"], 10)
    time.sleep(0.15)
    t0 = time.monotonic()
    h.writer.complete_finished()  # asks for the copy, does not make it
    for name in "bc":  # the write slot is taken: to the spool, behind "a"
        h.writer.submit(h.sealed(name))
        h.writer.complete_finished()
    assert time.monotonic() - t0 < 0.5 and h.acked == []  # nothing in the spool yet
    SlowDisk.disk.set()
    assert wait_for(lambda: completed(h, ["a", "b", "c"]), 10)
    h.sink.gate("a").set()
    for name in "bc":
        h.sink.gate(name).set()
    h.writer.close()
    assert h.sink.written[-2:] == ["b", "c"]  # replayed in the order they were sealed


def test_a_write_past_the_bound_is_acked_from_the_spool_and_replayed_after_it(
        tmp_path: Path) -> None:
    h = Harness(tmp_path, spill_after_s=0.1)
    h.writer.submit(h.sealed("a"))
    assert wait_for(lambda: h.sink.started == ["a"], 10)
    h.writer.complete_finished()
    assert h.acked == []  # within the bound: waits for its write
    time.sleep(0.15)
    # past it: copied to the spool (on the spool's thread), then acked
    assert wait_for(lambda: completed(h, ["a"]), 10) and len(h.spool) == 1
    h.sink.gate("b").set()
    t0 = time.monotonic()
    h.writer.submit(h.sealed("b"))  # goes behind "a" in the spool, at once
    h.writer.complete_finished()
    assert time.monotonic() - t0 < 0.5
    assert wait_for(lambda: completed(h, ["a", "b"]), 10)
    time.sleep(0.2)
    assert h.sink.started == ["a"]  # no replay while the older direct write runs
    h.sink.gate("a").set()
    assert wait_for(lambda: len(h.spool) == 0, 10)
    assert h.sink.written == ["a", "a", "b"]  # the direct write, then the spool in order
    h.writer.close()
    assert h.stored == ["a", "b"]


def test_full_write_slots_send_a_batch_to_the_spool_without_waiting(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_writes=1, spill_after_s=5.0)
    h.writer.submit(h.sealed("a"))
    t0 = time.monotonic()
    h.writer.submit(h.sealed("b"))
    assert time.monotonic() - t0 < 0.5
    assert wait_for(lambda: len(h.spool) == 1, 10)
    h.writer.complete_finished()
    assert h.acked == []  # "b" is in the spool but "a", sealed before it, is not stored
    for name in "ab":
        h.sink.gate(name).set()
    assert wait_for(lambda: len(h.spool) == 0, 10)
    h.writer.complete_finished()
    h.writer.close()
    assert h.acked == ["a", "b"] and h.sink.written == ["a", "b"]
    metrics = h.writer.metrics
    assert metrics.spooled_batches.labels("slow")._value.get() == 1


def test_a_batch_sharing_an_hour_with_a_running_write_is_spooled_behind_it(
        tmp_path: Path) -> None:
    h = Harness(tmp_path, max_writes=4, spill_after_s=5.0)
    hour = frozenset({("d1", 0)})
    h.writer.submit(h.sealed("a", hour))
    h.sink.gate("b").set()
    h.writer.submit(h.sealed("b", hour))
    time.sleep(0.2)
    assert h.sink.started == ["a"] and len(h.spool) == 1  # the hour's total stays in order
    h.sink.gate("a").set()
    assert wait_for(lambda: len(h.spool) == 0, 10)
    h.writer.close()
    assert h.sink.written == ["a", "b"] and h.acked == ["a", "b"]


def test_a_refused_spooled_line_is_handed_back_after_its_batch_not_after_the_spool(
        tmp_path: Path) -> None:
    """Before: refused lines came back only once the whole spool was replayed, which at
    100,000 devices was tens of minutes after InfluxDB had refused them."""

    class RefusingSink:
        def __init__(self) -> None:
            self.written: list[str] = []

        def write(self, lines: list[str]) -> None:
            if "bad" in lines:
                raise Rejected("InfluxDB 400: partial write")
            self.written.extend(lines)

        def close(self) -> None:
            pass

    spool = Spool(tmp_path / "spool", 1 << 20)
    sink = RefusingSink()
    writer = StorageWriter(sink, spool)
    spool.append(["ok1", "bad"])
    spool.append(["ok2"])
    assert [line for line, _ in writer.replay(force=True)] == ["bad"]
    assert len(spool) == 1  # the next batch waits for the next turn of the drain
    assert writer.replay(force=True) == [] and len(spool) == 0
    assert sink.written == ["ok1", "ok2"]


# --- a slow checkpoint does not hold the pipeline's thread ------------------------------


class SlowCheckpoints(StateStore):
    """A state store whose commits wait for `disk` (SQLite waiting for a busy disk)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.disk = threading.Event()
        self.fail = False
        self.committed: list[list[str]] = []

    def _write(self, snap: Snapshot) -> None:
        assert self.disk.wait(10)
        if self.fail:  # inside the transaction, as a full disk fails a commit
            self.db.execute("BEGIN")
            raise OSError("disk I/O error")
        super()._write(snap)
        self.committed.append([row[0] for row in snap.seq_rows])


def sealed_with_state(name: str) -> SealedBatch:
    batch = Batch(deliveries=[Delivery(name, b"", 0, 1, 0)], lines=[name])
    return SealedBatch(batch, [name], Snapshot([(name, 1, 0, 1, 0, "[]")], []), frozenset())


def test_a_slow_checkpoint_never_holds_the_pipelines_thread(tmp_path: Path) -> None:
    """Checkpoints commit on the store's thread in seal order; a batch is acked and handed
    on only after its own checkpoint, and the pipeline's thread never waits for one."""
    state = SlowCheckpoints(tmp_path / "state.db")
    h = Harness(tmp_path, max_writes=2, spill_after_s=1.0, state=state)
    for name in "abc":
        h.sink.gate(name).set()
    t0 = time.monotonic()
    for name in "abc":
        h.writer.submit(sealed_with_state(name))
        h.writer.complete_finished()
    assert wait_for(lambda: sorted(h.sink.written) == ["a", "b", "c"], 10)
    for _ in range(20):  # the writes have returned: their checkpoints are waiting
        h.writer.complete_finished()
    assert time.monotonic() - t0 < 1.0
    assert h.acked == [] and h.stored == [] and not h.writer.idle
    state.disk.set()
    assert wait_for(lambda: completed(h, ["a", "b", "c"]), 10)
    assert state.committed == [["a"], ["b"], ["c"]] and h.stored == ["a", "b", "c"]
    h.writer.close()
    state.close()


def test_a_failed_checkpoint_still_acks_its_stored_batch_and_is_counted(
        tmp_path: Path) -> None:
    state = SlowCheckpoints(tmp_path / "state.db")
    state.disk.set()
    state.fail = True
    h = Harness(tmp_path, spill_after_s=1.0, state=state)
    h.sink.gate("a").set()
    h.writer.submit(sealed_with_state("a"))
    assert wait_for(lambda: completed(h, ["a"]), 10)
    assert h.metrics.checkpoint_errors._value.get() == 1
    state.fail = False  # the next checkpoint's transaction starts clean
    h.sink.gate("b").set()
    h.writer.submit(sealed_with_state("b"))
    assert wait_for(lambda: completed(h, ["a", "b"]), 10)
    assert state.committed == [["b"]] and h.metrics.checkpoint_errors._value.get() == 1
    h.writer.close()
    state.close()
