"""Measurement, tag and field names the dashboards query.

`readings` and `device_status` are written by collector/line_protocol.py today. The
registry tags (site, township, grid), `readings_hourly`, `alert_events` and
`device_location` are the names agreed for what the collector and the alert pipeline
write next; docs/grafana.md lists the fields each panel needs.
"""

from __future__ import annotations

from collector.line_protocol import DEVICE_STATUS, READINGS

__all__ = [
    "ALERT_EVENTS",
    "DEVICE_LOCATION",
    "DEVICE_STATUS",
    "READINGS",
    "READINGS_HOURLY",
    "REGISTRY_TAGS",
]

READINGS_HOURLY = "readings_hourly"
#: Alert lifecycle: tags rule, device, state (firing, resolved, acknowledged, escalated,
#: notified, notify_failed) and channel (notifications only); fields value, severity,
#: open (1 on firing, 0 on resolved), ack_delay_s (acknowledged), level (escalated).
ALERT_EVENTS = "alert_events"
#: Where each device stands (WGS-84): tags device, site, township, grid; fields
#: latitude, longitude. Written by the device registry when a device is registered.
DEVICE_LOCATION = "device_location"
REGISTRY_TAGS = ("site", "township", "grid")
