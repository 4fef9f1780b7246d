"""A backlog that arrives after a network outage is judged in its own time: the alert it
raises carries its original time and delay, once; the live tick after it repeats nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
from hypothesis import HealthCheck, given, settings

from alert_rules.engine import Engine
from alert_rules.registry import Device
from alert_rules.rulefile import load_rules
from alert_rules.transitions import Transition
from tests.alert_rules.test_property import RULES as PROPERTY_RULES
from tests.alert_rules.test_property import rules_file
from tests.support.replay_reference import replay_each
from tests.support.rules import engine_from

RULES = """
rules:
  - name: heavy
    kind: threshold
    aggregate: mean
    window: 3s
    above: 150
    clear_below: 135
    for: 3s
  - name: silent
    kind: deadman
    absent_for: 1h
"""
T0 = 1_790_000_000_000
S = 1000


def _feed(e: Engine, ts: list[int], pm: list[float]) -> None:
    e.ingest(["a"] * len(ts), ts, {"pm2_5": pm})


def _tick_over(e: Engine, start_s: int, end_s: int) -> list[Transition]:
    out: list[Transition] = []
    for half in range(start_s * 2, end_s * 2):
        out += e.tick(T0 + half * 500)
    return out


def _episode(t_s: int, lo: int, hi: int) -> float:
    return 220.0 if lo <= t_s < hi else 40.0


def _run(tmp_path: Path, episode: tuple[int, int], back_s: int) -> tuple[
        list[Transition], list[Transition], list[Transition]]:
    """Live readings 0..9 s; cut 10 s..back_s (the ticks go on); then the backlog and the
    live reading of back_s arrive together. Returns (during, replayed, after) transitions."""
    e = engine_from(tmp_path, RULES)
    during: list[Transition] = []
    for t in range(10):
        _feed(e, [T0 + t * S], [40.0])
        during += _tick_over(e, t, t + 1)
    during += _tick_over(e, 10, back_s)
    backlog = list(range(10, back_s))
    now = T0 + back_s * S
    replayed = e.replay_late(["a"] * len(backlog), [T0 + t * S for t in backlog],
                             {"pm2_5": [_episode(t, *episode) for t in backlog]}, None, now)
    _feed(e, [T0 + t * S for t in [*backlog, back_s]],
          [_episode(t, *episode) for t in [*backlog, back_s]])
    after = _tick_over(e, back_s, back_s + 6)
    return during, replayed, after


def test_episode_inside_the_outage_alerts_once_in_its_own_time(tmp_path: Path) -> None:
    during, replayed, after = _run(tmp_path, (15, 30), 40)
    assert during == []
    fired = [t for t in replayed if t.state == "firing"]
    assert len(fired) == 1
    f = fired[0]
    # the 3-s mean (3-s buckets) passes 150 a bucket or two after 15 s; `for` is 3 s more
    assert T0 + 18 * S <= f.at_ms <= T0 + 23 * S
    assert f.late_ms == T0 + 40 * S - f.at_ms
    resolved = [t for t in replayed if t.state == "resolved"]
    assert len(resolved) == 1 and resolved[0].at_ms > f.at_ms and resolved[0].late_ms > 0
    # the live ticks after the backlog judge nothing again
    assert [t for t in after if t.rule == "heavy"] == []


def test_episode_still_on_at_arrival_is_not_fired_again_live(tmp_path: Path) -> None:
    _, replayed, after = _run(tmp_path, (15, 60), 40)
    assert [t.state for t in replayed if t.state != "pending"] == ["firing"]
    assert replayed[-1].late_ms > 0
    assert [t for t in after if t.state == "firing"] == []
    # without the replay the live tick would have fired it now, as if it began now
    fresh = engine_from(tmp_path, RULES)
    _feed(fresh, [T0 + t * S for t in range(10, 41)], [_episode(t, 15, 60) for t in range(10, 41)])
    live = _tick_over(fresh, 40, 46)
    assert any(t.state == "firing" and t.late_ms == 0 and t.at_ms >= T0 + 40 * S for t in live)


# ---- the vectorized replay (all devices, bucket by bucket) equals one device at a time ----

late_reading = st.tuples(st.integers(0, 7), st.integers(0, 59 * 60 + 59),
                         st.one_of(st.integers(0, 420).map(float), st.just(float("nan"))),
                         st.booleans())


def _history(path: Path, registry: list[Device], live: list[tuple[int, list[tuple[
        int, int, float, bool]]]], last_tick_ms: int) -> Engine:
    """An engine that judged live minutes (readings at second offsets), ticked till then."""
    e = Engine(load_rules(path), registry=registry)
    for minute, readings in live:
        if readings:
            e.ingest([f"d{d}" for d, _, _, _ in readings],
                     [T0 + minute * 60_000 + s * 1000 for _, s, _, _ in readings],
                     {"pm2_5": [v for _, _, v, _ in readings]}, [f for *_, f in readings])
        e.tick(T0 + minute * 60_000 + 59_000)
    e.tick(last_tick_ms)
    return e


def _seen(transitions: list[Transition]) -> list[tuple[object, ...]]:
    return sorted((t.subject, t.rule, t.at_ms, t.state, t.late_ms, repr(t.value), t.severity,
                   sorted(t.labels.items()), sorted(t.annotations.items()))
                  for t in transitions)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(live=st.lists(st.tuples(st.integers(0, 50), st.lists(
           st.tuples(st.integers(0, 5), st.integers(0, 59),
                     st.integers(0, 420).map(float), st.booleans()), max_size=6)),
           max_size=8),
       backlog=st.lists(late_reading, min_size=1, max_size=40),
       ahead_s=st.integers(0, 3600))
def test_vectorized_replay_equals_the_device_by_device_one(
        tmp_path_factory: object, live: list[tuple[int, list[tuple[int, int, float, bool]]]],
        backlog: list[tuple[int, int, float, bool]], ahead_s: int) -> None:
    """Generated histories and backlogs (devices 0..5 registered, 6..7 never heard before,
    backlogs overlapping the live minutes or older than the rings): the same transitions,
    the same alert states left in the engine, the same live ticks after."""
    path = rules_file(tmp_path_factory, PROPERTY_RULES)
    registry = [Device(f"d{i}", township="AB"[i % 2], lat=39.9 + i / 300, lon=116.4)
                for i in range(6)]
    live = sorted(live, key=lambda m: m[0])
    last_tick = T0 + 60 * 60_000 + ahead_s * 1000
    now = last_tick + 5_000
    devs = [f"d{d}" for d, _, _, _ in backlog]
    ts = [T0 + s * 1000 for _, s, _, _ in backlog]
    vals: dict[str, Sequence[float | None]] = {"pm2_5": [v for _, _, v, _ in backlog]}
    flags = [f for *_, f in backlog]
    fast, slow = (_history(path, registry, live, last_tick) for _ in range(2))
    got = fast.replay_late(devs, ts, vals, flags, now, 60_000)
    want = replay_each(slow, devs, ts, vals, flags, now, 60_000)
    assert _seen(got) == _seen(want)
    for a, b in zip(fast.rules, slow.rules, strict=True):
        for key, arr in a.state_arrays().items():
            other = b.state_arrays()[key]
            n = min(arr.size, other.size, fast.fleet.size)
            assert np.array_equal(arr[:n], other[:n], equal_nan=True), (a.name, key)
    for e in (fast, slow):
        e.ingest(devs, ts, vals, flags)
    assert _seen(fast.tick(now + 1000)) == _seen(slow.tick(now + 1000))


def test_a_device_joining_behind_the_shared_clock_takes_no_bucket_the_ring_has_reused(
        tmp_path: Path) -> None:
    """Two known devices join the replay in the same bucket K, one at its very first
    millisecond (seeded up to bucket K−1), the other later in it (up to K): the shared
    clock is at K, so the first device's bucket K−slots, which the engine still holds, is
    not its to take (it would land in bucket K's slot and count as a reading of K)."""
    rules = "rules:\n  - {name: heavy, kind: threshold, aggregate: mean, window: 10m, above: 150}\n"
    engines = [engine_from(tmp_path, rules) for _ in range(2)]
    w, slots = engines[0].fleet.resolution_ms, engines[0].fleet.fine_slots
    k = T0 // w + 100
    for e in engines:
        e.ingest(["b", "a"], [(k - slots) * w, (k - slots) * w + 5], {"pm2_5": [40.0, 900.0]})
        e.tick((k - slots) * w + 10)
        e.tick((k - 1) * w)
    args = (["a", "b"], [k * w, k * w + 30_000], {"pm2_5": [40.0, 40.0]}, None, k * w + 50_000)
    got = engines[0].replay_late(*args)
    assert _seen(got) == _seen(replay_each(engines[1], *args))
    # the 900 has left a's window (it fired live): the replay resolves it, once
    assert [(t.subject, t.state) for t in got] == [("a", "resolved")]
