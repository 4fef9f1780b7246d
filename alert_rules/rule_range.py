"""Out of range: the latest reading outside what the sensor can physically report."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alert_rules.aggregates import expiry_ms
from alert_rules.rule_base import RuleBase
from alert_rules.state import FleetState, IntArr
from alert_rules.transitions import Transition


@dataclass(kw_only=True)
class RangeRule(RuleBase):
    field: str = "pm2_5"
    # Plantower PMS5003 datasheet: effective range 0–500 µg/m³, maximum 1000 µg/m³.
    min: float = 0.0
    max: float = 1000.0
    max_age_ms: int = 0

    kind = "out_of_range"
    incremental = True

    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    def judge(self, fleet: FleetState, now_ms: int, rows: IntArr | None) -> list[Transition]:
        v = fleet.latest(self.field, now_ms, self.max_age_ms, rows)
        with np.errstate(invalid="ignore"):
            over = (v < self.min) | (v > self.max)
            under = (v >= self.min) & (v <= self.max)
        return self.step(fleet, v, over, under, now_ms, rows)

    def due_ms(self, fleet: FleetState, after_ms: int, rows: IntArr | None = None) -> IntArr:
        sel = slice(0, fleet.size) if rows is None else rows
        return np.minimum(super().due_ms(fleet, after_ms, rows),
                          expiry_ms(fleet, self.field, "latest", self.max_age_ms, after_ms, sel))
