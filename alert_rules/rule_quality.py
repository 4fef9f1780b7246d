"""Data quality: too large a share of a device's readings carry quality flags."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alert_rules.rule_base import RuleBase
from alert_rules.state import FleetState, IntArr
from alert_rules.transitions import Transition


@dataclass(kw_only=True)
class QualityRule(RuleBase):
    window_ms: int
    above: float  # fraction 0..1 of flagged readings
    clear_below: float
    min_readings: int = 5

    kind = "data_quality"
    incremental = True

    def fine_windows_ms(self) -> tuple[int, ...]:
        return (self.window_ms,)

    def judge(self, fleet: FleetState, now_ms: int, rows: IntArr | None) -> list[Transition]:
        frac, total = fleet.flagged_fraction(now_ms, self.window_ms, rows)
        with np.errstate(invalid="ignore"):
            over = (total >= self.min_readings) & (frac > self.above)
            under = frac < self.clear_below
        return self.step(fleet, frac, over, under, now_ms, rows)
