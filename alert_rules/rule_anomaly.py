"""Anomaly: the streaming detector's score of each device's newest reading.

With `neighbours` on, an anomalous device whose neighbours contradict it (their median
is outside [value / ratio, value × ratio]) is not reported here: that is a sensor
problem, which the `sensor_fault` rules report to the technician. Nor is one whose score
is driven by a stuck run or an exact 0 (`Detector.own_fault`): a frozen sensor reads a
plausible value, which its neighbours do not contradict, but no air does that; the
`sensor_stuck` and `sensor_zero` rules report it. An anomaly the neighbours agree with,
or one with too few neighbours to tell, is reported as today. The neighbour median is
only computed for the few anomalous devices.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from alert_rules.anomaly import Detector, statistic_name
from alert_rules.lifecycle import NEVER
from alert_rules.neighbours import row_median
from alert_rules.rule_base import RuleBase
from alert_rules.rule_sensor_fault import SensorFaultRule
from alert_rules.state import BoolArr, FleetState, FloatArr, IntArr
from alert_rules.transitions import Transition

#: what each of the detector's statistics says about a reading, for the alert's text
STATISTIC_TEXT: dict[str, tuple[str, str]] = {
    "spike": ("读数突变", "an outlying reading"),
    "vspike": ("单点尖峰后回落", "a one-reading spike that came back"),
    "shift": ("水平突变", "a level shift"),
    "variance": ("波动异常", "unusual fluctuation"),
    "drift": ("缓慢漂移", "a slow drift"),
    "daily": ("偏离该站日变化规律", "a departure from the device's daily pattern"),
    "stuck": ("读数停滞不变", "a reading stuck at one value"),
    "zeros": ("读数为零", "a reading of zero"),
    "extreme": ("超出该站历史范围", "beyond anything the device has read"),
    "likelihood": ("连续多个读数异常", "a run of unusual readings"),
}


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
    #: per row: the statistic (its index in the detector's COMPONENTS, -1: none) that
    #: made the score when the device was last over the line, for the alert's text
    last_statistic: IntArr = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64),
                                               repr=False)
    _index: dict[str, int] = dataclasses.field(default_factory=dict, repr=False)
    #: rows whose score is over the line (None: recompute, the scores moved)
    _hot: IntArr | None = dataclasses.field(default=None, repr=False)
    _hot_n: int = dataclasses.field(default=0, repr=False)

    kind = "anomaly"
    incremental = True
    # keep_firing_for_ms is the cooldown: after an anomaly the alert stays until this
    # long has passed without a new one, so a burst of odd readings is one alert.

    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    def judge(self, fleet: FleetState, now_ms: int, rows: IntArr | None) -> list[Transition]:
        n = fleet.size
        self.detector.fit(n)
        sel = slice(0, n) if rows is None else rows
        fresh = (now_ms - fleet.latest_ts[self.field][sel]) <= self.max_age_ms
        score = np.where(fresh, self.detector.score[sel], 0.0)
        over = score > self.above
        if self.neighbours:
            local = np.flatnonzero(over)
            at = local if rows is None else rows[local]
            over[local] = ~self.detector.own_fault[at] & ~self._contradicted(fleet, at, now_ms)
        hit = np.flatnonzero(over)
        self._fit(n)
        # kept past the judging, so that the alert's resolution names what it was about
        at = hit if rows is None else rows[hit]
        self.last_statistic[at] = self.detector.cols["driver"][at]
        self._index = fleet.index
        return self.step(fleet, score, over, ~over, now_ms, rows)

    def _fit(self, n: int) -> None:
        if self.last_statistic.size < n:
            self.last_statistic = np.r_[self.last_statistic,
                                        np.full(n - self.last_statistic.size, -1, np.int64)]

    def context(self, subject: str) -> dict[str, str]:
        """What made the score when the subject was last over the line, in both
        languages ({statistic_zh}, {statistic_en}); empty if it never was."""
        row = self._index.get(subject, -1)
        d = int(self.last_statistic[row]) if 0 <= row < self.last_statistic.size else -1
        zh, en = STATISTIC_TEXT.get(statistic_name(d) or "", ("", ""))
        return {"statistic_zh": zh, "statistic_en": en}

    def hot_rows(self, fleet: FleetState, now_ms: int) -> IntArr:
        """Devices whose score is over the line: whether their neighbours contradict them
        can change at any tick. The score itself only changes when readings arrive (those
        rows are judged anyway), its freshness by time (`due_ms`)."""
        if not self.neighbours:
            return np.zeros(0, np.int64)
        n = fleet.size
        if self._hot is None or self._hot_n != n:
            self.detector.fit(n)
            self._hot, self._hot_n = np.flatnonzero(self.detector.score[:n] > self.above), n
        return self._hot

    def due_ms(self, fleet: FleetState, after_ms: int, rows: IntArr | None = None) -> IntArr:
        """A score over the line says nothing once older than `max_age`."""
        sel = slice(0, fleet.size) if rows is None else rows
        self.detector.fit(fleet.size)
        stale = fleet.latest_ts[self.field][sel] + self.max_age_ms + 1
        over = self.detector.score[sel] > self.above
        return np.minimum(super().due_ms(fleet, after_ms, rows),
                          np.where(over & (stale > after_ms), stale, NEVER))

    def observe(self, fleet: FleetState, rows: IntArr, ts: IntArr,
                values: dict[str, FloatArr]) -> None:
        self.detector.feed(rows, values[self.field], ts)
        self._hot = None

    def _contradicted(self, fleet: FleetState, rows: IntArr, now_ms: int) -> BoolArr:
        """Of these anomalous rows: does the median of their neighbours' newest values
        (with enough neighbours) lie outside [value / ratio, value × ratio]?"""
        if rows.size == 0:
            return np.zeros(0, bool)
        probe = SensorFaultRule(name=self.name, field=self.field, radius_km=self.radius_km,
                                max_neighbours=self.max_neighbours)
        around = probe._neighbours(fleet)[rows]  # (rows × k), -1: none
        flat = around.ravel()
        near = fleet.latest(self.field, now_ms, self.max_age_ms, np.maximum(flat, 0))
        vals = np.where(flat >= 0, near, np.nan).reshape(around.shape)
        x = fleet.latest(self.field, now_ms, self.max_age_ms, rows)
        # a spike is scored at the reading after it: compare the spike itself with
        # what the neighbours read just before their newest reading
        self.detector.fit(fleet.size)
        back = self.detector.about_previous[rows]
        if back.any():
            prev = fleet.prev_v[self.field][np.maximum(flat, 0)]
            before = np.where(flat >= 0, prev, np.nan).reshape(around.shape)
            vals = np.where(back[:, None], before, vals)
            x = np.where(back, self.detector.cols["prev"][rows], x)
        med = row_median(vals)
        enough = (~np.isnan(vals)).sum(axis=1) >= self.min_neighbours
        with np.errstate(invalid="ignore", divide="ignore"):
            far = (x > self.ratio * med) | (x < med / self.ratio)
        out: BoolArr = enough & far
        return out

    def blank_fields(self) -> dict[str, Any]:
        return {"detector": self.detector.blank(), "_hot": None,
                "last_statistic": np.zeros(0, np.int64), "_index": {}}

    def clear_rows(self, rows: IntArr) -> None:
        self.columns.clear(rows)
        self.detector.clear(rows)
        self.last_statistic[rows[rows < self.last_statistic.size]] = -1
        self._hot = None

    def copy_rows(self, rows: IntArr, src: Self, src_rows: IntArr) -> None:
        self.columns.copy_from(rows, src.columns, src_rows)
        self.detector.copy_from(rows, src.detector, src_rows)
        if rows.size:
            self._fit(int(rows.max()) + 1)
            src._fit(int(src_rows.max()) + 1)
            self.last_statistic[rows] = src.last_statistic[src_rows]
        self._hot = None

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        return {**self.columns.arrays(),
                **{f"detector.{k}": v for k, v in self.detector.arrays().items()}}

    def load_state(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        self.columns.load(arrays)
        self.detector.load({k.split(".", 1)[1]: v for k, v in arrays.items()
                            if k.startswith("detector.")})
        self._hot = None
