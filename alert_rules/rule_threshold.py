"""Threshold on a windowed aggregate, with `for`, hysteresis and `keep_firing_for`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alert_rules.aggregates import Aggregate, FieldAggregate, expiry_ms
from alert_rules.aggregates import aggregate as compute
from alert_rules.rule_base import RuleBase
from alert_rules.state import FleetState, FloatArr, IntArr
from alert_rules.transitions import Transition


@dataclass(kw_only=True)
class ThresholdRule(FieldAggregate, RuleBase):
    field: str
    above: float
    clear_below: float  # hysteresis: firing clears only below this (<= above)
    aggregate: Aggregate = "latest"
    window_ms: int = 0  # mean: the window; latest: the maximum age (0 = any)

    kind = "threshold"
    incremental = True

    def value(self, fleet: FleetState, now_ms: int, rows: IntArr | None = None) -> FloatArr:
        return compute(fleet, self.field, self.aggregate, self.window_ms, now_ms, rows)

    def judge(self, fleet: FleetState, now_ms: int, rows: IntArr | None) -> list[Transition]:
        v = self.value(fleet, now_ms, rows)
        with np.errstate(invalid="ignore"):
            over = v > self.above  # NaN compares False: no data never fires
            under = v < self.clear_below  # NaN: no data never clears (deadman's job)
        return self.step(fleet, v, over, under, now_ms, rows)

    def due_ms(self, fleet: FleetState, after_ms: int, rows: IntArr | None = None) -> IntArr:
        sel = slice(0, fleet.size) if rows is None else rows
        return np.minimum(super().due_ms(fleet, after_ms, rows),
                          expiry_ms(fleet, self.field, self.aggregate, self.window_ms,
                                    after_ms, sel))
