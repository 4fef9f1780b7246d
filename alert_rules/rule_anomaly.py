"""Anomaly: the streaming detector's score of each device's newest reading.

With `neighbours` on, an anomalous device whose neighbours contradict it (their median
is outside [value / ratio, value × ratio]) is not reported here: that is a sensor
problem, which the `sensor_fault` rules report to the technician. An anomaly the
neighbours agree with, or one with too few neighbours to tell, is reported as today.
The neighbour median is only computed for the few anomalous devices.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from alert_rules.anomaly import Detector
from alert_rules.neighbours import row_median
from alert_rules.rule_base import RuleBase
from alert_rules.rule_sensor_fault import SensorFaultRule
from alert_rules.state import BoolArr, FleetState, FloatArr, IntArr
from alert_rules.transitions import Transition


@dataclass(kw_only=True)
class AnomalyRule(RuleBase):
    field: str = "pm2_5"
    above: float = 0.5  # score 0..1
    max_age_ms: int = 600_000  # a score this old says nothing any more
    neighbours: bool = False
    radius_km: float = 3.0
    max_neighbours: int = 8
    min_neighbours: int = 2
    ratio: float = 2.0
    detector: Detector = dataclasses.field(default_factory=Detector, repr=False)

    kind = "anomaly"
    # keep_firing_for_ms is the cooldown: after an anomaly the alert stays until this
    # long has passed without a new one, so a burst of odd readings is one alert.

    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    def observe(self, fleet: FleetState, rows: IntArr, ts: IntArr,
                values: dict[str, FloatArr]) -> None:
        self.detector.feed(rows, values[self.field], ts)

    def evaluate(self, fleet: FleetState, now_ms: int) -> list[Transition]:
        n = fleet.size
        self.detector.fit(n)
        fresh = (now_ms - fleet.latest_ts[self.field][:n]) <= self.max_age_ms
        score = np.where(fresh, self.detector.score[:n], 0.0)
        over = score > self.above
        if self.neighbours:
            over &= ~self._contradicted(fleet, np.flatnonzero(over), now_ms)
        return self.step(fleet, score, over, ~over, now_ms)

    def _contradicted(self, fleet: FleetState, rows: IntArr, now_ms: int) -> BoolArr:
        out = np.zeros(fleet.size, bool)
        if rows.size == 0:
            return out
        probe = SensorFaultRule(name=self.name, field=self.field, radius_km=self.radius_km,
                                max_neighbours=self.max_neighbours)
        nbr = probe._neighbours(fleet)
        latest = fleet.latest(self.field, now_ms, self.max_age_ms)
        around = np.r_[latest, np.nan][nbr[rows]]
        x = latest[rows]
        # a spike is scored at the reading after it: compare the spike itself with
        # what the neighbours read just before their newest reading
        self.detector.fit(fleet.size)
        back = self.detector.about_previous[rows]
        if back.any():
            prev = np.r_[fleet.prev_v[self.field][:fleet.size], np.nan]
            around = np.where(back[:, None], prev[nbr[rows]], around)
            x = np.where(back, self.detector.cols["prev"][rows], x)
        med = row_median(around)
        enough = (~np.isnan(around)).sum(axis=1) >= self.min_neighbours
        with np.errstate(invalid="ignore", divide="ignore"):
            far = (x > self.ratio * med) | (x < med / self.ratio)
        out[rows] = enough & far
        return out

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
