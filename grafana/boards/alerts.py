"""Alerts: what is open, how fast it is acknowledged, escalations, notifications."""

from __future__ import annotations

from grafana import panels
from grafana.boards.device import ALERT_ANNOTATION
from grafana.model import Dashboard, Grid, Target, Variable
from grafana.schema import ALERT_EVENTS

UID = "airgrid-alerts"

RULE = Variable("rule", "Rule 规则", f'SHOW TAG VALUES FROM "{ALERT_EVENTS}" WITH KEY = "rule"')
ALERT_DEVICE = Variable(
    "device", "Device 设备",
    f'SHOW TAG VALUES FROM "{ALERT_EVENTS}" WITH KEY = "device" WHERE "rule" =~ /^$rule$/')
FILTER = '"rule" =~ /^$rule$/ AND "device" =~ /^$device$/'


def _events(state: str, select: str, tail: str = "") -> str:
    return (f'SELECT {select} FROM "{ALERT_EVENTS}" WHERE "state" = \'{state}\' AND {FILTER} '
            f"AND $timeFilter{tail}")


def build() -> Dashboard:
    red_from_1 = {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                {"color": "red", "value": 1}]}
    stats = [
        panels.stat(
            "Open alerts 未解除告警", Grid(0, 0, 6, 4),
            [Target("A", f'SELECT sum("open") AS "open" FROM (SELECT last("open") AS "open" '
                         f'FROM "{ALERT_EVENTS}" WHERE "state" =~ /^(firing|resolved)$/ AND '
                         f'{FILTER} AND time > now() - 30d GROUP BY "rule", "device")',
                    ("open",))],
            "none", "Alerts whose latest transition is firing.", red_from_1),
        panels.stat(
            "Median time to acknowledge 确认用时中位数", Grid(6, 0, 6, 4),
            [Target("A", _events("acknowledged", 'median("ack_delay_s") AS "ack_delay_s"'),
                    ("ack_delay_s",))],
            "s", "From firing to a grid worker's acknowledgement, in the time range.",
            {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                           {"color": "orange", "value": 600},
                                           {"color": "red", "value": 1800}]}),
        panels.stat(
            "Escalations 升级", Grid(12, 0, 6, 4),
            [Target("A", _events("escalated", 'count("level") AS "escalations"'),
                    ("escalations",))],
            "none", "Alerts escalated because nobody acknowledged them in time.",
            red_from_1),
        panels.stat(
            "Failed notifications 发送失败", Grid(18, 0, 6, 4),
            [Target("A", _events("notify_failed", 'count("value") AS "failed"'), ("failed",))],
            "none", "Notifications that exhausted their retries (in the dead letter).",
            red_from_1),
    ]
    for s in stats:
        s.defaults["noValue"] = "0"
    open_table = panels.table(
        "Open alerts 未解除告警", Grid(0, 4, 24, 8),
        [Target("A", f'SELECT "open" FROM (SELECT last("open") AS "open" FROM "{ALERT_EVENTS}" '
                     f'WHERE "state" =~ /^(firing|resolved)$/ AND {FILTER} AND '
                     'time > now() - 30d GROUP BY "rule", "device") WHERE "open" = 1 '
                     'GROUP BY "rule", "device"', ("rule", "device", "open"), "table")],
        "none", "Each rule and device whose latest transition is firing, since when.",
        [panels.by_name("Time", displayName="firing since"),
         panels.by_name("open", custom__hidden=True)],
    )
    ack = panels.timeseries(
        "Acknowledgement times 确认用时", Grid(0, 12, 12, 8),
        [Target("A", _events("acknowledged", '"ack_delay_s"', ' GROUP BY "rule"'),
                ("rule", "ack_delay_s"), alias="$tag_rule")],
        "s", "Each acknowledgement: seconds from firing to acknowledgement.", draw="points",
    )
    escalations = panels.timeseries(
        "Escalations over time 告警升级", Grid(12, 12, 12, 8),
        [Target("A", _events("escalated", 'count("level") AS "escalations"',
                             ' GROUP BY time($__interval), "rule" fill(none)'),
                ("rule", "escalations"), alias="$tag_rule")],
        "none", "Escalations per interval and rule.", draw="bars",
    )
    per_channel = panels.bargauge(
        "Notifications per channel 各渠道通知", Grid(0, 20, 12, 8),
        [Target("A", f'SELECT count("value") AS "notifications" FROM "{ALERT_EVENTS}" '
                     f'WHERE "state" =~ /^(notified|notify_failed)$/ AND {FILTER} AND '
                     '$timeFilter GROUP BY "channel", "state"',
                ("channel", "state", "notifications"), alias="$tag_channel $tag_state")],
        "none", "Notifications sent (notified) and given up (notify_failed) per channel: "
        "SMS, MQTT bus, webhook.",
    )
    channel_trend = panels.timeseries(
        "Notifications over time 通知趋势", Grid(12, 20, 12, 8),
        [Target("A", _events("notified", 'count("value") AS "notifications"',
                             ' GROUP BY time($__interval), "channel" fill(none)'),
                ("channel", "notifications"), alias="$tag_channel")],
        "none", "Notifications delivered per interval and channel.", draw="bars",
    )
    return Dashboard(
        UID, "Air quality — alerts 告警",
        "Open alerts, acknowledgement times, escalations and notifications per channel.",
        [*stats, open_table, ack, escalations, per_channel, channel_trend],
        [RULE, ALERT_DEVICE], [ALERT_ANNOTATION],
    )
