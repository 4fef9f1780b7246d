"""Alert transitions as CloudEvents 1.0 (structured mode JSON) for the MQTT bus."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from airgrid.wire import alert_topic
from alert_rules.transitions import Transition

EVENT_TYPE_PREFIX = "org.airgrid.alert."
SOURCE = "/airgrid/collector"


def event_id(t: Transition) -> str:
    """Deterministic: the same transition always gets the same id, so consumers can dedup."""
    key = f"{t.rule}|{t.subject}|{t.state}|{t.at_ms}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


def to_cloudevent(t: Transition) -> dict[str, object]:
    when = dt.datetime.fromtimestamp(t.at_ms / 1000, tz=dt.UTC)
    return {
        "specversion": "1.0",
        "type": EVENT_TYPE_PREFIX + t.state,
        "source": SOURCE,
        "id": event_id(t),
        "time": when.isoformat().replace("+00:00", "Z"),
        "subject": t.subject,
        "datacontenttype": "application/json",
        "data": {
            "rule": t.rule,
            "device": t.subject,
            "state": t.state,
            "value": round(t.value, 2),
            "severity": t.severity,
            "labels": t.labels,
            "annotations": dict(t.annotations),  # rendered where the rule fired
            "at_ms": t.at_ms,
            # decided on readings that arrived late: `at_ms` is their time
            **({"late": True, "delay_s": round(t.late_ms / 1000, 1)} if t.late_ms else {}),
        },
    }


def encode(t: Transition, prefix: str) -> tuple[str, bytes]:
    """(topic, JSON bytes) for a transition."""
    body = json.dumps(to_cloudevent(t), ensure_ascii=False).encode()
    return alert_topic(t.rule, t.subject, prefix), body
