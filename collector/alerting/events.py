"""Lifecycle events and notifications as CloudEvents 1.0 (structured-mode JSON).

The event shape extends the one `collector/alert_events.py` published before the
lifecycle existed (type `org.airgrid.alert.<state>`, subject = device, `data.state`,
`data.value`), so existing consumers keep working.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from collector.alerting.model import Alert, Event

EVENT_TYPE_PREFIX = "org.airgrid.alert."
SOURCE = "/airgrid/collector/alerting"


def _time(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def event_id(alert: Alert, kind: str, seq: int) -> str:
    """Deterministic, so a redelivery after a restart carries the same id."""
    key = f"{alert.rule}|{alert.subject}|{alert.started_ms}|{alert.id}|{kind}|{seq}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


def alert_data(a: Alert) -> dict[str, Any]:
    return {
        "alert_id": a.id, "rule": a.rule, "device": a.subject, "state": a.state,
        "value": round(a.value, 2), "severity": a.severity, "labels": a.labels,
        "annotations": dict(a.annotations),  # rendered where the rule fired
        "started_ms": a.started_ms,
        "resolved_ms": a.resolved_ms, "acked_by": a.acked_by, "acked_ms": a.acked_ms,
        "level": a.level,
    }


def to_cloudevent(e: Event, text: str, muted: str | None) -> dict[str, Any]:
    data = alert_data(e.alert)
    data.update(state=e.kind, at_ms=e.at_ms, text=text, muted=muted, **e.detail)
    late_ms = e.detail.get("late_ms")
    if late_ms:  # decided on late readings: at_ms (and time) is the readings' time
        data.update(late=True, delay_s=round(int(late_ms) / 1000, 1))
    return {
        "specversion": "1.0", "type": EVENT_TYPE_PREFIX + e.kind, "source": SOURCE,
        "id": event_id(e.alert, e.kind, e.seq), "time": _time(e.at_ms),
        "subject": e.alert.subject, "datacontenttype": "application/json", "data": data,
    }


def notification(msg_id: str, receiver: str, group: str, level: int, firing: list[Alert],
                 resolved: list[Alert], text: str, at_ms: int) -> dict[str, Any]:
    return {
        "specversion": "1.0", "type": EVENT_TYPE_PREFIX + "notification", "source": SOURCE,
        "id": msg_id, "time": _time(at_ms), "subject": group,
        "datacontenttype": "application/json",
        "data": {"receiver": receiver, "group": group, "level": level, "text": text,
                 "firing": [alert_data(a) for a in firing],
                 "resolved": [alert_data(a) for a in resolved]},
    }
