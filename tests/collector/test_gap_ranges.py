"""Gap ranges against a plain set model: the same repeats dropped, never a false repeat,
the same gaps; bounded by age and count; checkpointed incrementally and restored."""

from __future__ import annotations

import itertools
import json
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.aggregates import HourlyAggregates
from collector.dedup import SeqTracker
from collector.state_store import StateStore


class SetModel:
    """What exactly-once means, kept the plain way: every seq seen, per device. Seqs
    below the first one seen are unknown (the collector may have started mid-stream):
    never called repeats."""

    def __init__(self) -> None:
        self.seen: dict[str, set[int]] = {}
        self.first: dict[str, int] = {}

    def fresh(self, device: str, seqs: list[int]) -> list[int]:
        seen = self.seen.setdefault(device, set())
        floor = self.first.setdefault(device, seqs[0]) if seqs else 0
        out = []
        for i, s in enumerate(seqs):
            if s < floor or s not in seen:
                out.append(i)
                seen.add(s)
        return out

    def missing(self, device: str, floor: int) -> int:
        seen = self.seen.get(device, set())
        if not seen:
            return 0
        return sum(1 for s in range(floor, max(seen) + 1) if s not in seen)


#: messages: (device, seqs) with seqs mostly rising, some repeats, holes and late fills
messages = st.lists(st.tuples(st.sampled_from(["a", "b", "c/e1"]),
                              st.lists(st.integers(1, 400), min_size=1, max_size=8)),
                    max_size=60)


def _rising(msgs: list[tuple[str, list[int]]]) -> list[tuple[str, list[int]]]:
    """Half the messages sorted (the fast path), the rest as generated."""
    return [(d, sorted(s) if i % 2 else s) for i, (d, s) in enumerate(msgs)]


@settings(max_examples=200, deadline=None)
@given(msgs=messages)
def test_ranges_drop_exactly_the_repeats_a_set_would(msgs: list[tuple[str, list[int]]]) -> None:
    t, model = SeqTracker(), SetModel()
    for device, seqs in _rising(msgs):
        assert t.fresh(device, seqs) == model.fresh(device, seqs), (device, seqs)
    for device in model.seen:
        d = t.devices[device]
        assert d.floor == model.first[device]
        assert t.gaps(device) == model.missing(device, d.floor)
        # the ranges are sorted, disjoint and inside [floor, max_seq]
        pairs = list(zip(d.lo, d.hi, strict=True))
        assert all(lo <= hi for lo, hi in pairs)
        assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(pairs))
        assert not pairs or (pairs[0][0] >= d.floor and pairs[-1][1] < d.max_seq)
    assert t.lost == 0


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@settings(max_examples=150, deadline=None)
@given(msgs=messages, steps=st.lists(st.integers(0, 400), max_size=60),
       max_ranges=st.integers(1, 6))
def test_with_age_and_count_limits_never_a_false_repeat(
        msgs: list[tuple[str, list[int]]], steps: list[int], max_ranges: int) -> None:
    """Gaps declared lost move the floor up: their seqs turn unknown, so one arriving
    late is written again, never dropped; lost + still missing = what the set lacks."""
    clock = Clock()
    t, model = SeqTracker(max_gap_age_ms=100_000, max_gap_ranges=max_ranges,
                          clock=clock), SetModel()
    for i, (device, seqs) in enumerate(_rising(msgs)):
        clock.t += (steps[i] if i < len(steps) else 1)
        before = set(model.seen.get(device, set()))
        kept = t.fresh(device, seqs)
        expected = model.fresh(device, seqs)
        # everything the model calls new is kept (never a false repeat) ...
        assert set(expected) <= set(kept), (device, seqs)
        # ... and what is kept beyond it was seen before only below the tracker's floor
        d = t.devices[device]
        for j in set(kept) - set(expected):
            assert seqs[j] in before or seqs[j] in seqs[:j]
        assert len(d.lo) <= max_ranges
        t.expire()  # what the collector's retention does every few seconds
        assert all(clock.t * 1000 - opened <= 100_000
                   for x in t.devices.values() for opened in x.opened)
    t.expire(int(clock.t * 1000) + 10**9)
    assert all(not d.lo for d in t.devices.values())
    assert t.missing() == 0


def test_a_gap_past_its_age_is_lost_counted_and_still_stored_if_it_comes() -> None:
    clock = Clock()
    t = SeqTracker(max_gap_age_ms=60_000, clock=clock)
    t.fresh("a", [1, 2])
    t.fresh("a", [10])  # 3..9 missing
    assert t.gaps("a") == 7 and t.lost == 0
    clock.t += 30
    assert t.expire() == 0  # not yet
    clock.t += 31
    assert t.expire() == 7 and t.lost == 7 and t.gaps("a") == 0
    assert t.devices["a"].floor == 10
    assert t.fresh("a", [5]) == [0]  # late after all: written again, never dropped
    assert t.fresh("a", [10]) == []  # what is above the floor is still deduplicated
    assert t.commit() == ["a"]  # the expiry is checkpointed with the next batch


def test_a_thousand_missing_readings_cost_one_range() -> None:
    t = SeqTracker()
    t.fresh("a", [1])
    t.fresh("a", [100_001])  # an outbox overflow dropped 99,999 readings
    d = t.devices["a"]
    assert t.gaps("a") == 99_999 and len(d.lo) == 1
    t.fresh("a", [50_000])  # one comes late: the range splits
    assert t.gaps("a") == 99_998 and len(d.lo) == 2
    assert t.fresh("a", [50_000]) == [] and t.fresh("a", [50_001]) == [0]


def test_checkpoint_row_costs_the_same_for_one_gap_or_a_huge_one(tmp_path: Path) -> None:
    """Before ranges, a device with 99,999 missing seqs was a 744 KB row rewritten on
    every batch; now the row is a few numbers, and only touched devices are written."""
    t = SeqTracker()
    t.fresh("small", [1, 3])
    t.fresh("huge", [1, 100_001])
    t.fresh("idle", [1, 2])
    t.commit()
    t.fresh("huge", [100_002])
    t.fresh("small", [4])
    snap = StateStore.snapshot(t, t.commit(), HourlyAggregates(), [])
    rows = {r[0]: r for r in snap.seq_rows}
    assert set(rows) == {"huge", "small"}  # idle was not touched: not written
    assert len(rows["small"][5]) < len(rows["huge"][5]) < 30  # a few digits more, no seqs


@settings(max_examples=40, deadline=None)
@given(msgs=messages, cut=st.integers(0, 60))
def test_a_restart_from_the_checkpoint_drops_the_same_repeats(
        msgs: list[tuple[str, list[int]]], cut: int) -> None:
    """Checkpoint after each batch, restart (a new tracker restored from SQLite) at a
    cut, go on: every later message is judged as without the restart."""
    msgs = _rising(msgs)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "state.db"
        store = StateStore(db)
        t, model = SeqTracker(), SetModel()
        store.restore(t, HourlyAggregates())
        for i, (device, seqs) in enumerate(msgs):
            if i == cut:
                store.close()
                store = StateStore(db)
                t = SeqTracker()
                store.restore(t, HourlyAggregates())
            assert t.fresh(device, seqs) == model.fresh(device, seqs)
            store.save(StateStore.snapshot(t, t.commit(), HourlyAggregates(), []))
        store.close()


def test_a_checkpoint_of_seq_sets_is_read_as_ranges(tmp_path: Path) -> None:
    """State written before ranges (table `seq`, every missing seq listed) is migrated."""
    db = tmp_path / "state.db"
    old = sqlite3.connect(db)
    old.execute("CREATE TABLE seq (device TEXT PRIMARY KEY, max_seq INTEGER, floor INTEGER,"
                " received INTEGER, missing TEXT)")
    old.execute("INSERT INTO seq VALUES ('a', 20, 1, 14, ?)", (json.dumps([3, 4, 5, 9, 17, 18]),))
    old.commit()
    old.close()
    store = StateStore(db)
    t = SeqTracker()
    assert store.restore(t, HourlyAggregates()) == 1
    d = t.devices["a"]
    assert list(zip(d.lo, d.hi, strict=True)) == [(3, 5), (9, 9), (17, 18)]
    assert t.gaps("a") == 6 and t.fresh("a", [2, 4, 20]) == [1]
    store.close()
    tables = {r[0] for r in sqlite3.connect(db).execute(
        "SELECT name FROM sqlite_master WHERE type='table'")}
    assert "seq" not in tables and "seqs" in tables


def test_forgotten_devices_leave_the_checkpoint(tmp_path: Path) -> None:
    clock = Clock()
    store = StateStore(tmp_path / "state.db")
    t = SeqTracker(clock=clock)
    store.restore(t, HourlyAggregates())
    t.fresh("old", [1])
    t.fresh("new", [1])
    store.save(StateStore.snapshot(t, t.commit(), HourlyAggregates(), []))
    clock.t += 100
    t.fresh("new", [2])
    assert t.forget_silent(int(clock.t * 1000) - 50_000) == ["old"]
    store.save(StateStore.snapshot(t, t.commit(), HourlyAggregates(), []))
    store.close()
    again = SeqTracker()
    StateStore(tmp_path / "state.db").restore(again, HourlyAggregates())
    assert set(again.devices) == {"new"}


def test_the_per_device_gauges_follow_changed_devices_a_few_thousand_at_a_time() -> None:
    """Before: every device's completeness series was set every second (100,000 at
    100,000 devices); now only changed ones, at most `limit` per call, none lost."""
    t = SeqTracker()
    for i in range(5000):
        t.fresh(f"d{i}", [1])
    assert t.take_changed() == []  # not sealed yet
    t.commit()
    parts = [t.take_changed(2000) for _ in range(4)]
    assert [len(p) for p in parts] == [2000, 2000, 1000, 0]
    assert set().union(*parts) == set(t.devices)
