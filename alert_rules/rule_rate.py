"""Rate of change / spike: the change between a device's last two readings, per minute."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alert_rules.lifecycle import NEVER
from alert_rules.rule_base import RuleBase
from alert_rules.state import FleetState, FloatArr, IntArr
from alert_rules.transitions import Transition


@dataclass(kw_only=True)
class RateRule(RuleBase):
    field: str = "pm2_5"
    above: float  # µg/m³ per minute
    clear_below: float
    direction: str = "rise"  # rise | both
    max_gap_ms: int = 600_000  # readings further apart than this say nothing about a rate

    kind = "rate_of_change"
    incremental = True

    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    def value(self, fleet: FleetState, now_ms: int, rows: IntArr | None = None) -> FloatArr:
        sel = slice(0, fleet.size) if rows is None else rows
        f = self.field
        dt = (fleet.latest_ts[f][sel] - fleet.prev_ts[f][sel]).astype(np.float64)
        dv = fleet.latest_v[f][sel] - fleet.prev_v[f][sel]
        fresh = (now_ms - fleet.latest_ts[f][sel]) <= self.max_gap_ms
        ok = (dt > 0) & (dt <= self.max_gap_ms) & fresh
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(ok, dv / np.where(ok, dt, 1.0) * 60_000.0, np.nan)
        return np.abs(rate) if self.direction == "both" else rate

    def judge(self, fleet: FleetState, now_ms: int, rows: IntArr | None) -> list[Transition]:
        v = self.value(fleet, now_ms, rows)
        with np.errstate(invalid="ignore"):
            over = v > self.above
            # a spike that stops reporting clears too: no rate is no spike
            under = (v < self.clear_below) | np.isnan(v)
        return self.step(fleet, v, over, under, now_ms, rows)

    def due_ms(self, fleet: FleetState, after_ms: int, rows: IntArr | None = None) -> IntArr:
        """A rate says nothing once its newest reading is older than `max_gap`."""
        sel = slice(0, fleet.size) if rows is None else rows
        stale = fleet.latest_ts[self.field][sel] + self.max_gap_ms + 1
        return np.minimum(super().due_ms(fleet, after_ms, rows),
                          np.where(stale > after_ms, stale, NEVER))
