"""bench/alert_latency.py's fleet schedule: readings spread evenly over the interval, the
crossings a second it was asked for (split over publisher processes without overlap), a
crossing held long enough to be judged, and each alert matched to its own crossing."""

from __future__ import annotations

import random
from collections import Counter

from bench.alert_latency import (
    HOLD_S,
    Plan,
    first_reading_at,
    match_alerts,
    reading_time_s,
)


def test_readings_are_spread_evenly_over_the_interval() -> None:
    n, interval = 10_000, 10.0
    per_second = [first_reading_at(s + 1, n, interval) - first_reading_at(s, n, interval)
                  for s in range(30)]
    assert per_second == [1000] * 30  # 10,000 devices every 10 s: 1,000 messages a second
    one_interval = range(first_reading_at(0, n, interval), first_reading_at(interval, n,
                                                                             interval))
    assert sorted(k % n for k in one_interval) == list(range(n))  # each device once
    assert reading_time_s(first_reading_at(2.5, n, interval), n, interval) >= 2.5


def _values(plan: Plan, n: int, interval: float, seconds: int) -> list[tuple[int, float, float]]:
    out = []
    for k in range(first_reading_at(seconds, n, interval)):
        plan.plan_until(reading_time_s(k, n, interval))
        out.append((k % n, reading_time_s(k, n, interval), plan.value(k)))
    return out


def test_crossings_come_as_asked_and_hold_until_judged() -> None:
    n, interval, warmup = 1000, 2.0, 3.0
    readings = _values(Plan(n, interval, 7, warmup, random.Random(1)), n, interval, 40)
    crossings = [(i, t) for i, t, v in readings if v >= 200]
    per_second = Counter(int(t) for _, t in crossings)
    assert min(per_second) == warmup and set(per_second.values()) == {7}
    last: dict[int, tuple[float, float]] = {}
    for i, t, v in readings:
        prev = last.get(i)
        if prev is not None and prev[1] > 150 and v < 135:  # fell back
            since = max(tt for d, tt in crossings if d == i and tt < t)
            assert t - since >= HOLD_S
        if v >= 200:
            assert prev is None or prev[1] < 135  # a crossing comes from below
        last[i] = (t, v)


def test_publisher_parts_cross_their_own_devices_only() -> None:
    n, interval, parts = 1000, 1.0, 2
    crossed: list[set[int]] = []
    for part in range(parts):
        plan = Plan(n, interval, 5, 3.0, random.Random(part), lambda i, p=part: i % parts == p)
        vals = _values(plan, n, interval, 20)
        crossed.append({i for i, _, v in vals if v >= 200})
        assert all(i % parts == part for i in crossed[-1])
    assert crossed[0] and crossed[1]


def test_each_alert_is_matched_to_its_own_crossing() -> None:
    crossings = [("a", 10.0), ("b", 10.5), ("a", 20.0), ("c", 30.0)]
    firings = [("a", 9.0), ("a", 10.2), ("b", 10.6), ("a", 20.3), ("x", 11.0)]
    latencies, missing = match_alerts(crossings, firings)
    assert [round(x) for x in latencies] == [200, 100, 300] and missing == 1
