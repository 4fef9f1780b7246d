"""AQI categories as Grafana thresholds, value mappings and InfluxQL expressions.

Everything comes from alert_rules/aqi_standards.json through alert_rules.aqi, so a panel's
colours and breakpoints are the standard's, never numbers typed into a dashboard.
"""

from __future__ import annotations

import itertools
from typing import Any

from alert_rules import aqi
from grafana.errors import GenerateError

#: The standard the dashboards show (HJ 633-2026, the project default).
STANDARD_ID = aqi.DEFAULT_STANDARD
BASE_COLOR_NOTE = "Grafana colours a value >= a step's value with that step's colour"


def standard(standard_id: str = STANDARD_ID) -> aqi.Standard:
    return aqi.get(standard_id)


def category_breakpoints(std: aqi.Standard, pollutant: str) -> list[float]:
    """Concentrations (µg/m³) where a new category begins: the C_hi of each segment whose
    I_hi is a category's upper AQI (e.g. HJ 633-2026 PM2.5: 35, 60, 115, 150, 250)."""
    seg = std.segments[pollutant]
    edges = [c.max_aqi for c in std.categories[:-1]]
    out: list[float] = []
    for edge in edges:
        rows = [row for row in seg if float(row[3]) == float(edge)]
        if not rows:
            raise GenerateError(
                f"{std.id}: {pollutant} has no segment ending at AQI {edge}; "
                "cannot place a category boundary"
            )
        out.append(float(rows[0][1]))
    return out


def _steps(values: list[float], std: aqi.Standard) -> dict[str, Any]:
    colors = [c.color for c in std.categories]
    steps: list[dict[str, Any]] = [{"color": colors[0], "value": None}]
    steps += [{"color": colors[i + 1], "value": v} for i, v in enumerate(values)]
    return {"mode": "absolute", "steps": steps}


def concentration_thresholds(std: aqi.Standard, pollutant: str) -> dict[str, Any]:
    """Threshold steps on a concentration, coloured by the category that begins there."""
    return _steps(category_breakpoints(std, pollutant), std)


def aqi_thresholds(std: aqi.Standard) -> dict[str, Any]:
    """Threshold steps on an (integer) AQI: category k+1 begins at max_aqi(k) + 1, since an
    AQI of exactly 50 is still 优 / Excellent (HJ 633-2012 Table 2)."""
    return _steps([float(c.max_aqi + 1) for c in std.categories[:-1]], std)


def aqi_value_mappings(std: aqi.Standard) -> list[dict[str, Any]]:
    """AQI ranges shown with the category name in Chinese and English beside the number."""
    out: list[dict[str, Any]] = []
    lo = 0
    for i, c in enumerate(std.categories):
        hi = c.max_aqi if c.max_aqi < 1000 else 500
        out.append({
            "type": "range",
            "options": {
                "from": lo, "to": hi,
                "result": {"text": f"{c.zh} {c.en}", "color": c.color, "index": i},
            },
        })
        lo = hi + 1
    return out


def _num(x: float) -> str:
    """A float literal InfluxQL parses (never exponent notation)."""
    text = repr(float(x))  # shortest text that reads back as the same double
    if "e" in text:
        text = f"{x:.20f}".rstrip("0").rstrip(".")
    return text


def iaqi_expression(std: aqi.Standard, pollutant: str, field: str) -> str:
    """InfluxQL for the sub-index of `field` (a concentration in µg/m³).

    InfluxQL has no CASE, so the piecewise-linear table is written as a sum of ramps,
    ramp(x) = (x + abs(x)) / 2, one per breakpoint; the top is capped at the scale's end
    like alert_rules.aqi does. HJ 633 rounds the sub-index up (ceil); the 1e-9 keeps float
    noise at an exact breakpoint from adding a step, as alert_rules.aqi's round(…, 9) does.
    """
    if std.rounding != "ceil" or any(v for v in std.truncate.values()):
        raise GenerateError(
            f"{std.id}: only ceil-rounded, untruncated standards render to InfluxQL")
    seg = std.segments[pollutant]
    for prev, row in itertools.pairwise(seg):
        if float(prev[1]) != float(row[0]) or float(prev[3]) != float(row[2]):
            raise GenerateError(
                f"{std.id}: {pollutant} segments are not continuous at {row[0]} µg/m³"
            )
    f = f'"{field}"'
    slopes = [float((r[3] - r[2]) / (r[1] - r[0])) for r in seg]
    c0, i0 = float(seg[0][0]), float(seg[0][2])
    out = f"{_num(slopes[0])} * {f}" if c0 == 0 else f"{_num(slopes[0])} * ({f} - {_num(c0)})"
    if i0:
        out = f"{_num(i0)} + {out}"

    def add_ramp(coef: float, at: float) -> str:
        if coef == 0:
            return ""
        sign = "-" if coef < 0 else "+"
        a = _num(at)
        return f" {sign} {_num(abs(coef))} * (({f} - {a}) + abs({f} - {a})) / 2"

    for k in range(1, len(seg)):
        out += add_ramp(slopes[k] - slopes[k - 1], float(seg[k][0]))
    out += add_ramp(-slopes[-1], float(seg[-1][1]))
    return f"ceil({out} - 0.000000001)"


def aqi_expression(std: aqi.Standard, fields: dict[str, str]) -> str:
    """AQI = the largest sub-index (HJ 633-2012 clause 5.1), as InfluxQL over the given
    {pollutant: field} columns; max(a, b) = (a + b + abs(a - b)) / 2."""
    exprs = [iaqi_expression(std, p, f) for p, f in fields.items()]
    out = exprs[0]
    for e in exprs[1:]:
        out = f"(({out}) + ({e}) + abs(({out}) - ({e}))) / 2"
    return out
