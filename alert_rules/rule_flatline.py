"""Flatline: a stuck sensor — no variation over a window with enough readings.

With `tolerance: 0`, `min_readings` identical readings in a row that span the window
count too, however far apart they are (`ReadingRuns`): a device reporting every 5
minutes or every hour never holds `min_readings` in one window. For a device that does,
the two agree (a run spanning the window is a flat window).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from alert_rules.lifecycle import NONE
from alert_rules.reading_runs import ReadingRuns
from alert_rules.rule_base import RuleBase
from alert_rules.state import BoolArr, FleetState, FloatArr, IntArr
from alert_rules.transitions import Transition

#: newest buckets read first for every device (see `_judge_fleet`)
RECENT_BUCKETS = 4


@dataclass(kw_only=True)
class FlatlineRule(RuleBase):
    field: str = "pm2_5"
    window_ms: int
    tolerance: float = 0.0  # max − min at or below this counts as flat (µg/m³)
    min_readings: int = 5
    runs: ReadingRuns = dataclasses.field(default_factory=ReadingRuns, repr=False)

    kind = "flatline"
    incremental = True

    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    def fine_windows_ms(self) -> tuple[int, ...]:
        return (self.window_ms,)

    def extremes(self) -> tuple[str, ...]:
        return (self.field,)

    def counts_runs(self) -> bool:
        return self.tolerance == 0

    def observe(self, fleet: FleetState, rows: IntArr, ts: IntArr,
                values: dict[str, FloatArr]) -> None:
        if self.counts_runs():
            self.runs.feed(rows, values[self.field], ts)

    def judge(self, fleet: FleetState, now_ms: int, rows: IntArr | None) -> list[Transition]:
        if rows is None:
            return self._judge_fleet(fleet, now_ms)
        spread, over, under = self._conditions(fleet, now_ms, rows)
        return self.step(fleet, spread, over, under, now_ms, rows)

    def _conditions(self, fleet: FleetState, now_ms: int, rows: IntArr | None
                    ) -> tuple[FloatArr, BoolArr, BoolArr]:
        lo, hi = fleet.window_range(self.field, now_ms, self.window_ms, rows)
        count = fleet.window_count(self.field, now_ms, self.window_ms, rows)
        enough = count >= self.min_readings
        spread = np.where(count > 0, hi - lo, np.nan)
        over = enough & (spread <= self.tolerance)
        under = (count > 0) & (spread > self.tolerance)
        if self.counts_runs():
            runs = self.runs
            runs.fit(fleet.size)
            sel = slice(0, fleet.size) if rows is None else rows
            n_run = runs.count[sel]
            # what the window holds must not contradict the run (a late reading)
            long_run = ((n_run >= self.min_readings) & ~under
                        & (now_ms - runs.since[sel] >= self.window_ms))
            spread = np.where(long_run, 0.0, spread)
            over |= long_run
            # a run that broke ends the alert, though the window holds one reading
            under = ~over & (under | ((n_run > 0) & (n_run < self.min_readings)))
        return spread, over, under

    def _judge_fleet(self, fleet: FleetState, now_ms: int) -> list[Transition]:
        """A device whose newest few buckets already spread beyond the tolerance is not
        flat, whatever the rest of its window holds (the window's max − min is at least
        that): only the others, and devices with an alert under way, are reduced over
        the whole window. Most of a live fleet varies, so this reads a few buckets of
        it instead of every bucket of the window three times (min, max, count)."""
        n = fleet.size
        ring = fleet.fine[self.field]
        first, last = fleet.window_buckets(now_ms, self.window_ms)
        recent = max(first, last - RECENT_BUCKETS + 1)
        lo = ring.reduce(ring.min, recent, last, n, np.minimum)
        hi = ring.reduce(ring.max, recent, last, n, np.maximum)
        if lo is None or hi is None:
            spread, over, under = self._conditions(fleet, now_ms, None)
            return self.step(fleet, spread, over, under, now_ms)
        with np.errstate(invalid="ignore"):
            varies = (hi - lo) > self.tolerance  # empty buckets: inf − inf, NaN: False
        cols = self.columns
        cols.fit(n)
        need = np.flatnonzero(~varies | cols.firing[:n] | (cols.pending_since[:n] != NONE))
        exact, over_n, under_n = self._conditions(fleet, now_ms, need)
        spread = np.full(n, np.nan)  # only subjects that change state are reported
        spread[need] = exact
        over = np.zeros(n, bool)
        over[need] = over_n
        under = varies.copy()
        under[need] = under_n
        return self.step(fleet, spread, over, under, now_ms)

    def blank_fields(self) -> dict[str, Any]:
        return {"runs": ReadingRuns()}

    def clear_rows(self, rows: IntArr) -> None:
        self.columns.clear(rows)
        self.runs.clear(rows)

    def copy_rows(self, rows: IntArr, src: Self, src_rows: IntArr) -> None:
        self.columns.copy_from(rows, src.columns, src_rows)
        self.runs.copy_from(rows, src.runs, src_rows)

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        if not self.counts_runs():
            return self.columns.arrays()
        return {**self.columns.arrays(),
                **{f"runs.{k}": v for k, v in self.runs.arrays().items()}}

    def load_state(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        self.columns.load(arrays)
        self.runs.load({k.split(".", 1)[1]: v for k, v in arrays.items()
                        if k.startswith("runs.")})
