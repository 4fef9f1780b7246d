"""What the report reads from InfluxDB: hourly means per device, flagged readings, status.

Hourly means come from `readings_hourly` (the collector's aggregates: one point per device
and UTC hour), so a county of 1,000 devices is 24,000 rows a day, not millions of readings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from airgrid.measurements import DEVICE_STATUS, READINGS, READINGS_HOURLY
from report.influx_query import InfluxReader, quote_ident
from report.period import HOUR_MS, Period

TAGS = ("device", "township", "site", "grid")


@dataclass(frozen=True)
class DeviceInfo:
    device: str
    township: str
    site: str
    grid: str


@dataclass(frozen=True)
class HourlyTable:
    """Hourly means over a period: one row per device, one column per hour (NaN: none)."""

    period: Period
    devices: list[DeviceInfo]
    pm2_5: npt.NDArray[np.float64]
    pm10: npt.NDArray[np.float64]

    @property
    def empty(self) -> bool:
        return not bool(np.isfinite(self.pm2_5).any())


def _time_range(p: Period) -> str:
    return f"time >= {p.start_ms}ms AND time < {p.end_ms}ms"


def hourly(reader: InfluxReader, p: Period, expected: Iterable[DeviceInfo] = ()) -> HourlyTable:
    """Hourly PM2.5/PM10 means per device; `expected` devices get a row even when silent."""
    group = ", ".join(quote_ident(t) for t in TAGS)
    series = reader.query(
        f'SELECT "pm2_5_mean", "pm10_mean" FROM {quote_ident(READINGS_HOURLY)} '
        f"WHERE {_time_range(p)} GROUP BY {group}")
    rows: dict[str, int] = {}
    infos: list[DeviceInfo] = []
    for e in expected:
        if e.device not in rows:
            rows[e.device] = len(infos)
            infos.append(e)
    for s in series:
        dev = s.tags.get("device", "")
        if dev and dev not in rows:
            rows[dev] = len(infos)
            infos.append(DeviceInfo(dev, s.tags.get("township", ""), s.tags.get("site", ""),
                                    s.tags.get("grid", "")))
    pm25 = np.full((len(infos), p.hours), np.nan)
    pm10 = np.full((len(infos), p.hours), np.nan)
    for s in series:
        dev = s.tags.get("device", "")
        if not dev:
            continue
        r = rows[dev]
        ti, ai, bi = (s.columns.index(c) for c in ("time", "pm2_5_mean", "pm10_mean"))
        for v in s.values:
            h = (int(v[ti]) - p.start_ms) // HOUR_MS
            if 0 <= h < p.hours:
                # A device whose registry tags changed has two series: fill, not overwrite.
                if v[ai] is not None:
                    pm25[r, h] = float(v[ai])
                if v[bi] is not None:
                    pm10[r, h] = float(v[bi])
    return HourlyTable(p, infos, pm25, pm10)


def township_daily_means(reader: InfluxReader, p: Period) -> dict[str, float]:
    """Each township's PM2.5 over the period as the report computes it (mean over devices
    of their daily means, then over days): for the change from yesterday / last year.

    InfluxDB does the per-device daily means (`GROUP BY time(1d, 16h)`: days starting at
    16:00 UTC = 00:00 Beijing time), so the comparison periods cost one row per device-day.
    """
    series = reader.query(
        f'SELECT mean("pm2_5_mean") FROM {quote_ident(READINGS_HOURLY)} '
        f'WHERE {_time_range(p)} GROUP BY time(1d, 16h), "device", "township"')
    per_town_day: dict[str, dict[int, list[float]]] = {}
    for s in series:
        town = s.tags.get("township", "")
        for t, v in s.values:
            if v is not None:
                per_town_day.setdefault(town, {}).setdefault(int(t), []).append(float(v))
    return {town: float(np.mean([np.mean(v) for v in days.values()]))
            for town, days in per_town_day.items()}


def flagged_counts(reader: InfluxReader, p: Period) -> dict[str, int]:
    """Readings per device that carry a quality flag (warming_up, stuck, …)."""
    series = reader.query(
        f'SELECT count("pm2_5") FROM {quote_ident(READINGS)} '
        f"WHERE \"flags\" != '' AND {_time_range(p)} GROUP BY \"device\"")
    out: dict[str, int] = {}
    for s in series:
        n = s.column("count")
        if n and n[0]:
            out[s.tags.get("device", "")] = int(n[0])
    return out


def offline_at_end(reader: InfluxReader, p: Period) -> set[str]:
    """Devices whose last status before the period's end says offline (Last Will)."""
    series = reader.query(
        f'SELECT last("online") FROM {quote_ident(DEVICE_STATUS)} '
        f"WHERE time >= {p.start_ms - 7 * 24 * HOUR_MS}ms AND time < {p.end_ms}ms "
        f'GROUP BY "device"')
    return {s.tags.get("device", "") for s in series if s.values and s.column("last")[0] is False}
