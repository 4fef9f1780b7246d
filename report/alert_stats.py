"""The alert section: what the collector's alert store says about a period.

"Handled" is the lifecycle's `resolved` (the condition cleared or was closed); time to
acknowledge is started → acked, time to handle is started → resolved. Complaints and work
orders have no source yet, and the report says so instead of showing numbers.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from collector.alerting.model import Alert
from collector.alerting.store import Store

SLOWEST = 5


@dataclass(frozen=True)
class SlowAlert:
    id: int
    grid: str
    township: str
    subject: str
    rule: str
    minutes: float  # to handle, or open so far at the period's end
    open: bool


@dataclass(frozen=True)
class AlertStats:
    opened: int
    acknowledged: int
    handled: int
    still_open: int
    median_ack_min: float | None
    median_handle_min: float | None
    slowest: list[SlowAlert]


def from_alerts(alerts: list[Alert], start_ms: int, end_ms: int) -> AlertStats:
    opened = [a for a in alerts if start_ms <= a.started_ms < end_ms]
    acked = [a for a in alerts if a.acked_ms is not None and start_ms <= a.acked_ms < end_ms]
    handled = [a for a in alerts
               if a.resolved_ms is not None and start_ms <= a.resolved_ms < end_ms]
    still = [a for a in alerts if a.resolved_ms is None or a.resolved_ms >= end_ms]
    ack_min = [(a.acked_ms - a.started_ms) / 60_000 for a in acked if a.acked_ms is not None]
    handle_min = [(a.resolved_ms - a.started_ms) / 60_000 for a in handled
                  if a.resolved_ms is not None]
    slow = []
    for a in [*handled, *still]:
        done = a.resolved_ms if a.resolved_ms is not None and a.resolved_ms < end_ms else None
        minutes = ((done if done is not None else end_ms) - a.started_ms) / 60_000
        slow.append(SlowAlert(a.id, a.labels.get("grid", ""), a.labels.get("township", ""),
                              a.subject, a.rule, minutes, done is None))
    slow.sort(key=lambda s: -s.minutes)
    return AlertStats(len(opened), len(acked), len(handled), len(still),
                      statistics.median(ack_min) if ack_min else None,
                      statistics.median(handle_min) if handle_min else None, slow[:SLOWEST])


def read(store_path: Path, start_ms: int, end_ms: int) -> AlertStats | None:
    """None when there is no alert store (alerting off or never run)."""
    if not store_path.is_file():
        return None
    store = Store(store_path)
    try:
        return from_alerts(store.alerts_between(start_ms, end_ms), start_ms, end_ms)
    finally:
        store.close()
