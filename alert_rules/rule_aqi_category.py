"""AQI category: fires when a device's category reaches a level; clears with hysteresis
at the category edge (the AQI must fall `clear_margin` points below the edge)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from alert_rules import aqi
from alert_rules.aggregates import Aggregate, FieldAggregate, expiry_ms
from alert_rules.aggregates import aggregate as compute
from alert_rules.rule_base import RuleBase, category_contexts
from alert_rules.state import FleetState, FloatArr, IntArr
from alert_rules.transitions import Transition


@dataclass(kw_only=True)
class AqiCategoryRule(FieldAggregate, RuleBase):
    field: str = "pm2_5"
    pollutant: str = "pm2_5"
    standard: str = aqi.DEFAULT_STANDARD
    level: int = 4  # index into the standard's categories (4 = 重度污染 under HJ 633)
    clear_margin: float = 10.0  # AQI points below the edge before it clears
    aggregate: Aggregate = "nowcast"
    window_ms: int = 0

    kind = "aqi_category"
    incremental = True
    _memo: tuple[FloatArr, FloatArr] | None = dataclasses.field(default=None, repr=False)

    @property
    def edge(self) -> float:
        """Highest AQI of the category below the level."""
        return float(aqi.get(self.standard).categories[self.level - 1].max_aqi)

    def judge(self, fleet: FleetState, now_ms: int, rows: IntArr | None) -> list[Transition]:
        std = aqi.get(self.standard)
        hourly = self.aggregate in ("hourly", "mean_24h", "nowcast")
        conc = compute(fleet, self.field, self.aggregate, self.window_ms, now_ms,
                       None if hourly else rows)
        # hourly aggregates are memoised (the same array object until they change)
        if self._memo is not None and self._memo[0] is conc:
            index = self._memo[1]
        else:
            index = std.iaqi(self.pollutant, conc)
            if hourly:
                self._memo = (conc, index)
        if hourly and rows is not None:
            index = index[rows]
        with np.errstate(invalid="ignore"):
            over = index > self.edge
            under = index <= self.edge - self.clear_margin
        cat = std.categories[self.level]
        masks = self.columns.step(over, under, now_ms, self.for_ms, self.keep_firing_for_ms,
                                  rows)
        return self.emit(masks, fleet.devices, index, now_ms, fleet,
                         {"level": cat.en, "level_zh": cat.zh, "standard": std.id}, rows)

    def due_ms(self, fleet: FleetState, after_ms: int, rows: IntArr | None = None) -> IntArr:
        sel = slice(0, fleet.size) if rows is None else rows
        return np.minimum(super().due_ms(fleet, after_ms, rows),
                          expiry_ms(fleet, self.field, self.aggregate, self.window_ms,
                                    after_ms, sel))

    def blank_fields(self) -> dict[str, Any]:
        return {"_memo": None}

    def clear_rows(self, rows: IntArr) -> None:
        self.columns.clear(rows)
        self._memo = None  # the hourly aggregates it caches changed

    def template_contexts(self, values: FloatArr) -> list[dict[str, str]]:
        """The category of each AQI value and the value itself, as {aqi}."""
        std = aqi.get(self.standard)
        out = category_contexts(std, std.category_index(values))
        for ctx, v in zip(out, values.tolist(), strict=True):
            if ctx:
                ctx["aqi"] = f"{v:.0f}"
        return out
