"""Anomaly: the streaming detector's score of each device's newest reading."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from alert_rules.anomaly import Detector
from alert_rules.rule_base import RuleBase
from alert_rules.state import FleetState, FloatArr, IntArr
from alert_rules.transitions import Transition


@dataclass(kw_only=True)
class AnomalyRule(RuleBase):
    field: str = "pm2_5"
    above: float = 0.5  # score 0..1
    max_age_ms: int = 600_000  # a score this old says nothing any more
    detector: Detector = dataclasses.field(default_factory=Detector, repr=False)

    kind = "anomaly"
    # keep_firing_for_ms is the cooldown: after an anomaly the alert stays until this
    # long has passed without a new one, so a burst of odd readings is one alert.

    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    def observe(self, fleet: FleetState, rows: IntArr, ts: IntArr,
                values: dict[str, FloatArr]) -> None:
        order = np.lexsort((ts, rows))
        self.detector.update_batch(rows[order], values[self.field][order])

    def evaluate(self, fleet: FleetState, now_ms: int) -> list[Transition]:
        n = fleet.size
        self.detector.fit(n)
        fresh = (now_ms - fleet.latest_ts[self.field][:n]) <= self.max_age_ms
        score = np.where(fresh, self.detector.score[:n], 0.0)
        over = score > self.above
        return self.step(fleet, score, over, ~over, now_ms)

    def blank_fields(self) -> dict[str, Any]:
        return {"detector": self.detector.blank()}

    def clear_rows(self, rows: IntArr) -> None:
        self.columns.clear(rows)
        self.detector.clear(rows)

    def copy_rows(self, rows: IntArr, src: Self, src_rows: IntArr) -> None:
        self.columns.copy_from(rows, src.columns, src_rows)
        self.detector.copy_from(rows, src.detector, src_rows)

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        return {**self.columns.arrays(),
                **{f"detector.{k}": v for k, v in self.detector.arrays().items()}}

    def load_state(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        self.columns.load(arrays)
        self.detector.load({k.split(".", 1)[1]: v for k, v in arrays.items()
                            if k.startswith("detector.")})
