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


def concentration_expression(std: aqi.Standard, pollutant: str, field: str) -> str:
    """InfluxQL for the concentration the standard's formula uses, from `field` (µg/m³):
    the operations of alert_rules.aqi.Standard.concentration, in the same order, so both
    give the same double. HJ 633-2026 §4.2.2: whole µg/m³ by GB/T 8170-2008 §3.3 (a lone
    trailing 5 goes to the even neighbour); InfluxQL has no CASE, so the half-way test is
    1 - ceil(abs(x - floor(x) - 0.5)), which is 1 exactly at .5 and 0 elsewhere."""
    rule = std.concentration_rounding[pollutant]
    f = f'"{field}"'
    if rule.mode == "none":
        return f
    if rule.mode != "half_even":
        raise GenerateError(
            f"{std.id}: {pollutant} concentration rounding {rule.mode!r} has no InfluxQL form")
    grid = _num(aqi.NOISE_GRID)
    x = f"floor({f} / {grid} + 0.5) * {grid}"
    if rule.step != 1:
        x = f"({x}) / {_num(rule.step)}"
    fl = f"floor({x})"
    halfway = f"(1 - ceil(abs({x} - {fl} - 0.5)))"
    odd = f"({fl} - 2 * floor({fl} / 2))"
    out = f"(floor({x} + 0.5) - {halfway} * (1 - {odd}))"
    return out if rule.step == 1 else f"{out} * {_num(rule.step)}"


def iaqi_expression(std: aqi.Standard, pollutant: str, field: str) -> str:
    """InfluxQL for the sub-index of `field`, which must hold the concentration after the
    standard's rounding (concentration_expression, one subquery down: written inline it
    would repeat a dozen times in every AQI).

    InfluxQL has no CASE, so the piecewise-linear table is written as a sum of ramps,
    ramp(x) = (x + abs(x)) / 2, one per breakpoint; the top is capped at the scale's end
    like alert_rules.aqi does. HJ 633 rounds the sub-index up (ceil); the 1e-9 keeps float
    noise at an exact breakpoint from adding a step, as alert_rules.aqi's round(…, 9) does.
    """
    if std.index_rounding != "ceil":
        raise GenerateError(
            f"{std.id}: only standards whose index is rounded up render to InfluxQL")
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


def rounded_field(pollutant: str) -> str:
    """The column name aqi_query gives a pollutant's rounded concentration."""
    return f"c_{pollutant}"


def aqi_expression(std: aqi.Standard, fields: dict[str, str]) -> str:
    """AQI = the largest sub-index (HJ 633-2026 §4.2.5), as InfluxQL over the given
    {pollutant: field} columns of rounded concentrations; max(a, b) = (a + b + abs(a - b))
    / 2. Sub-indices are integers, so the AQI is too (§4.2.6)."""
    exprs = [iaqi_expression(std, p, f) for p, f in fields.items()]
    out = exprs[0]
    for e in exprs[1:]:
        out = f"(({out}) + ({e}) + abs(({out}) - ({e}))) / 2"
    return out


def aqi_query(std: aqi.Standard, source: str, pollutants: tuple[str, ...] = ("pm2_5", "pm10"),
              group_by: str = "", keep: tuple[str, ...] = ()) -> str:
    """A whole InfluxQL query for the AQI of `source`, a subquery whose columns are named
    after the pollutants (e.g. hourly means): one level rounds the concentrations, the
    next takes the sub-indices and their maximum. `keep` columns of the source pass
    through (e.g. the mean PM2.5 shown beside the AQI)."""
    group = f' GROUP BY "{group_by}"' if group_by else ""
    passed = "".join(f', "{k}"' for k in keep)
    rounded = ", ".join(
        f'{concentration_expression(std, p, p)} AS "{rounded_field(p)}"' for p in pollutants)
    expr = aqi_expression(std, {p: rounded_field(p) for p in pollutants})
    return (f'SELECT {expr} AS "aqi"{passed} FROM ('
            f"SELECT {rounded}{passed} FROM ({source}){group}){group}")
