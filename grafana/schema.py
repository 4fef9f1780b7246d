"""Measurement and tag names the dashboards query.

The measurement names come from the core (airgrid/measurements.py), where the collector
takes them too; docs/grafana.md lists the fields each panel needs.
"""

from __future__ import annotations

from airgrid.measurements import (
    ALERT_EVENTS,
    DEVICE_LOCATION,
    DEVICE_STATUS,
    READINGS,
    READINGS_HOURLY,
    WORK_ORDER_STEPS,
)

__all__ = [
    "ALERT_EVENTS",
    "DEVICE_LOCATION",
    "DEVICE_STATUS",
    "READINGS",
    "READINGS_HOURLY",
    "REGISTRY_TAGS",
    "WORK_ORDER_STEPS",
]

REGISTRY_TAGS = ("site", "township", "grid")
