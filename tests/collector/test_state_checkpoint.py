"""The state checkpoint committed on its own thread: what the pipeline reads back."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from collector.aggregates import HOUR_MS, HourlyAggregates
from collector.dedup import SeqTracker
from collector.state_store import Snapshot, StateStore

HOUR0 = 1_790_000_000_000 // HOUR_MS * HOUR_MS


class GatedStore(StateStore):
    """Commits wait for `disk`, as SQLite waits for a busy disk."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.disk = threading.Event()

    def _commit(self, snap: Snapshot) -> None:
        assert self.disk.wait(10)  # queued behind the disk, not yet in a transaction
        super()._commit(snap)


def test_a_late_reading_for_an_hour_still_being_checkpointed_adds_to_it(
        tmp_path: Path) -> None:
    """An hour that left memory while its checkpoint was not yet committed is read back
    after that commit, not as an empty hour (which would restart its running totals)."""
    store = GatedStore(tmp_path / "state.db")
    aggs = HourlyAggregates(keep_hours=6)  # two hours kept in memory
    store.restore(SeqTracker(), aggs)
    for h in range(4):
        t = HOUR0 + h * HOUR_MS + 60_000
        aggs.add("d1", [t], [[10.0], [20.0]])
        store.save_in_background(
            StateStore.snapshot(SeqTracker(), [], aggs, aggs.commit(t + 10**12)))
    assert ("d1", HOUR0) not in aggs.hours  # left memory; its row is not committed yet
    threading.Timer(0.3, store.disk.set).start()
    aggs.add("d1", [HOUR0 + 120_000], [[30.0], [1.0]])
    agg = aggs.hours[("d1", HOUR0)]
    assert agg.counts[0] == 2 and agg.sums[0] == pytest.approx(40.0)
    store.close()


def test_checkpoints_asked_for_before_close_are_all_committed(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "state.db")
    store.disk.set()
    rows = [(f"d{i}", i, 0, i, HOUR0, "[]") for i in range(50)]
    for row in rows:
        store.save_in_background(Snapshot([row], []))
    store.close()
    again = StateStore(tmp_path / "state.db", wal_checkpoint_every_s=None)
    restored = SeqTracker()
    assert again.restore(restored, HourlyAggregates()) == 50
    assert restored.devices["d49"].max_seq == 49
    again.close()
