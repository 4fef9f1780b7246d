"""Sensor fault: a device that its neighbours contradict, one rule per cause.

Pollution reaches every sensor of a neighbourhood; a fault reaches one. So each cause
compares the device with the median of its neighbours (`alert_rules.neighbours`, the
layout the spatial rule caches):

- `stuck`: the device's readings have not changed over the window while its neighbours'
  have;
- `zero`: the device reads exactly 0 while its neighbours read at least
  `min_neighbour_level`;
- `jump`: the device's newest reading moved by more than `ratio`× against the previous
  one while the neighbours' median did not move (no plume rises that fast in one place);
- `drift`: the device's window mean stays outside [median / ratio, median × ratio] of its
  neighbours (`for` says for how long: hours, a fouled or ageing sensor); each tick
  re-judges a tenth of the fleet (by row; every device every ten minutes), since it is
  the only cause that needs every device's neighbour median;
- `humidity`: the device reads more than `ratio`× its neighbours while its own RH is at
  least `humidity_above` % (low-cost optical sensors count droplets as particles: Jayaratne
  et al. 2018, AMT 11, 4883; the wire's `high_humidity` flag uses the same physics).

Each cause is its own rule, so a device has at most one open alert per cause. The
neighbour median is only computed for the devices the cause picks out (a few), so the
rule costs a few whole-fleet array operations per tick. Evidence for the technician
(neighbour median, how long) goes into the annotation templates as {neighbour_median}
and {duration_min}.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from alert_rules.neighbours import row_median
from alert_rules.rule_base import RuleBase
from alert_rules.rule_spatial import neighbour_layout
from alert_rules.state import FleetState, FloatArr, IntArr
from alert_rules.transitions import Transition

CAUSES = ("stuck", "zero", "jump", "drift", "humidity")
#: causes judged on a device's own newest readings, row by row (`RuleBase.judges_rows`)
ROW_CAUSES = ("zero", "jump")


@dataclass(kw_only=True)
class SensorFaultRule(RuleBase):
    cause: str = "stuck"
    field: str = "pm2_5"
    humidity_field: str = "humidity_pct"
    window_ms: int = 1_200_000
    radius_km: float = 3.0
    max_neighbours: int = 8
    min_neighbours: int = 2
    ratio: float = 2.0
    min_neighbour_level: float = 5.0  # µg/m³: neighbours clearly above a sensor's zero
    humidity_above: float = 85.0  # % RH
    min_readings: int = 5
    drift_stride: int = 10
    last_over: npt.NDArray[np.bool_] = dataclasses.field(
        default_factory=lambda: np.zeros(0, bool), repr=False)
    onset_ms: IntArr = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    #: rows whose newest readings made them a candidate at their last judging (zero, jump)
    cand: npt.NDArray[np.bool_] = dataclasses.field(
        default_factory=lambda: np.zeros(0, bool), repr=False)

    kind = "sensor_fault"

    def fields(self) -> tuple[str, ...]:
        return (self.field, self.humidity_field) if self.cause == "humidity" else (self.field,)

    def fine_windows_ms(self) -> tuple[int, ...]:
        return (self.window_ms,)

    def extremes(self) -> tuple[str, ...]:
        return (self.field,) if self.cause == "stuck" else ()

    def _neighbours(self, fleet: FleetState) -> IntArr:
        """Neighbour rows as a (devices × k) matrix, -1 for none: the spatial rules'
        layout (one per radius and k, shared), turned once per fleet size."""
        key = f"spatial-rows:{self.radius_km}:{self.max_neighbours}"
        n = fleet.size
        nbr_t = neighbour_layout(fleet, self.radius_km, self.max_neighbours)[0]
        hit = fleet.layout.get(key)
        if hit is not None and hit[1] is nbr_t:
            cached: IntArr = hit[0]
            return cached
        nbr = np.ascontiguousarray(np.where(nbr_t < n, nbr_t, -1).T)
        fleet.layout[key] = (nbr, nbr_t)
        return nbr

    def _around(self, nbr: IntArr, rows: IntArr, per_device: FloatArr
                ) -> tuple[FloatArr, npt.NDArray[np.bool_]]:
        """(neighbour median, enough neighbours) of the given rows."""
        padded = np.r_[per_device, np.nan]
        around = padded[nbr[rows]]
        return row_median(around), (~np.isnan(around)).sum(axis=1) >= self.min_neighbours

    def judges_rows(self) -> bool:
        """Zero and jump read a device's own newest readings: judged on arrival, their
        candidates (`hot_rows`) every tick; the windowed causes are judged whole."""
        return self.cause in ROW_CAUSES

    def windowed(self) -> bool:
        return self.cause not in ROW_CAUSES and super().windowed()

    def hot_rows(self, fleet: FleetState, now_ms: int) -> IntArr:
        """Candidates (a zero, a jump) at their last judging: their verdict rests on
        their neighbours' readings, which may move at any tick."""
        n = min(fleet.size, self.cand.size)
        return np.flatnonzero(self.cand[:n])

    def judge(self, fleet: FleetState, now_ms: int, rows: IntArr | None) -> list[Transition]:
        if self.cause not in ROW_CAUSES:
            return self._judge_fleet(fleet, now_ms)
        n = fleet.size
        f = self.field
        nbr = self._neighbours(fleet)  # built on the first tick, not at the first fault
        sel = slice(0, n) if rows is None else rows
        latest = fleet.latest(f, now_ms, self.window_ms, rows)
        with np.errstate(invalid="ignore"):
            if self.cause == "zero":
                cand = latest == 0
            else:
                prev = fleet.prev_v[f][sel]
                step = np.abs(latest - prev)
                cand = (step > (self.ratio - 1) * np.maximum(np.minimum(latest, prev), 0)) \
                    & (step > self.min_neighbour_level)
        if self.cand.size < n:
            self.cand = np.r_[self.cand, np.zeros(n - self.cand.size, bool)]
        self.cand[sel] = cand
        local = np.flatnonzero(cand)
        picked = local if rows is None else rows[local]
        over = np.zeros(cand.size, bool)
        med = np.zeros(0)
        if local.size:
            around = nbr[picked]  # (candidates × k), -1: none
            med, enough = self._median_of(around, self._latest_at(fleet, around, now_ms))
            x = latest[local]
            with np.errstate(invalid="ignore", divide="ignore"):
                if self.cause == "zero":
                    bad = med >= self.min_neighbour_level
                else:
                    med_prev, _ = self._median_of(around, self._prev_at(fleet, around))
                    still = np.abs(med - med_prev) <= 0.2 * np.maximum(med_prev, 1e-9)
                    bad = still & ((x > self.ratio * med) | (x < med / self.ratio))
            over[local] = enough & bad
        self._onset(over, now_ms, n, rows)
        # evidence is rendered only for the few subjects that change state (context())
        self.evidence = {"now": now_ms, "median": dict(zip(picked.tolist(), med.tolist(),
                                                           strict=True)),
                         "index": fleet.index}
        return self.step(fleet, latest, over, ~over, now_ms, rows)

    def _latest_at(self, fleet: FleetState, around: IntArr, now_ms: int) -> FloatArr:
        """Newest value (NaN once older than the window) of the rows in `around` (-1: NaN)."""
        v = fleet.latest(self.field, now_ms, self.window_ms, np.maximum(around.ravel(), 0))
        return np.where(around.ravel() >= 0, v, np.nan).reshape(around.shape)

    def _prev_at(self, fleet: FleetState, around: IntArr) -> FloatArr:
        v = fleet.prev_v[self.field][np.maximum(around.ravel(), 0)]
        return np.where(around.ravel() >= 0, v, np.nan).reshape(around.shape)

    def _median_of(self, around: IntArr, values: FloatArr
                   ) -> tuple[FloatArr, npt.NDArray[np.bool_]]:
        """(median, enough neighbours) of rows of neighbour values."""
        return row_median(values), (~np.isnan(values)).sum(axis=1) >= self.min_neighbours

    def _judge_fleet(self, fleet: FleetState, now_ms: int) -> list[Transition]:
        """Stuck, drift and humidity read windows of every device: judged whole."""
        n = fleet.size
        f = self.field
        nbr = self._neighbours(fleet)
        latest = fleet.latest(f, now_ms, self.window_ms)
        total, count = fleet.window_sum_count(fleet.fine[f], now_ms, self.window_ms)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / count, np.nan)
        has = count >= (self.min_readings if self.cause in ("stuck", "drift") else 1)
        with np.errstate(invalid="ignore"):
            if self.cause == "stuck":
                lo, hi = fleet.window_range(f, now_ms, self.window_ms)
                spread = hi - lo
                cand = has & (spread == 0)
                judged = spread
            elif self.cause == "drift":
                # drift is judged over hours: each tick re-judges one `drift_stride`-th of
                # the fleet (by row), the others keep their last verdict
                due = (np.arange(n) % self.drift_stride) == (now_ms // 60_000) % self.drift_stride
                cand = has & due
                judged = mean
            else:
                rh = fleet.latest(self.humidity_field, now_ms, self.window_ms)
                cand = (rh >= self.humidity_above) & ~np.isnan(latest)
                judged = latest
        rows = np.flatnonzero(cand)
        over = np.zeros(n, bool)
        med = np.zeros(0)
        if rows.size:
            if self.cause == "stuck":
                med, enough = self._around(nbr, rows, np.where(np.isfinite(spread),
                                                               spread, np.nan))
                level, _ = self._around(nbr, rows, mean)
                over[rows] = enough & (med > 0)  # the neighbours' readings do change
                med = level
            else:
                med, enough = self._around(nbr, rows, mean)
                x = judged[rows]
                with np.errstate(invalid="ignore"):
                    if self.cause == "drift":
                        bad = ((x > self.ratio * med) | (x < med / self.ratio)) \
                            & (np.maximum(x, med) >= self.min_neighbour_level)
                    else:
                        bad = (x > self.ratio * med) & (x - med >= self.min_neighbour_level)
                over[rows] = enough & bad
        if self.cause == "drift":
            if self.last_over.size < n:
                self.last_over = np.r_[self.last_over, np.zeros(n - self.last_over.size, bool)]
            keep = ~due & has
            over[keep] = self.last_over[:n][keep]
            self.last_over[:n] = over
        self._onset(over, now_ms, n, None)
        self.evidence = {"now": now_ms, "median": dict(zip(rows.tolist(), med.tolist(),
                                                           strict=True)),
                         "index": fleet.index}
        return self.step(fleet, judged, over, ~over, now_ms)

    def _onset(self, over: npt.NDArray[np.bool_], now_ms: int, n: int,
               rows: IntArr | None) -> None:
        if self.onset_ms.size < n:
            self.onset_ms = np.r_[self.onset_ms, np.full(n - self.onset_ms.size, -1, np.int64)]
        sel = slice(0, n) if rows is None else rows
        o = self.onset_ms[sel]
        o[over & (o < 0)] = now_ms
        o[~over] = -1
        self.onset_ms[sel] = o

    def context(self, subject: str) -> dict[str, str]:
        if not self.evidence or subject not in self.evidence["index"]:
            return {}
        r = self.evidence["index"][subject]
        med = float(self.evidence["median"].get(r, np.nan))
        since = int(self.onset_ms[r]) if r < self.onset_ms.size else -1
        return {"neighbour_median": "" if np.isnan(med) else f"{med:.1f}",
                "duration_min": "" if since < 0
                else f"{(self.evidence['now'] - since) / 60_000:.0f}",
                "cause": self.cause}

    def blank_fields(self) -> dict[str, Any]:
        return {"onset_ms": np.zeros(0, np.int64), "evidence": {},
                "last_over": np.zeros(0, bool), "cand": np.zeros(0, bool)}

    def clear_rows(self, rows: IntArr) -> None:
        self.columns.clear(rows)
        rows = rows[rows < self.onset_ms.size]
        self.onset_ms[rows] = -1
        self.last_over[rows[rows < self.last_over.size]] = False
        self.cand[rows[rows < self.cand.size]] = False

    def copy_rows(self, rows: IntArr, src: Self, src_rows: IntArr) -> None:
        super().copy_rows(rows, src, src_rows)
        # judged at the next tick whatever they were: their candidacy is recomputed then
        if rows.size:
            n = int(rows.max()) + 1
            if self.cand.size < n:
                self.cand = np.r_[self.cand, np.zeros(n - self.cand.size, bool)]
            self.cand[rows] = True
