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
    # HJ 633-2026 transition table (DESIGN.md): 35, 60, 115, 150, 250 begin 良…严重污染.
    assert aqi_bands.category_breakpoints(HJ, "pm2_5") == [35, 60, 115, 150, 250]
    assert aqi_bands.category_breakpoints(HJ, "pm10") == [50, 150, 250, 350, 420]
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


def test_influxql_aqi_equals_alert_rules_aqi_on_every_segment(
    shared_influxdb: InfluxDB, influx_db_name: str
) -> None:
    pm25 = np.array([0, 0.4, 12.3, 34.99, 35, 35.01, 59.9, 60, 60.2, 100, 115, 115.1, 149.9,
                     150, 150.1, 200, 250, 250.5, 349, 350, 351, 499, 500, 501, 800])
    pm10 = np.linspace(0, 700, len(pm25))[::-1].round(1)
    now = int(time.time() * 1000)
    lines = [f"x pm2_5={a},pm10={b} {now - i}" for i, (a, b) in enumerate(zip(pm25, pm10,
                                                                             strict=True))]
    req = urllib.request.Request(
        f"{shared_influxdb.url}/write?db={influx_db_name}&precision=ms",
        data="\n".join(lines).encode())
    urllib.request.urlopen(req, timeout=10).read()
    expr = aqi_bands.aqi_expression(HJ, {"pm2_5": "pm2_5", "pm10": "pm10"})
    iaqi25 = aqi_bands.iaqi_expression(HJ, "pm2_5", "pm2_5")
    res = shared_influxdb.query(
        f'SELECT {expr} AS "aqi", {iaqi25} AS "i25", "pm2_5", "pm10" FROM "x"', db=influx_db_name)
    series = res["results"][0]["series"][0]  # type: ignore[index]
    cols = series["columns"]
    rows = [dict(zip(cols, r, strict=True)) for r in series["values"]]
    assert len(rows) == len(pm25)
    for row in rows:
        want25 = HJ.iaqi("pm2_5", row["pm2_5"])
        want = max(want25, HJ.iaqi("pm10", row["pm10"]))
        assert row["i25"] == want25, row
        assert row["aqi"] == want, row
