"""Windowed aggregates of one field across the fleet, by name (as rule files spell them)."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from alert_rules.lifecycle import NEVER
from alert_rules.nowcast import nowcast
from alert_rules.state import FleetState, FloatArr, IntArr

Aggregate = Literal["latest", "mean", "hourly", "mean_24h", "nowcast"]
AGGREGATES: tuple[str, ...] = get_args(Aggregate)
# GB 3095-2012 §8 (data validity): a 24-hour mean of PM2.5/PM10 needs at least 20 hourly
# means in the day.
MIN_HOURS_24H = 20


class FieldAggregate:
    """What a rule that judges one field through an aggregate needs from the state:
    the field, the fine windows of a windowed mean, the hours of an hourly aggregate."""

    field: str
    aggregate: Aggregate
    window_ms: int

    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    def fine_windows_ms(self) -> tuple[int, ...]:
        return (self.window_ms,) if self.aggregate == "mean" else ()

    def hours_needed(self) -> int:
        return hours_for(self.aggregate)


def hours_for(aggregate: str) -> int:
    """Hourly ring slots an aggregate needs (complete hours + the current one)."""
    return {"hourly": 2, "mean_24h": 26, "nowcast": 14}.get(aggregate, 0)


def aggregate(fleet: FleetState, field: str, kind: str, window_ms: int,
              now_ms: int, rows: IntArr | None = None) -> FloatArr:
    """The aggregate per device, or for `rows` only."""
    if kind == "latest":
        return fleet.latest(field, now_ms, window_ms, rows)
    if kind == "mean":
        return fleet.window_mean(field, now_ms, window_ms, rows)
    if kind in ("hourly", "mean_24h", "nowcast"):
        # built from complete hours only: recomputed when an hour turns or a late
        # reading arrives, not every tick
        key = (kind, fleet.hourly_key(field, now_ms))
        memo = f"aggregate:{field}:{kind}"
        hit = fleet.layout.get(memo)
        if hit is None or hit[0] != key:
            hit = fleet.layout[memo] = (key, _hourly(fleet, field, kind, now_ms))
        out: FloatArr = hit[1]
        return out if rows is None else out[rows]
    raise ValueError(f"unknown aggregate {kind!r}; known: {AGGREGATES}")


def expiry_ms(fleet: FleetState, field: str, kind: str, window_ms: int, after_ms: int,
              rows: IntArr | slice) -> IntArr:
    """When a `latest` value with a maximum age turns to no value (NEVER for other
    aggregates: bucketed windows move with the clock's buckets, which the engine
    follows)."""
    if kind != "latest" or window_ms <= 0:
        return np.full(fleet.latest_ts[field][rows].shape, NEVER, np.int64)
    gone = fleet.latest_ts[field][rows] + window_ms
    return np.where(gone > after_ms, gone, NEVER)


def _hourly(fleet: FleetState, field: str, kind: str, now_ms: int) -> FloatArr:
    if kind == "hourly":
        last: FloatArr = fleet.hourly_means(field, now_ms, 1)[0]
        return last
    if kind == "mean_24h":
        h = fleet.hourly_means(field, now_ms, 24)
        ok = ~np.isnan(h)
        n = ok.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.where(ok, h, 0.0).sum(axis=0) / n
        mean_24h: FloatArr = np.where(n >= MIN_HOURS_24H, m, np.nan)
        return mean_24h
    return nowcast(fleet.hourly_means(field, now_ms, 12))
