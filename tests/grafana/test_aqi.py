"""The AQI bands and InfluxQL AQI expressions in the dashboards equal the standard's."""

from __future__ import annotations

import time
import urllib.request

import numpy as np
import pytest

from alert_rules import aqi
from grafana import aqi_bands
from grafana.errors import GenerateError
from orchestration.services import InfluxDB

HJ = aqi.get("hj633-2026")


def test_concentration_breakpoints_are_the_standards_category_edges() -> None:
    # HJ 633-2026 Table 3: 35, 60, 115, 150, 250 begin 良…严重污染; PM10 120 is IAQI 100.
    assert aqi_bands.category_breakpoints(HJ, "pm2_5") == [35, 60, 115, 150, 250]
    assert aqi_bands.category_breakpoints(HJ, "pm10") == [50, 120, 250, 350, 420]
    old = aqi.get("hj633-2012")
    assert aqi_bands.category_breakpoints(old, "pm2_5") == [35, 75, 115, 150, 250]


def test_thresholds_carry_the_category_colours_in_order() -> None:
    steps = aqi_bands.concentration_thresholds(HJ, "pm2_5")["steps"]
    assert [s["color"] for s in steps] == [c.color for c in HJ.categories]
    aqi_steps = aqi_bands.aqi_thresholds(HJ)["steps"]
    assert [s["value"] for s in aqi_steps] == [None, 51, 101, 151, 201, 301]
    # The colour Grafana picks for an AQI equals the category alert_rules.aqi gives it.
    for value in [0, 50, 51, 100, 101, 150, 151, 200, 201, 300, 301, 500]:
        colour = [s["color"] for s in aqi_steps if s["value"] is None or value >= s["value"]][-1]
        assert colour == HJ.category(value).color, value  # type: ignore[union-attr]


def test_discontinuous_standard_is_refused_with_its_name() -> None:
    with pytest.raises(GenerateError, match="us-epa-2024"):
        aqi_bands.iaqi_expression(aqi.get("us-epa-2024"), "pm2_5", "pm2_5")


#: rounding edges (§4.2.2 GB/T 8170, §4.2.6 up) and every breakpoint, then a sweep
EDGES = [0, 0.4, 0.5, 1.5, 12.3, 34.49, 34.5, 34.51, 34.99, 35, 35.01, 35.1, 35.5, 36.5,
         59.9, 60, 60.2, 60.4, 60.5, 61.5, 100, 114.5, 115, 115.1, 115.5, 116.5, 119.5,
         120.5, 121.5, 149.9, 150, 150.1, 150.5, 200, 250, 250.5, 349, 350, 351, 419.5,
         420.5, 499, 500, 501, 599.5, 600.5, 800, (34.4 + 34.6) / 2]


def test_influxql_aqi_equals_alert_rules_aqi_over_a_sweep(
    shared_influxdb: InfluxDB, influx_db_name: str
) -> None:
    rng = np.random.default_rng(633)
    pm25 = np.concatenate([EDGES, np.arange(0, 520, 0.5), rng.uniform(0, 700, 300).round(2)])
    # PM10 runs the other way so that each pollutant decides the AQI somewhere
    pm10 = np.concatenate([EDGES[::-1], np.arange(0, 650, 0.625), rng.uniform(0, 800, 300)])
    pm10 = pm10[: len(pm25)]
    now = int(time.time() * 1000)
    lines = [f"x pm2_5={a!r},pm10={b!r} {now - i}"
             for i, (a, b) in enumerate(zip(pm25.tolist(), pm10.tolist(), strict=True))]
    req = urllib.request.Request(
        f"{shared_influxdb.url}/write?db={influx_db_name}&precision=ms",
        data="\n".join(lines).encode())
    urllib.request.urlopen(req, timeout=10).read()
    # the dashboards' query shape: round the concentrations, then the sub-indices and max
    query = aqi_bands.aqi_query(HJ, 'SELECT "pm2_5", "pm10" FROM "x"', keep=("pm2_5", "pm10"))
    res = shared_influxdb.query(query, db=influx_db_name)
    series = res["results"][0]["series"][0]  # type: ignore[index]
    cols = series["columns"]
    rows = [dict(zip(cols, r, strict=True)) for r in series["values"]]
    assert len(rows) == len(pm25)
    got = np.array([r["aqi"] for r in rows], np.float64)
    want = HJ.aqi({"pm2_5": [r["pm2_5"] for r in rows], "pm10": [r["pm10"] for r in rows]})
    bad = [(r["pm2_5"], r["pm10"], g, w) for r, g, w in zip(rows, got, want, strict=True)
           if g != w]
    assert not bad, bad[:10]
    # the rounding edges really are edges: 35.1 is 优 (IAQI 50), 35.5 is 良 (52)
    by_pm25 = {r["pm2_5"]: HJ.iaqi("pm2_5", [r["pm2_5"]])[0] for r in rows}
    assert by_pm25[35.1] == 50 and by_pm25[35.5] == 52 and by_pm25[115.5] == 152


def test_influxql_concentration_rounding_equals_alert_rules(
    shared_influxdb: InfluxDB, influx_db_name: str
) -> None:
    values = EDGES + [k + 0.5 for k in range(0, 60)]
    now = int(time.time() * 1000)
    lines = [f"r v={v!r} {now - i}" for i, v in enumerate(values)]
    req = urllib.request.Request(
        f"{shared_influxdb.url}/write?db={influx_db_name}&precision=ms",
        data="\n".join(lines).encode())
    urllib.request.urlopen(req, timeout=10).read()
    expr = aqi_bands.concentration_expression(HJ, "pm2_5", "v")
    res = shared_influxdb.query(f'SELECT {expr} AS "c", "v" FROM "r"', db=influx_db_name)
    rows = res["results"][0]["series"][0]["values"]  # type: ignore[index]
    assert len(rows) == len(values)
    for _, c, v in rows:
        assert c == HJ.concentration("pm2_5", [v])[0], v
