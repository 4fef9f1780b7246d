"""Pieces every dashboard shares: template variables, filters, AQI queries."""

from __future__ import annotations

from grafana import aqi_bands, panels
from grafana.model import Grid, Panel, Target, Variable
from grafana.schema import READINGS

#: Points whose registry tags match the township and grid selectors.
REGISTRY_FILTER = '"township" =~ /^$township$/ AND "grid" =~ /^$grid$/'
DEVICE_FILTER = '"device" =~ /^$device$/'

TOWNSHIP = Variable(
    "township", "Township 乡镇", f'SHOW TAG VALUES FROM "{READINGS}" WITH KEY = "township"')
GRID = Variable(
    "grid", "Grid 网格",
    f'SHOW TAG VALUES FROM "{READINGS}" WITH KEY = "grid" WHERE "township" =~ /^$township$/')
DEVICE = Variable(
    "device", "Device 设备",
    f'SHOW TAG VALUES FROM "{READINGS}" WITH KEY = "device" WHERE {REGISTRY_FILTER}')
#: The device dashboard shows one device at a time.
ONE_DEVICE = Variable(DEVICE.name, DEVICE.label, DEVICE.query, multi=False, include_all=False)

STANDARD = aqi_bands.standard()
PM25_BANDS = aqi_bands.concentration_thresholds(STANDARD, "pm2_5")
PM10_BANDS = aqi_bands.concentration_thresholds(STANDARD, "pm10")
AQI_BANDS = aqi_bands.aqi_thresholds(STANDARD)
AQI_MAPPINGS = aqi_bands.aqi_value_mappings(STANDARD)
AQI_NOTE = (
    f"AQI under {STANDARD.name} from the 1 h mean (1小时均值): the larger of the PM2.5 and "
    "PM10 sub-indices of the last hour's mean, rounded to whole µg/m³ and looked up in the "
    "24-hour columns (§4.2.2–4.2.4), the index rounded up (§4.2.6). "
    "Colours are the standard's categories."
)
#: what every AQI title says about its averaging
AQI_MEAN = "1 h mean / 1小时均值"


def aqi_query(where: str, group_by: str = "", with_pm25: bool = False) -> str:
    """AQI of the last hour's mean PM2.5 / PM10 (HJ 633-2026 §4.2.3–4.2.4), optionally
    per tag; the same numbers alert_rules.aqi gives for those means."""
    group = f' GROUP BY "{group_by}"' if group_by else ""
    hourly = (f'SELECT mean("pm2_5") AS "pm2_5", mean("pm10") AS "pm10" FROM "{READINGS}" '
              f"WHERE {where} AND time > now() - 1h{group}")
    return aqi_bands.aqi_query(STANDARD, hourly, group_by=group_by,
                               keep=("pm2_5",) if with_pm25 else ())


def aqi_stat(title: str, grid: Grid, where: str) -> Panel:
    """The AQI number and, beside it, its category name: the same query twice, the second
    shown through the category value mappings (a mapping replaces the number it maps)."""
    query = aqi_query(where)
    p = panels.stat(title, grid, [Target("A", query, ("aqi",)), Target("B", query, ("aqi",))],
                    "none", AQI_NOTE, AQI_BANDS, decimals=0)
    p.overrides = [
        {"matcher": {"id": "byFrameRefID", "options": "A"},
         "properties": [{"id": "displayName", "value": "AQI"}]},
        {"matcher": {"id": "byFrameRefID", "options": "B"},
         "properties": [{"id": "displayName", "value": "Category 等级"},
                        {"id": "mappings", "value": AQI_MAPPINGS}]},
    ]
    return p
