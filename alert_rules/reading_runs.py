"""Identical readings in a row, per device, however far apart they are.

A frozen sensor repeats its last value. A time window tells that of a device reporting
every minute, but a device reporting every 5 minutes (an SDS011 on a working period) or
every hour never holds enough readings in one: counting the repeats in a row does.

Kept as readings land (`feed`): the value of the current run, how many readings it has,
when it began, and the newest reading's time. A reading no newer than that time (a
late or repeated one) is passed over: it did not come after the run's readings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from alert_rules.saved_state import one_length

FloatArr = npt.NDArray[np.float64]
IntArr = npt.NDArray[np.int64]

KEYS = ("value", "count", "since", "newest")


@dataclass
class ReadingRuns:
    value: FloatArr = field(default_factory=lambda: np.zeros(0))
    count: IntArr = field(default_factory=lambda: np.zeros(0, np.int64))
    since: IntArr = field(default_factory=lambda: np.zeros(0, np.int64))  # first reading's ts
    newest: IntArr = field(default_factory=lambda: np.zeros(0, np.int64))  # last reading's ts

    def fit(self, n: int) -> None:
        have = self.count.size
        if n <= have:
            return
        extra = max(n - have, have)  # grow by doubling
        self.value = np.r_[self.value, np.full(extra, np.nan)]
        self.count = np.r_[self.count, np.zeros(extra, np.int64)]
        self.since = np.r_[self.since, np.zeros(extra, np.int64)]
        self.newest = np.r_[self.newest, np.full(extra, np.iinfo(np.int64).min)]

    def feed(self, rows: IntArr, x: FloatArr, ts: IntArr, in_order: bool = False) -> None:
        """Readings in any order, several per device allowed (missing values: NaN);
        `in_order`: already sorted by (row, ts), stably, as `FleetState.ingest` has them."""
        ok = np.isfinite(x)
        rows, x, ts = rows[ok], x[ok], ts[ok]
        if rows.size == 0:
            return
        self.fit(int(rows.max()) + 1)
        if rows.size == 1 or int(np.bincount(rows).max()) == 1:
            self._feed_one_each(rows, x, ts)  # live flow: no sort
            return
        if not in_order:
            order = np.lexsort((ts, rows))  # stable: equal times keep their arrival order
            rows, x, ts = rows[order], x[order], ts[order]
        first = np.r_[True, rows[1:] != rows[:-1]]
        later = ts > self.newest[rows]
        later[1:] &= first[1:] | (ts[1:] > ts[:-1])
        rows, x, ts = rows[later], x[later], ts[later]
        if rows.size == 0:
            return
        first = np.r_[True, rows[1:] != rows[:-1]]
        before = np.r_[np.nan, x[:-1]]
        before[first] = np.where(self.count[rows[first]] > 0, self.value[rows[first]], np.nan)
        fresh = x != before  # a new run begins here (NaN before: none under way)
        last = np.r_[first[1:], True]  # the newest reading of each device
        start = np.maximum.accumulate(np.where(fresh | first, np.arange(rows.size), -1))
        at, began = np.flatnonzero(last), start[last]
        r = rows[at]
        carried = ~fresh[began]  # the batch's first reading went on the run under way
        self.count[r] = np.where(carried, self.count[r], 0) + (at - began + 1)
        self.since[r] = np.where(carried, self.since[r], ts[began])
        self.value[r] = x[at]
        self.newest[r] = ts[at]

    def _feed_one_each(self, rows: IntArr, x: FloatArr, ts: IntArr) -> None:
        later = ts > self.newest[rows]
        rows, x, ts = rows[later], x[later], ts[later]
        goes_on = (self.count[rows] > 0) & (x == self.value[rows])
        self.count[rows] = np.where(goes_on, self.count[rows] + 1, 1)
        self.since[rows] = np.where(goes_on, self.since[rows], ts)
        self.value[rows] = x
        self.newest[rows] = ts

    def clear(self, rows: IntArr) -> None:
        rows = rows[rows < self.count.size]
        self.value[rows] = np.nan
        self.count[rows] = 0
        self.since[rows] = 0
        self.newest[rows] = np.iinfo(np.int64).min

    def copy_from(self, rows: IntArr, src: ReadingRuns, src_rows: IntArr) -> None:
        if rows.size == 0:
            return
        self.fit(int(rows.max()) + 1)
        src.fit(int(src_rows.max()) + 1)
        for key in KEYS:
            getattr(self, key)[rows] = getattr(src, key)[src_rows]

    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        return {key: getattr(self, key) for key in KEYS}

    def load(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        """From `arrays`; a snapshot taken before runs were kept starts them afresh."""
        if not all(key in arrays for key in KEYS):
            fresh = ReadingRuns()
            for key in KEYS:
                setattr(self, key, getattr(fresh, key))
            return
        one_length(arrays, "runs of readings",
                   {"value": np.float64, **{key: np.int64 for key in KEYS[1:]}})
        self.value = arrays["value"].astype(np.float64)
        for key in KEYS[1:]:
            setattr(self, key, arrays[key].astype(np.int64))
