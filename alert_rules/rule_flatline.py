"""Flatline: a stuck sensor — no variation over a window with enough readings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alert_rules.rule_base import RuleBase
from alert_rules.state import FleetState, IntArr
from alert_rules.transitions import Transition


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

    def judge(self, fleet: FleetState, now_ms: int, rows: IntArr | None) -> list[Transition]:
        lo, hi = fleet.window_range(self.field, now_ms, self.window_ms, rows)
        count = fleet.window_count(self.field, now_ms, self.window_ms, rows)
        enough = count >= self.min_readings
        spread = np.where(count > 0, hi - lo, np.nan)
        over = enough & (spread <= self.tolerance)
        under = (count > 0) & (spread > self.tolerance)
        return self.step(fleet, spread, over, under, now_ms, rows)
