"""The report's numbers, computed from the hourly table with `alert_rules.aqi`.

HJ 633-2026 daily AQI: the day's mean concentration of each pollutant → IAQI per pollutant
(the standard's 24-h columns and rounding, applied by `alert_rules.aqi`) → AQI = the
largest IAQI; the primary pollutant is the one giving it, named only when AQI > 50
(HJ 633 §4.3: no primary pollutant on a 优 day). The hourly curve applies the same columns
to 1-hour means (HJ 633-2026 §4.2.3–4.2.4).

A device's daily mean is the mean of its hourly means; a township's (and the county's) is
the mean of its devices' daily means, so a device that reports twice as often does not
count twice. GB 3095 (§8, data validity) asks for at least 20 hourly means for a valid
24-h mean: days with fewer are still shown, marked incomplete.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from alert_rules import aqi
from report.alert_stats import AlertStats
from report.period import Period
from report.source import DeviceInfo, HourlyTable

POLLUTANTS = ("pm2_5", "pm10")
#: hourly PM2.5 thresholds counted per township, µg/m³: the top of 良 under HJ 633-2012's
#: 24-h column (75) and where 重度污染 begins (150, the county's alert rule)
HOUR_THRESHOLDS = (75.0, 150.0)
#: GB 3095 data validity: a 24-h mean needs at least 20 hourly means
MIN_HOURS_PER_DAY = 20
WORST_SITES = 6


@dataclass(frozen=True)
class AqiResult:
    pm2_5: float  # µg/m³ (NaN: no data)
    pm10: float
    iaqi: dict[str, float]
    aqi: float
    primary: str  # "" when AQI <= 50 or no data
    category_zh: str
    category_en: str
    color: str

    @property
    def has_data(self) -> bool:
        return not math.isnan(self.aqi)


@dataclass(frozen=True)
class TownshipRow:
    township: str
    devices: int
    pm2_5: float
    result: AqiResult
    change_prev: float | None  # µg/m³ against the previous day/month (None: no data)
    change_year: float | None  # against the same day/month last year
    hours_over: dict[float, int]
    completeness: float  # device-hours with data / device-hours expected, 0..1


@dataclass(frozen=True)
class SiteSeries:
    info: DeviceInfo
    pm2_5: float
    hourly: npt.NDArray[np.float64]


@dataclass(frozen=True)
class DeviceIssue:
    info: DeviceInfo
    hours_missing: int
    flagged: int
    offline: bool


@dataclass(frozen=True)
class Report:
    period: Period
    standard: str
    county: AqiResult
    days: list[tuple[dt.date, AqiResult]]  # per day (one for a daily report)
    hourly_aqi: npt.NDArray[np.float64]
    hourly_pm2_5: npt.NDArray[np.float64]
    townships: list[TownshipRow]
    worst: list[SiteSeries]
    issues: list[DeviceIssue]
    completeness: float
    devices: int
    alerts: AlertStats | None
    notes: list[str] = field(default_factory=list)

    @property
    def has_data(self) -> bool:
        return self.county.has_data


def _nanmean(a: npt.NDArray[np.float64], axis: int | None = None) -> npt.NDArray[np.float64]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices are "no data"
        return np.asarray(np.nanmean(a, axis=axis), np.float64)


def aqi_of(std: aqi.Standard, pm2_5: float, pm10: float) -> AqiResult:
    conc = {"pm2_5": pm2_5, "pm10": pm10}
    iaqi = {p: float(std.iaqi(p, [c])[0]) for p, c in conc.items()}
    known = {p: v for p, v in iaqi.items() if not math.isnan(v)}
    if not known:
        return AqiResult(pm2_5, pm10, iaqi, math.nan, "", "", "", "#cccccc")
    primary = max(known, key=lambda p: known[p])
    value = known[primary]
    cat = std.category(value)
    assert cat is not None
    return AqiResult(pm2_5, pm10, iaqi, value, primary if value > 50 else "", cat.zh, cat.en,
                     cat.color)


def daily_means(t: HourlyTable, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """(devices, days): each device's mean of its hourly means per day."""
    return _nanmean(values.reshape(len(t.devices), t.period.days, 24), axis=2)


def _period_mean(t: HourlyTable, values: npt.NDArray[np.float64],
                 rows: npt.NDArray[np.bool_]) -> float:
    """Mean over the period: of the devices' daily means, then of the days."""
    if not rows.any():
        return math.nan
    per_day = _nanmean(daily_means(t, values)[rows], axis=0)
    return float(_nanmean(per_day))


def township_means(t: HourlyTable) -> dict[str, float]:
    names = sorted({d.township for d in t.devices})
    town = np.array([d.township for d in t.devices], dtype=object)
    return {n: _period_mean(t, t.pm2_5, town == n) for n in names}


def compute(t: HourlyTable, std: aqi.Standard, prev: dict[str, float] | None = None,
            year: dict[str, float] | None = None, flagged: dict[str, int] | None = None,
            offline: set[str] | None = None, alerts: AlertStats | None = None) -> Report:
    p = t.period
    all_rows = np.ones(len(t.devices), dtype=bool)
    county = aqi_of(std, _period_mean(t, t.pm2_5, all_rows), _period_mean(t, t.pm10, all_rows))
    d25 = _nanmean(daily_means(t, t.pm2_5), axis=0) if t.devices else np.full(p.days, np.nan)
    d10 = _nanmean(daily_means(t, t.pm10), axis=0) if t.devices else np.full(p.days, np.nan)
    days = [(d, aqi_of(std, float(a), float(b))) for d, a, b in zip(p.dates(), d25, d10,
                                                                   strict=True)]
    if p.kind == "daily":
        county = days[0][1]
    h25 = _nanmean(t.pm2_5, axis=0) if t.devices else np.full(p.hours, np.nan)
    h10 = _nanmean(t.pm10, axis=0) if t.devices else np.full(p.hours, np.nan)
    hourly_aqi = np.fmax(std.iaqi("pm2_5", h25), std.iaqi("pm10", h10))

    prev_means = prev or {}
    year_means = year or {}
    town = np.array([d.township for d in t.devices], dtype=object)
    rows: list[TownshipRow] = []
    for name in sorted({d.township for d in t.devices}):
        sel = town == name
        m25 = _period_mean(t, t.pm2_5, sel)
        m10 = _period_mean(t, t.pm10, sel)
        hour25 = _nanmean(t.pm2_5[sel], axis=0)
        over = {th: int(np.sum(hour25 > th)) for th in HOUR_THRESHOLDS}
        have = float(np.isfinite(t.pm2_5[sel]).sum()) / (int(sel.sum()) * p.hours)

        def change(ref: dict[str, float], name: str = name, m25: float = m25) -> float | None:
            r = ref.get(name, math.nan)
            return None if math.isnan(r) or math.isnan(m25) else m25 - r

        rows.append(TownshipRow(name, int(sel.sum()), m25, aqi_of(std, m25, m10),
                                change(prev_means), change(year_means), over, have))
    # Worst first; townships without data last.
    rows.sort(key=lambda r: (math.isnan(r.pm2_5), -r.pm2_5 if not math.isnan(r.pm2_5) else 0))

    dev25 = _nanmean(t.pm2_5, axis=1) if t.devices else np.zeros(0)
    order = [i for i in np.argsort(-np.nan_to_num(dev25, nan=-1.0)) if not np.isnan(dev25[i])]
    worst = [SiteSeries(t.devices[i], float(dev25[i]), t.pm2_5[i]) for i in order[:WORST_SITES]]

    flagged = flagged or {}
    offline = offline or set()
    missing = (~np.isfinite(t.pm2_5)).sum(axis=1) if t.devices else np.zeros(0, int)
    issues = []
    for i, d in enumerate(t.devices):
        gone = int(missing[i])
        # A device is listed when it missed at least one day's worth of validity
        # (more than 24 - 20 hours in a day on average), was flagged or is offline now.
        if gone > (24 - MIN_HOURS_PER_DAY) * p.days or flagged.get(d.device) or \
                d.device in offline:
            issues.append(DeviceIssue(d, gone, flagged.get(d.device, 0), d.device in offline))
    issues.sort(key=lambda x: (-x.hours_missing, -x.flagged, x.info.device))
    total = len(t.devices) * p.hours
    completeness = float(np.isfinite(t.pm2_5).sum()) / total if total else 0.0
    return Report(p, std.name, county, days, hourly_aqi, h25, rows, worst, issues,
                  completeness, len(t.devices), alerts)
