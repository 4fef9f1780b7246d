"""Spatial: a device far above the median of its neighbours (a local source or a faulty
sensor) versus a regional episode (most devices of a township elevated).

A device is judged on what at least two of its readings agree on
(`FleetState.window_level`): the window's mean without its highest reading, or for a
device with one reading in the window (one every 10 minutes, or every hour) the lower of
it and the one before. A single reading far above the neighbours, which they contradict,
is a sensor's spike for the technician (`sensor_jump`), not a source to send a grid
worker to: alone it would hold a window's mean up for the whole window, and so pass
`for` by itself. Its neighbours' median and a township's share are taken on window
means (one spiking neighbour moves a median of several little); the level is never above
the mean, so the mean picks the candidates and the level is worked out for them only.

A device whose newest readings repeat one value (`frozen_readings` in a row, over at
least the window) is not sent to a grid worker: a frozen sensor parts from the air around
it and looks like a source, and it is `sensor_stuck`'s, for the technician. An alert
already firing still resolves when the device comes back to its neighbours.

A township in an episode gets one township alert (subject = township), and that
inhibits the per-device alerts of its devices: the grid worker needs one call, not fifty.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from alert_rules.lifecycle import NEVER, NONE, AlertColumns
from alert_rules.neighbour_layout import neighbour_layout
from alert_rules.neighbours import above_median_candidates, gather_median
from alert_rules.rule_base import RuleBase
from alert_rules.state import FleetState, IntArr
from alert_rules.transitions import AlertState, Transition


@dataclass(kw_only=True)
class SpatialRule(RuleBase):
    field: str = "pm2_5"
    window_ms: int = 600_000
    radius_km: float = 3.0
    max_neighbours: int = 8
    min_neighbours: int = 3
    ratio: float = 2.0  # device / neighbour median that counts as "far above"
    min_excess: float = 35.0  # µg/m³: and at least this much above (low levels are noisy)
    regional_above: float = 115.0  # µg/m³ a device must exceed to count toward an episode
    regional_fraction: float = 0.5  # share of a township's reporting devices
    #: a device's previous reading pairs with the only one in its window if this recent
    pair_ms: int = 3 * 3_600_000
    #: this many identical readings in a row, spanning the window, are a frozen sensor
    #: (0: never); a real source's readings vary
    frozen_readings: int = 3
    township_columns: AlertColumns = dataclasses.field(default_factory=AlertColumns,
                                                       repr=False)

    kind = "spatial"
    incremental = True
    whole_fleet = True  # a device is judged against its neighbours and its township

    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    def fine_windows_ms(self) -> tuple[int, ...]:
        return (self.window_ms,)

    def extremes(self) -> tuple[str, ...]:
        return (self.field,)

    def runs_of(self) -> tuple[str, ...]:
        return (self.field,) if self.frozen_readings > 0 else ()

    def _layout(self, fleet: FleetState) -> tuple[IntArr, IntArr, list[str]]:
        return neighbour_layout(fleet, self.radius_km, self.max_neighbours)

    def judge(self, fleet: FleetState, now_ms: int, rows: IntArr | None) -> list[Transition]:
        nbr_t, town, names = self._layout(fleet)
        v = fleet.window_mean(self.field, now_ms, self.window_ms)
        # the median is only needed where the device may be far above it, and where an
        # alert is under way (the only rows whose clear condition is read)
        n = v.size
        cols = self.columns
        cols.fit(n)
        need = np.flatnonzero(above_median_candidates(v, nbr_t, self.ratio)
                              | cols.firing[:n] | (cols.pending_since[:n] != NONE))
        med, valid = gather_median(v, nbr_t[:, need])
        enough = valid >= self.min_neighbours
        # regional episode per township: weighted bincounts over township codes (0: none)
        t = len(names)
        has = ~np.isnan(v)
        with np.errstate(invalid="ignore"):
            high = v > self.regional_above
        reporting = np.bincount(town, weights=has, minlength=t + 1)[1:]
        elevated = np.bincount(town, weights=high, minlength=t + 1)[1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(reporting > 0, elevated / reporting, np.nan)
            episode_t = share >= self.regional_fraction
            clear_t = share < self.regional_fraction * 0.8
        self.township_columns.fit(t)
        episode = np.r_[False, episode_t | self.township_columns.firing[:t]][town[need]]
        # the level (never above the mean) only where the mean is far above, or an alert
        # is under way (its value is reported): elsewhere no condition can hold or be read
        x = v[need]
        with np.errstate(invalid="ignore"):
            up = x + np.abs(x) * 1e-9  # a margin: rounding may put the level an ulp above
            far_mean = enough & (up > med * self.ratio) & (up - med > self.min_excess)
        judged = far_mean | cols.firing[need] | (cols.pending_since[need] != NONE)
        x[judged] = fleet.window_level(self.field, now_ms, self.window_ms, self.pair_ms,
                                       need[judged])
        value = v.copy()
        value[need] = x
        with np.errstate(invalid="ignore"):
            far = enough & (x > med * self.ratio) & (x - med > self.min_excess)
            # no reading in the window says nothing either way: an hourly device's alert
            # is held between its readings (not resolved and fired again each hour),
            # for as long as its last reading still pairs with the next one
            silent = now_ms - fleet.latest_ts[self.field][need] > self.pair_ms
            back = ((~np.isnan(x) & ((x <= med * self.ratio * 0.9) | ~enough))
                    | (np.isnan(x) & silent))
        if self.frozen_readings > 0:
            runs = fleet.runs[self.field]
            runs.fit(n)
            far &= ~((runs.count[need] >= self.frozen_readings)
                     & (now_ms - runs.since[need] >= self.window_ms))
        over = np.zeros(n, bool)  # not a candidate: not far above its neighbours
        over[need] = far & ~episode
        under = np.ones(n, bool)  # read only where an alert is under way (in `need`)
        under[need] = back | episode
        out = self.step(fleet, value, over, under, now_ms)
        if t:
            masks = self.township_columns.step(episode_t, clear_t, now_ms, self.for_ms,
                                               self.keep_firing_for_ms)
            for tr in self.emit(masks, names, share, now_ms, None, {"scope": "township"}):
                out.append(dataclasses.replace(tr, labels={**tr.labels, "township": tr.subject}))
        return out

    def other_due_ms(self) -> int:
        t = self.township_columns
        due = t.timer_due(self.for_ms, self.keep_firing_for_ms, slice(0, t.firing.size))
        return int(due.min()) if due.size else int(NEVER)

    def active(self, fleet: FleetState) -> dict[str, AlertState]:
        out = super().active(fleet)
        names = self._layout(fleet)[2]
        self.township_columns.fit(len(names))
        for i, town in enumerate(names):
            if self.township_columns.firing[i]:
                out[town] = "firing"
            elif self.township_columns.pending_since[i] >= 0:
                out[town] = "pending"
        return out

    # Township alerts are judged over every device of a township; a hand-over moves
    # devices, not townships, so they keep their state on each collector.
    def blank_fields(self) -> dict[str, Any]:
        return {"township_columns": AlertColumns()}

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        return {**self.columns.arrays(),
                **{f"township.{k}": v for k, v in self.township_columns.arrays().items()}}

    def load_state(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        self.columns.load(arrays)
        self.township_columns.load({k.split(".", 1)[1]: v for k, v in arrays.items()
                                    if k.startswith("township.")})
