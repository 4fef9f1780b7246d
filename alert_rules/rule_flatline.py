"""Flatline: a stuck sensor — no variation over a window with enough readings.

With `tolerance: 0`, `min_readings` identical readings in a row that span the window
count too, however far apart they are (`FleetState.runs`): a device reporting every 5
minutes or every hour never holds `min_readings` in one window. For a device that does,
the two agree (a run spanning the window is a flat window).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alert_rules.lifecycle import NONE
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

    def runs_of(self) -> tuple[str, ...]:
        return (self.field,) if self.counts_runs() else ()

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
            runs = fleet.runs[self.field]
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
