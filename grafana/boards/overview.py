"""County overview: the county at a glance."""

from __future__ import annotations

from grafana import panels
from grafana.boards.common import (
    AQI_BANDS,
    AQI_MEAN,
    AQI_NOTE,
    GRID,
    PM25_BANDS,
    REGISTRY_FILTER,
    TOWNSHIP,
    aqi_query,
    aqi_stat,
)
from grafana.model import UNIT_UG_M3, Dashboard, Grid, Panel, Target
from grafana.schema import ALERT_EVENTS, DEVICE_LOCATION, DEVICE_STATUS, READINGS

UID = "airgrid-overview"

DEVICES_ONLINE = (
    f'SELECT count("online") AS "devices" FROM (SELECT last("online") AS "online" '
    f'FROM "{DEVICE_STATUS}" WHERE {REGISTRY_FILTER} AND time > now() - 15m '
    'GROUP BY "device") WHERE "online" = true'
)
OPEN_ALERTS = (
    f'SELECT sum("open") AS "open" FROM (SELECT last("open") AS "open" FROM "{ALERT_EVENTS}" '
    'WHERE "state" =~ /^(firing|resolved)$/ AND time > now() - 30d GROUP BY "rule", "device")'
)


def _geomap(grid: Grid) -> Panel:
    locations = Target(
        "A",
        f'SELECT last("latitude") AS "latitude", last("longitude") AS "longitude" '
        f'FROM "{DEVICE_LOCATION}" WHERE {REGISTRY_FILTER} GROUP BY "device"',
        ("device", "latitude", "longitude"), "table",
    )
    aqi = Target("B", aqi_query(REGISTRY_FILTER, "device", with_pm25=True),
                 ("device", "aqi", "pm2_5"), "table")
    layer = {
        "type": "markers",
        "name": "Devices",
        "location": {"mode": "coords", "latitude": "latitude", "longitude": "longitude"},
        "tooltip": True,
        "config": {
            "showLegend": True,
            "style": {
                "color": {"field": "aqi", "fixed": "dark-green"},
                "opacity": 0.9,
                "size": {"fixed": 10},
                "symbol": {"mode": "fixed", "fixed": "img/icons/marker/circle.svg"},
                "text": {"mode": "field", "field": "device", "fixed": ""},
                "textConfig": {"fontSize": 10, "offsetY": -14, "textAlign": "center"},
            },
        },
    }
    return Panel(
        f"Devices by AQI category 设备空气质量 ({AQI_MEAN})", "geomap", grid, [locations, aqi],
        "Each device where the registry placed it, coloured by its AQI category. " + AQI_NOTE,
        {"unit": "none", "color": {"mode": "thresholds"}, "thresholds": AQI_BANDS,
         "decimals": 0},
        [panels.by_name("pm2_5", unit="conμgm3", displayName=f"PM2.5 ({AQI_MEAN})")],
        {
            "view": {"id": "fit", "allLayers": True, "padding": 10, "maxZoom": 14},
            "controls": {"showZoom": True, "mouseWheelZoom": True, "showScale": True},
            "basemap": {"type": "default", "name": "Basemap"},
            "layers": [layer],
            "tooltip": {"mode": "details"},
        },
        [{"id": "joinByField", "options": {"byField": "device", "mode": "outer"}}],
    )


def build() -> Dashboard:
    stats = [
        panels.stat(
            "Devices online 在线设备", Grid(0, 0, 6, 5),
            [Target("A", DEVICES_ONLINE, ("devices",))], "none",
            "Devices whose last status (within 15 min) says online.",
            {"mode": "absolute", "steps": [{"color": "blue", "value": None}]},
        ),
        aqi_stat(f"County AQI 全县AQI ({AQI_MEAN})", Grid(6, 0, 6, 5), REGISTRY_FILTER),
        panels.stat(
            f"PM2.5 当前PM2.5 ({AQI_MEAN})", Grid(12, 0, 6, 5),
            [Target("A", f'SELECT mean("pm2_5") AS "pm2_5" FROM "{READINGS}" '
                         f"WHERE {REGISTRY_FILTER} AND time > now() - 1h", ("pm2_5",))],
            UNIT_UG_M3, "Mean of every device's readings over the last hour.", PM25_BANDS,
            decimals=1,
        ),
        panels.stat(
            "Active alerts 未解除告警", Grid(18, 0, 6, 5),
            [Target("A", OPEN_ALERTS, ("open",))], "none",
            "Alerts whose latest transition is firing (not yet resolved).",
            {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                           {"color": "red", "value": 1}]},
        ),
    ]
    stats[3].defaults["noValue"] = "0"
    by_township = panels.bargauge(
        f"AQI by township 各乡镇AQI ({AQI_MEAN})", Grid(16, 5, 8, 14),
        [Target("A", aqi_query(REGISTRY_FILTER, "township"), ("township", "aqi"),
                alias="$tag_township")],
        "none", AQI_NOTE, AQI_BANDS, max_value=500,
    )
    trend = panels.timeseries(
        "PM2.5 by township 各乡镇PM2.5", Grid(0, 19, 24, 9),
        [Target("A", f'SELECT mean("pm2_5") AS "pm2_5" FROM "{READINGS}" WHERE '
                     f'{REGISTRY_FILTER} AND $timeFilter GROUP BY time($__interval), '
                     '"township" fill(null)', ("township", "pm2_5"), alias="$tag_township")],
        UNIT_UG_M3, "Mean PM2.5 per township; the background bands are the AQI categories "
        "at the standard's 24-hour breakpoints.", PM25_BANDS, bands=True,
    )
    return Dashboard(
        UID, "Air quality — county overview 全县空气质量总览",
        "Devices online, county AQI, active alerts, AQI by township and on the map.",
        [*stats, _geomap(Grid(0, 5, 16, 14)), by_township, trend],
        [TOWNSHIP, GRID], time_from="now-24h",
    )
