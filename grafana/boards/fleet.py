"""Fleet health: is every device reporting, and is anything piling up or lost?"""

from __future__ import annotations

from typing import Any

from grafana import panels
from grafana.boards.common import GRID, REGISTRY_FILTER, TOWNSHIP
from grafana.model import Dashboard, Grid, Panel, Target
from grafana.schema import DEVICE_STATUS, READINGS

UID = "airgrid-fleet"

ONLINE_MAP = panels.value_map({"true": ("online 在线", "green"),
                               "false": ("offline 离线", "red")})
CLOCK_MAP = panels.value_map({"true": ("NTP synced 已同步", "green"),
                              "false": ("not synced 未同步", "red")})


def _count_last(field: str, value: str, alias: str) -> str:
    return (
        f'SELECT count("{field}") AS "{alias}" FROM (SELECT last("{field}") AS "{field}" '
        f'FROM "{DEVICE_STATUS}" WHERE {REGISTRY_FILTER} AND time > now() - 30d '
        f'GROUP BY "device") WHERE "{field}" = {value}'
    )


def _devices_table(grid: Grid) -> Panel:
    online = Target(
        "A",
        f'SELECT last("online") AS "online" FROM "{DEVICE_STATUS}" WHERE {REGISTRY_FILTER} '
        'AND time > now() - 30d GROUP BY "device"',
        ("device", "online"), "table",
    )
    # From the last status sent while online: an offline status (the broker's Last Will)
    # carries no version or counters, so it would blank them out.
    status = Target(
        "B",
        'SELECT last("outbox_depth") AS "outbox_depth", last("dropped") AS "dropped", '
        'last("clock_synced") AS "clock_synced", last("agent_version") AS "agent_version", '
        'last("uptime_s") AS "uptime_s" '
        f'FROM "{DEVICE_STATUS}" WHERE "online" = true AND {REGISTRY_FILTER} '
        'AND time > now() - 30d GROUP BY "device"',
        ("device", "outbox_depth", "dropped", "clock_synced", "agent_version", "uptime_s"),
        "table",
    )
    # A single selector keeps the point's own time: the last reading's time is "last seen".
    seen = Target(
        "C",
        f'SELECT last("seq") AS "last_seq" FROM "{READINGS}" WHERE {REGISTRY_FILTER} '
        'AND time > now() - 30d GROUP BY "device"',
        ("device", "last_seq"), "table",
    )
    gaps = Target(
        "D",
        'SELECT count("seq") AS "received", spread("seq") + 1 - count("seq") AS "missing" '
        f'FROM "{READINGS}" WHERE {REGISTRY_FILTER} AND $timeFilter GROUP BY "device"',
        ("device", "received", "missing"), "table",
    )
    # After the join Grafana names the frames' time columns "Time 1" … "Time 4".
    organize: dict[str, Any] = {
        "excludeByName": {"Time 1": True, "Time 2": True, "Time 4": True, "last_seq": True},
        "renameByName": {"Time 3": "last seen", "uptime_s": "uptime"},
        "indexByName": {"device": 0, "online": 1, "Time 3": 2, "outbox_depth": 3,
                        "dropped": 4, "missing": 5, "received": 6, "clock_synced": 7,
                        "agent_version": 8, "uptime_s": 9},
    }
    return panels.table(
        "Devices, offline first 设备状态（离线在前）", grid, [online, status, seen, gaps], "none",
        "Last status of each device, its last reading (last seen), readings missing "
        "from the per-device sequence in the time range (sequence gaps), outbox depth, "
        "readings the outbox dropped, clock state and agent version.",
        [
            panels.by_name("online", mappings=ONLINE_MAP,
                           custom__cellOptions={"type": "color-background"}),
            panels.by_name("clock_synced", mappings=CLOCK_MAP,
                           custom__cellOptions={"type": "color-text"}),
            panels.by_name("last seen", unit="dateTimeFromNow"),
            panels.by_name("uptime", unit="s"),
            panels.by_name("missing", thresholds={"mode": "absolute", "steps": [
                {"color": "green", "value": None}, {"color": "red", "value": 1}]},
                custom__cellOptions={"type": "color-text"}),
        ],
        [
            {"id": "joinByField", "options": {"byField": "device", "mode": "outer"}},
            {"id": "organize", "options": organize},
            # false sorts before true: offline devices come first, then the stalest.
            {"id": "sortBy", "options": {"sort": [{"field": "online", "desc": False}]}},
        ],
    )


def build() -> Dashboard:
    stats = [
        panels.stat("Online 在线", Grid(0, 0, 6, 4),
                    [Target("A", _count_last("online", "true", "devices"), ("devices",))],
                    "none", "Devices whose last status says online.",
                    {"mode": "absolute", "steps": [{"color": "green", "value": None}]}),
        panels.stat("Offline 离线", Grid(6, 0, 6, 4),
                    [Target("A", _count_last("online", "false", "devices"), ("devices",))],
                    "none", "Devices whose last status says offline (the broker's Last "
                    "Will or a clean stop).",
                    {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                   {"color": "red", "value": 1}]}),
        panels.stat("Missing readings 缺失数据", Grid(12, 0, 6, 4),
                    [Target("A", 'SELECT sum("missing") AS "missing" FROM (SELECT '
                                 'spread("seq") + 1 - count("seq") AS "missing" FROM '
                                 f'"{READINGS}" WHERE {REGISTRY_FILTER} AND $timeFilter '
                                 'GROUP BY "device")', ("missing",))],
                    "none", "Gaps in the per-device sequence numbers within the time range: "
                    "readings captured by an agent that never reached InfluxDB.",
                    {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                   {"color": "red", "value": 1}]}),
        panels.stat("Clocks NTP-synced 时钟已同步", Grid(18, 0, 6, 4),
                    [Target("A", _count_last("clock_synced", "true", "devices"),
                            ("devices",))],
                    "none", "Devices whose last status reports an NTP-synchronised clock.",
                    {"mode": "absolute", "steps": [{"color": "green", "value": None}]}),
    ]
    for s in stats:
        s.defaults["noValue"] = "0"
    by_device = '"device" fill(none)'
    outbox = panels.timeseries(
        "Outbox depth 待发送数据", Grid(0, 16, 12, 8),
        [Target("A", f'SELECT max("outbox_depth") AS "outbox_depth" FROM "{DEVICE_STATUS}" '
                     f"WHERE {REGISTRY_FILTER} AND $timeFilter GROUP BY time($__interval), "
                     f"{by_device}", ("device", "outbox_depth"), alias="$tag_device")],
        "none", "Readings waiting in each agent's outbox; it grows while a device cannot "
        "reach the broker and drains after.",
    )
    dropped = panels.timeseries(
        "Dropped readings 丢弃数据", Grid(12, 16, 12, 8),
        [Target("A", f'SELECT max("dropped") AS "dropped" FROM "{DEVICE_STATUS}" '
                     f"WHERE {REGISTRY_FILTER} AND $timeFilter GROUP BY time($__interval), "
                     f"{by_device}", ("device", "dropped"), alias="$tag_device")],
        "none", "Readings an agent dropped because its outbox was full (counted since the "
        "outbox was created).",
    )
    completeness = panels.timeseries(
        "Data completeness 数据完整率", Grid(0, 24, 12, 8),
        [Target("A", 'SELECT count("seq") / (spread("seq") + 1) * 100 AS "completeness" '
                     f'FROM "{READINGS}" WHERE {REGISTRY_FILTER} AND $timeFilter '
                     f"GROUP BY time($__interval), {by_device}",
                ("device", "completeness"), alias="$tag_device")],
        "percent", "Share of sequence numbers present per interval (received / expected).",
        {"mode": "absolute", "steps": [{"color": "red", "value": None},
                                       {"color": "orange", "value": 95},
                                       {"color": "green", "value": 99}]},
    )
    completeness.defaults["max"] = 100
    clock = panels.state_timeline(
        "Clock state 时钟状态", Grid(12, 24, 12, 8),
        [Target("A", f'SELECT last("clock_synced") AS "clock_synced" FROM "{DEVICE_STATUS}" '
                     f"WHERE {REGISTRY_FILTER} AND $timeFilter GROUP BY time($__interval), "
                     f"{by_device}", ("device", "clock_synced"), alias="$tag_device")],
        "Whether each agent's clock was NTP-synchronised; readings from an unsynced clock "
        "carry the clock_unsynced flag.", CLOCK_MAP,
    )
    return Dashboard(
        UID, "Air quality — fleet health 设备运行状况",
        "Last seen, outbox depth, dropped readings, sequence gaps, clock state and agent "
        "version of every device; offline devices on top.",
        [*stats, _devices_table(Grid(0, 4, 24, 12)), outbox, dropped, completeness, clock],
        [TOWNSHIP, GRID],
    )
