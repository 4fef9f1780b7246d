"""Device detail: one device's readings, their quality, and its alerts."""

from __future__ import annotations

from grafana import panels
from grafana.boards.common import (
    AQI_MEAN,
    DEVICE_FILTER,
    GRID,
    ONE_DEVICE,
    PM10_BANDS,
    PM25_BANDS,
    TOWNSHIP,
    aqi_stat,
)
from grafana.model import UNIT_UG_M3, Annotation, Dashboard, Grid, Target
from grafana.schema import ALERT_EVENTS, READINGS, READINGS_HOURLY

UID = "airgrid-device"

ALERT_ANNOTATION = Annotation(
    "Alerts 告警",
    f'SELECT "value", "rule", "state", "severity" FROM "{ALERT_EVENTS}" WHERE {DEVICE_FILTER} '
    'AND "state" =~ /^(firing|resolved|acknowledged|escalated)$/ AND $timeFilter',
    ("value", "rule", "state", "severity"), text_column="value",
    tags_column="rule,state,severity",
)


def _series(field: str, alias: str) -> str:
    return f'mean("{field}") AS "{alias}"'


def _over_time(select: str) -> str:
    return (f'SELECT {select} FROM "{READINGS}" WHERE {DEVICE_FILTER} AND $timeFilter '
            "GROUP BY time($__interval) fill(null)")


def build() -> Dashboard:
    band_note = ("The background bands are the AQI categories at the standard's 24-hour "
                 "breakpoints; a single reading above a band is not yet a 24-hour mean.")
    pm25 = panels.timeseries(
        "PM2.5 (atmospheric) 细颗粒物", Grid(0, 0, 12, 9),
        [Target("A", _over_time(_series("pm2_5", "PM2.5")), ("PM2.5",))],
        UNIT_UG_M3, band_note, PM25_BANDS, bands=True,
    )
    pm10 = panels.timeseries(
        "PM10 (atmospheric) 可吸入颗粒物", Grid(12, 0, 12, 9),
        [Target("A", _over_time(_series("pm10", "PM10")), ("PM10",))],
        UNIT_UG_M3, band_note, PM10_BANDS, bands=True,
    )
    aqi_now = aqi_stat(f"AQI ({AQI_MEAN})", Grid(0, 9, 6, 6), DEVICE_FILTER)
    hourly = panels.timeseries(
        "Hourly PM2.5 (collector aggregates) 小时均值", Grid(6, 9, 18, 6),
        [Target("A", f'SELECT "pm2_5_mean", "pm2_5_max", "pm10_mean" FROM "{READINGS_HOURLY}" '
                     f"WHERE {DEVICE_FILTER} AND $timeFilter",
                ("pm2_5_mean", "pm2_5_max", "pm10_mean"))],
        UNIT_UG_M3, "Hourly mean and maximum written by the collector.", PM25_BANDS,
        bands=True, draw="bars",
    )
    cf1 = panels.timeseries(
        "CF=1 vs atmospheric 标准颗粒物与大气环境", Grid(0, 15, 12, 8),
        [Target("A", _over_time(", ".join([
            _series("pm2_5", "PM2.5 atmospheric"), _series("pm2_5_cf1", "PM2.5 CF=1"),
            _series("pm10", "PM10 atmospheric"), _series("pm10_cf1", "PM10 CF=1")])),
            ("PM2.5 atmospheric", "PM2.5 CF=1", "PM10 atmospheric", "PM10 CF=1"))],
        UNIT_UG_M3,
        "Plantower sensors report two mass values: CF=1 (factory calibration particle) and "
        "atmospheric (ambient); they part above about 30 µg/m³ (PMS5003 datasheet, "
        "appendix I).",
    )
    humidity = panels.timeseries(
        "Humidity and temperature 湿度与温度", Grid(12, 15, 12, 8),
        [Target("A", _over_time(", ".join([
            _series("humidity_pct", "humidity_pct"),
            _series("temperature_c", "temperature_c")])),
            ("humidity_pct", "temperature_c"))],
        "humidity",
        "Only sensors that measure them (e.g. PMS5003T). Low-cost sensors over-read PM in "
        "high humidity; readings above the agent's humidity limit carry high_humidity.",
        {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                       {"color": "orange", "value": 85}]},
        overrides=[panels.by_name("temperature_c", unit="celsius",
                                  custom__axisPlacement="right")],
    )
    humidity.defaults["max"] = 100
    flags = panels.state_timeline(
        "Quality flags 数据质量标记", Grid(0, 23, 24, 5),
        [Target("A", f'SELECT "flags" FROM "{READINGS}" WHERE {DEVICE_FILTER} AND $timeFilter',
                ("flags",))],
        "Flags the agent set on each reading (warming_up, out_of_range, inconsistent, "
        "high_humidity, clock_unsynced); green means none.",
        [{"type": "special", "options": {"match": "empty",
                                         "result": {"text": "ok", "color": "green",
                                                    "index": 0}}},
         {"type": "regex", "options": {"pattern": "(.+)",
                                       "result": {"text": "$1", "color": "orange",
                                                  "index": 1}}}],
    )
    return Dashboard(
        UID, "Air quality — device detail 设备详情",
        "One device: PM2.5 and PM10 against the AQI bands, CF=1 vs atmospheric, humidity, "
        "quality flags and alert annotations.",
        [pm25, pm10, aqi_now, hourly, cf1, humidity, flags],
        [TOWNSHIP, GRID, ONE_DEVICE], [ALERT_ANNOTATION],
    )
