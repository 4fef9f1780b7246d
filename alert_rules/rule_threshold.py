"""Threshold on a windowed aggregate, with `for`, hysteresis and `keep_firing_for`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alert_rules.aggregates import Aggregate, FieldAggregate
from alert_rules.aggregates import aggregate as compute
from alert_rules.rule_base import RuleBase
from alert_rules.state import FleetState, FloatArr
from alert_rules.transitions import Transition


@dataclass(kw_only=True)
class ThresholdRule(FieldAggregate, RuleBase):
    field: str
    above: float
    clear_below: float  # hysteresis: firing clears only below this (<= above)
    aggregate: Aggregate = "latest"
    window_ms: int = 0  # mean: the window; latest: the maximum age (0 = any)

    kind = "threshold"

    def value(self, fleet: FleetState, now_ms: int) -> FloatArr:
        return compute(fleet, self.field, self.aggregate, self.window_ms, now_ms)

    def evaluate(self, fleet: FleetState, now_ms: int) -> list[Transition]:
        v = self.value(fleet, now_ms)
        with np.errstate(invalid="ignore"):
            over = v > self.above  # NaN compares False: no data never fires
            under = v < self.clear_below  # NaN: no data never clears (deadman's job)
        return self.step(fleet, v, over, under, now_ms)
