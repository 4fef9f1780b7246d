"""What the county's dashboards read beside the readings: alert lifecycle events, their
deliveries, and where each registered device stands.

Lifecycle events and delivery outcomes happen on several threads (the pipeline's tick,
acknowledgements over HTTP, MQTT or SMS, the channel workers); they are turned into
line protocol here and queued, and the pipeline's thread takes the queue into its open
batch, so they reach InfluxDB through the same path as readings: the same idempotent
point identity (measurement, tags, time) and the spool while InfluxDB is down.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable

from airgrid.interpreter_lock import sharing
from airgrid.measurements import ALERT_EVENTS, DEVICE_LOCATION
from alert_rules.transitions import Transition
from collector.alerting.model import Event, Message
from collector.line_protocol import escape_string_field, tag_set
from collector.registry import Device


def _num(v: float) -> str:
    return repr(float(v)) if math.isfinite(v) else "0.0"


def event_line(ev: Event) -> str:
    """One lifecycle event: tags rule, device, state, township, grid; time = the event's."""
    a = ev.alert
    tags = {"rule": a.rule, "device": a.subject, "state": ev.kind,
            "township": a.labels.get("township", ""), "grid": a.labels.get("grid", "")}
    fields = [f"alert_id={a.id}i", f"value={_num(a.value)}",
              f"severity={escape_string_field(a.severity)}",
              f"started_ms={a.started_ms}i"]
    if ev.kind == "firing":
        fields.append("open=1i")
    elif ev.kind == "resolved":
        fields.append("open=0i")
    elif ev.kind == "acknowledged" and a.acked_ms is not None:
        fields.append(f"ack_delay_s={(a.acked_ms - a.started_ms) / 1000!r}")
        fields.append(f"acked_by={escape_string_field(a.acked_by or '')}")
        via = ev.detail.get("via")
        if via:
            fields.append(f"via={escape_string_field(str(via))}")
    elif ev.kind == "escalated":
        fields.append(f"level={a.level}i")
    late_ms = ev.detail.get("late_ms")
    if isinstance(late_ms, int) and late_ms > 0:
        fields.append(f"late_s={late_ms / 1000!r}")
    return f"{ALERT_EVENTS}{tag_set(tags)} {','.join(fields)} {ev.at_ms}"


def transition_line(t: Transition) -> str | None:
    """A `firing` or `resolved` announced without an alert lifecycle (the collector
    publishes transitions as events itself): the same point as `event_line`'s, without
    an alert id. The record a collector taking the device over reads
    (`collector.handover`); None for `pending`."""
    if t.state == "pending":
        return None
    tags = {"rule": t.rule, "device": t.subject, "state": t.state,
            "township": t.labels.get("township", ""), "grid": t.labels.get("grid", "")}
    fields = [f"value={_num(t.value)}", f"severity={escape_string_field(t.severity)}",
              f"open={1 if t.state == 'firing' else 0}i"]
    if t.late_ms > 0:
        fields.append(f"late_s={t.late_ms / 1000!r}")
    return f"{ALERT_EVENTS}{tag_set(tags)} {','.join(fields)} {t.at_ms}"


def delivery_line(msg: Message, delivered: bool, at_ms: int) -> str | None:
    """One message delivered (state notified) or given up (notify_failed), per channel."""
    data = msg.event.get("data") or {}
    first = data if msg.kind == "event" else next(
        iter(data.get("firing") or data.get("resolved") or []), None)
    if not isinstance(first, dict):
        return None
    tags = {"rule": str(first.get("rule", "")), "device": str(first.get("device", "")),
            "state": "notified" if delivered else "notify_failed", "channel": msg.channel}
    labels = first.get("labels") or {}
    fields = [f"value={_num(float(first.get('value') or 0.0))}",
              f"kind={escape_string_field(msg.kind)}",
              f"message_id={escape_string_field(msg.id)}"]
    if isinstance(labels, dict):
        tags.update(township=str(labels.get("township", "")), grid=str(labels.get("grid", "")))
    return f"{ALERT_EVENTS}{tag_set(tags)} {','.join(fields)} {at_ms}"


def location_lines(devices: Iterable[Device], at_ms: int) -> list[str]:
    """Every registered device's place and labels (WGS-84), all at the registry's load."""
    out = []
    for d in sharing(devices):  # 100,000 at start-up, beside ingest
        tags = tag_set({"device": d.id, **d.tags()})
        fields = [f"latitude={d.lat!r}", f"longitude={d.lon!r}",
                  f"name={escape_string_field(d.name)}", f"sensor={escape_string_field(d.sensor)}",
                  f"link={escape_string_field(d.link)}"]
        out.append(f"{DEVICE_LOCATION}{tags} {','.join(fields)} {at_ms}")
    return out


class CountyPoints:
    """Thread-safe queue of lines for the pipeline's next batch (the alerting recorder)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self.events = 0
        self.deliveries = 0

    def event(self, ev: Event) -> None:
        line = event_line(ev)
        with self._lock:
            self._lines.append(line)
            self.events += 1

    def delivery(self, msg: Message, delivered: bool, at_ms: int) -> None:
        line = delivery_line(msg, delivered, at_ms)
        if line is None:
            return
        with self._lock:
            self._lines.append(line)
            self.deliveries += 1

    def add(self, lines: list[str]) -> None:
        with self._lock:
            self._lines.extend(lines)

    def take(self, limit: int = 5000) -> list[str]:
        """Up to `limit` lines, oldest first: the places of 100,000 devices at start-up
        ride with twenty batches, not one batch InfluxDB takes half a minute to store."""
        with self._lock:
            if len(self._lines) <= limit:
                out, self._lines = self._lines, []
            else:
                out, self._lines = self._lines[:limit], self._lines[limit:]
        return out

