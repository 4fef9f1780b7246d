"""Runs of identical readings fed in whole-array batches equal a reading-by-reading count."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from alert_rules.reading_runs import ReadingRuns

# few values and times, so runs, repeats, ties and late readings are common
reading = st.tuples(st.integers(0, 4), st.integers(0, 30),
                    st.sampled_from([1.0, 1.0, 2.0, 42.0, math.nan]))


def _by_hand(batches: list[list[tuple[int, int, float]]]) -> dict[int, tuple[float, int, int]]:
    runs: dict[int, list[float]] = {}  # row -> [value, count, since, newest]
    for batch in batches:
        # a batch's readings of one device in time order, ties in arrival order
        for row, ts, x in sorted(batch, key=lambda r: (r[0], r[1])):
            run = runs.setdefault(row, [math.nan, 0, 0, -math.inf])
            if math.isnan(x) or ts <= run[3]:
                continue
            run[:] = [x, run[1] + 1, run[2], ts] if run[1] and x == run[0] else [x, 1, ts, ts]
    return {r: (v, int(n), int(s)) for r, (v, n, s, _) in runs.items() if n}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(reading, max_size=12), max_size=8))
def test_batches_equal_a_reading_by_reading_count(
    batches: list[list[tuple[int, int, float]]],
) -> None:
    runs = ReadingRuns()
    for batch in batches:
        if batch:
            rows, ts, x = (np.array(c) for c in zip(*batch, strict=True))
            runs.feed(rows.astype(np.int64), x.astype(np.float64), ts.astype(np.int64))
    want = _by_hand(batches)
    runs.fit(5)
    got = {r: (float(runs.value[r]), int(runs.count[r]), int(runs.since[r]))
           for r in range(5) if runs.count[r]}
    assert got == want


def test_one_reading_each_and_a_backlog_give_the_same_runs() -> None:
    rows = np.array([0, 0, 0, 1, 1], np.int64)
    x = np.array([5.0, 5.0, 5.0, 7.0, 8.0])
    ts = np.array([10, 20, 30, 10, 20], np.int64)
    backlog, live = ReadingRuns(), ReadingRuns()
    backlog.feed(rows, x, ts)
    for i in range(rows.size):
        live.feed(rows[i:i + 1], x[i:i + 1], ts[i:i + 1])
    for key in ("value", "count", "since", "newest"):
        assert (getattr(backlog, key)[:2] == getattr(live, key)[:2]).all(), key
    assert backlog.count[:2].tolist() == [3, 1] and backlog.since[:2].tolist() == [10, 20]
