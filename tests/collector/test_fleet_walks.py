"""Nothing on the ingest thread walks every device: the seq tracker's running totals,
forgetting and gap expiry, and device health's online count and silence, each against
the whole-fleet walk they replace, over generated streams (clock steps back included);
the checkpoint's WAL is copied into the database by a thread of its own."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from airgrid.wire import Status
from alert_rules.engine import Engine
from collector.aggregates import HourlyAggregates
from collector.dedup import DeviceSeq, SeqTracker, device_of
from collector.device_health import DeviceHealth
from collector.handover import HandOver, History
from collector.registry import RegistryWatcher
from collector.state_store import StateStore
from collector.tag_cache import TagCache
from tests.support.wait import wait_for

KEYS = ("a", "b", "c/e1", "c/e2", "d/e1")
#: clock steps (ms): small ones (back too: an NTP step) often, so that an order kept by
#: time is put to the test, and big ones (past the limits)
steps_ms = st.one_of(st.integers(-3_000, 3_000), st.integers(0, 20_000))
#: how far back a cutoff is (ms)
back_ms = st.one_of(st.integers(0, 3_000), st.integers(0, 30_000))


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


class NoWalk(dict[str, Any]):
    """A device table that refuses to be walked (lookups by key are fine)."""

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("walked every device")

    def values(self) -> Any:
        raise AssertionError("walked every device")

    def items(self) -> Any:
        raise AssertionError("walked every device")


def walk_completeness(t: SeqTracker) -> float:
    received = sum(d.received for d in t.devices.values())
    missing = sum(d.missing for d in t.devices.values())
    return received / (received + missing) if received + missing else 1.0


def walk_expire(t: SeqTracker, now_ms: int) -> set[str]:
    """The walk `expire` was (on a copy): the keys it changed."""
    changed = set()
    for key, d in t.devices.items():
        if d.lo and now_ms - d.opened[0] > t.max_gap_age_ms:
            t._bound(d, now_ms)
            changed.add(key)
    return changed


def check_totals(t: SeqTracker) -> None:
    assert t.received_total == sum(d.received for d in t.devices.values())
    assert t.missing_total == sum(d.missing for d in t.devices.values())
    assert t.missing() == sum(d.missing for d in t.devices.values())
    assert t.completeness() == walk_completeness(t)
    for device in {device_of(k) for k in KEYS}:
        assert t.has_device(device) == any(device_of(k) == device for k in t.devices)


seq_lists = st.one_of(
    st.lists(st.integers(1, 60), max_size=8),  # anything: repeats, gaps, fills
    st.integers(1, 40).flatmap(  # in order (the fast path), maybe with holes
        lambda a: st.lists(st.integers(1, 4), min_size=1, max_size=6).map(
            lambda steps: [a + sum(steps[:i + 1]) for i in range(len(steps))])),
    st.just([200_000]),  # a jump past MAX_TRACKED_GAP: a reset
)
ops = st.lists(st.one_of(
    st.tuples(st.just("fresh"), st.sampled_from(KEYS), seq_lists),
    st.tuples(st.just("clock"), steps_ms),
    st.tuples(st.just("expire"), st.integers(0, 25_000)),
    st.tuples(st.just("forget"), back_ms),
    st.tuples(st.just("restore"), st.booleans()),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops)
@example([("fresh", "a", [12, 40, 7]), ("expire", 20_000)])  # a gap opened out of order
@example([("fresh", "a", [1]), ("clock", -2_000), ("fresh", "b", [1]), ("clock", 1_000),
          ("forget", 0)])  # heard after the clock stepped back: b is older than a
def test_running_totals_expiry_and_forgetting_equal_the_walks(steps: list[tuple[Any, ...]]
                                                              ) -> None:
    clock = Clock()
    t = SeqTracker(max_gap_age_ms=10_000, max_gap_ranges=3, clock=clock)
    for op, *args in steps:
        now_ms = int(clock.t * 1000)
        if op == "fresh":
            t.fresh(args[0], args[1])
        elif op == "clock":
            clock.t += args[0] / 1000
        elif op == "expire":
            at = now_ms + args[0]
            ref = copy.deepcopy(t)
            changed = walk_expire(ref, at)
            lost_before = t.lost
            lost = t.expire(at)
            assert lost == ref.lost - lost_before and t.lost == ref.lost  # the same seqs
            assert t.devices == ref.devices  # the same gaps left, key by key
            assert changed <= set(t.commit())
        elif op == "forget":
            before = now_ms - args[0]
            silent = {k for k, d in t.devices.items() if d.last_ms < before}
            kept = {k: d for k, d in t.devices.items() if d.last_ms >= before}
            assert set(t.forget_silent(before)) == silent
            assert t.devices == kept
            assert set(t.take_forgotten()) == silent
        elif op == "restore":  # read back (as the checkpoint does), maybe out of order
            again = SeqTracker(max_gap_age_ms=10_000, max_gap_ranges=3, clock=clock)
            items = sorted(t.devices.items(), key=lambda kv: kv[1].last_ms,
                           reverse=args[0])
            for key, d in items:
                again.restore_device(key, copy.deepcopy(d))
            again.lost = t.lost
            t = again
        check_totals(t)


def test_the_gauge_read_and_a_retention_run_with_nothing_due_walk_no_device() -> None:
    clock = Clock()
    t = SeqTracker(max_gap_age_ms=60_000, clock=clock)
    for i in range(1000):
        t.fresh(f"dev{i}", [1, 3, 4] if i % 2 else [1, 2])
    t.devices = NoWalk(t.devices)
    now_ms = int(clock.t * 1000)
    assert t.missing() == 500
    assert t.completeness() == 2500 / 3000
    assert t.expire(now_ms + 1000) == 0  # no gap old enough
    assert t.forget_silent(now_ms - 1000) == []  # nobody silent
    clock.t += 10
    t.fresh("dev0", [3])
    # due: only the silent, and the gaps past their age
    assert len(t.forget_silent(now_ms + 5_000)) == 999 and t.has_device("dev0")
    assert t.expire(now_ms + 61_000) == 0 and t.missing() == 0


def test_restored_state_is_forgotten_and_expired_like_the_walk(tmp_path: Any) -> None:
    clock = Clock()
    store = StateStore(tmp_path / "state.db")
    t = SeqTracker(max_gap_age_ms=10_000, clock=clock)
    store.restore(t, HourlyAggregates())
    for i in range(20):
        clock.t += 1
        t.fresh(f"dev{i}", [1, 5])  # one gap each, opened a second apart
    store.save(StateStore.snapshot(t, t.commit(), HourlyAggregates(), []))
    store.close()
    again = SeqTracker(max_gap_age_ms=10_000, clock=clock)
    StateStore(tmp_path / "state.db").restore(again, HourlyAggregates())
    assert again.missing() == 60 and again.completeness() == 40 / 100
    now_ms = int(clock.t * 1000)
    assert again.expire(now_ms + 500) == 3 * 10  # dev0..dev9: opened > 10 s before
    assert sorted(again.forget_silent(now_ms - 14_500), key=lambda k: int(k[3:])) == [
        "dev0", "dev1", "dev2", "dev3", "dev4"]
    assert again.missing() == 3 * 10 and not again.has_device("dev4")


statuses = st.lists(st.one_of(
    st.tuples(st.just("status"), st.sampled_from("pqrs"), st.booleans()),
    st.tuples(st.just("clock"), steps_ms),
    st.tuples(st.just("silent"), back_ms),
    st.tuples(st.just("forget"), st.sets(st.sampled_from("pqrs"))),
), max_size=50)


@settings(max_examples=200, deadline=None)
@given(statuses)
@example([("status", "p", True), ("clock", -2_000), ("status", "q", True), ("clock", 1_000),
          ("silent", 0)])  # q's status came after the clock stepped back
def test_online_count_and_silence_equal_the_walks(steps: list[tuple[Any, ...]]) -> None:
    health = DeviceHealth()
    now_ms = 1_000_000
    taken: set[str] = set()  # returned as silent, no status since
    for op, *args in steps:
        if op == "status":
            health.update(args[0], Status(v=1, device=args[0],
                                          state="online" if args[1] else "offline"),
                          now_ms)
            taken.discard(args[0])
        elif op == "clock":
            now_ms += args[0]
        elif op == "silent":
            before = now_ms - args[0]
            want = {d for d, h in health.devices.items()
                    if h.last_status_ms < before} - taken
            got = health.take_silent(before)
            assert set(got) == want and len(got) == len(want)
            taken |= want
        elif op == "forget":
            health.forget(sorted(args[0]))
            taken -= args[0]
        assert health.online_count() == sum(h.online for h in health.devices.values())


def test_device_seq_equality_is_by_state() -> None:
    """The walks above compare trackers device by device: DeviceSeq compares by value."""
    assert DeviceSeq(max_seq=3, lo=[2], hi=[2], opened=[1]) == DeviceSeq(
        max_seq=3, lo=[2], hi=[2], opened=[1])
    assert DeviceSeq(max_seq=3) != DeviceSeq(max_seq=4)


def test_commits_are_durable_at_once_and_the_wal_is_copied_back_off_the_commit(
        tmp_path: Any) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path, wal_checkpoint_every_s=0.05)
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    t = SeqTracker()
    store.restore(t, HourlyAggregates())
    for i in range(3000):
        t.fresh(f"dev{i}", [1, 3])
    store.save(StateStore.snapshot(t, t.commit(), HourlyAggregates(), []))
    # what a commit wrote is there for a restarted process, checkpointed or not
    again = SeqTracker()
    StateStore(path, wal_checkpoint_every_s=None).restore(again, HourlyAggregates())
    assert len(again.devices) == 3000 and again.missing() == 3000
    # the rows reach the database file itself (SQLite alone would leave them in the
    # WAL up to 1000 pages, then copy them inside a commit)
    assert wait_for(lambda: path.stat().st_size > 100_000, timeout=10), path.stat().st_size
    # the file grows while the checkpoint runs; the thread counts it once it returns
    assert wait_for(lambda: store.wal_checkpoints > 0, timeout=5)
    store.close()
    assert store._checkpointer is not None and not store._checkpointer.is_alive()


class NoHistory:
    """A new owner's history read that finds nothing (nothing moved here before)."""

    def recent(self, devices: Any, fields: Any, since_ms: int) -> History:
        raise OSError("no history in this test")

    def heard_after(self, after_ms: Mapping[str, int]) -> dict[str, int]:
        """"p" and "r" report to another collector now; "q" and "s" are silent
        everywhere (offline: kept, and asked about again later)."""
        return {d: t + 1 for d, t in after_ms.items() if d in MOVED}


MOVED = frozenset("pr")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("batch"), st.lists(st.sampled_from("pqrs"), min_size=1, max_size=4)),
    st.tuples(st.just("clock"), steps_ms),
    st.tuples(st.just("expire"), st.integers(0, 12_000)),
), max_size=40))
@example([("batch", ["p"]), ("clock", -2_000), ("batch", ["q"]), ("clock", 12_000),
          ("expire", 0)])
def test_handover_forgets_exactly_the_devices_the_walk_would(steps: list[tuple[Any, ...]]
                                                             ) -> None:
    """(After a clock step back too: `example`.)"""
    ho = HandOver(Engine([]), NoHistory(), 60_000, 10_000)
    ho._next_expiry = 2**62  # expiry only when the test says
    now_ms = 1_000_000
    for op, arg in steps:
        if op == "batch":
            ho.before_ingest(arg, [now_ms] * len(arg), now_ms)
        elif op == "clock":
            now_ms += arg
        else:
            at = now_ms + arg
            silent = {d for d, t in ho.last_seen.items() if at - t > ho.forget_after_ms}
            want = silent & MOVED
            kept = {d: (at if d in silent else t) for d, t in ho.last_seen.items()
                    if d not in want}
            got = ho.expire(at)
            assert set(got) == want and len(got) == len(want)
            assert dict(ho.last_seen) == kept


def test_forgetting_a_device_drops_its_cached_tags_without_a_walk() -> None:
    tags = TagCache(RegistryWatcher(None))
    for i in range(1000):
        for sensor in ("pms5003", "sht31"):
            tags.reading(f"dev{i}", sensor, 0)
    assert len(tags) == 3000  # 1000 devices' tags, 2000 sensors'
    tags._readings = NoWalk(tags._readings)
    tags.forget(["dev7", "dev8", "never-seen"])
    assert len(tags) == 3000 - 6
    assert "dev7" not in tags._readings and "dev9" in tags._readings
    assert tags.reading("dev7", "pms5003", 1) == "readings,device=dev7,sensor=pms5003,idx=1"
    assert len(tags) == 3000 - 6 + 2
