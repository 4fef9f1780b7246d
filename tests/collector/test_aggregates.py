"""Hourly aggregates equal a plain recomputation, whichever path a message takes."""

from __future__ import annotations

import random

import pytest

from collector.aggregates import HOUR_MS, HourlyAggregates


def test_aggregates_match_brute_force_across_hour_boundaries() -> None:
    rng = random.Random(7)
    aggs = HourlyAggregates()
    truth: dict[tuple[str, int], list[float]] = {}
    base = 1_790_000_000_000 - 1_790_000_000_000 % HOUR_MS
    for device in ("a", "b"):
        t = base - 30_000
        for _ in range(60):  # messages of 1..50 readings, some straddling an hour
            n = rng.randint(1, 50)
            ts = [t + i * rng.randint(500, 120_000) for i in range(n)]
            t = ts[-1] + 1000
            pm25 = [None if rng.random() < 0.1 else round(rng.uniform(0, 300), 1)
                    for _ in ts]
            aggs.add(device, ts, [pm25, [1.0] * n])
            for ti, v in zip(ts, pm25, strict=True):
                if v is not None:
                    truth.setdefault((device, ti - ti % HOUR_MS), []).append(v)
    lines = aggs.lines({"a": ",device=a", "b": ",device=b"})
    assert len(truth) > 4 and len(lines) == len(aggs.touched) >= len(truth)
    for (device, hour), values in truth.items():
        a = aggs.hours[(device, hour)]
        assert a.counts[0] == len(values)
        assert a.sums[0] == pytest.approx(sum(values))
        assert a.maxes[0] == max(values)
    assert aggs.commit(base) and not aggs.touched
