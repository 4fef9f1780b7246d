"""The alert state machine: transitions in, lifecycle events out.

pending is the engine's business and only noted here. firing opens an alert (or reopens
one resolved less than `reopen_within` ago: same id, acknowledgement and escalation level
kept, so a flapping sensor stays one alert). resolved closes it. acknowledged and escalated
are set on a firing alert. No I/O here: new ids come from the caller's `new_id`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

from alert_rules.transitions import Transition
from collector.alerting.config import EscalationLevel
from collector.alerting.model import Alert, Event, EventKind


def _late(t: Transition) -> dict[str, object]:
    """Event detail of a transition decided on late readings: its delay."""
    return {"late_ms": t.late_ms} if t.late_ms else {}


class Lifecycle:
    def __init__(self, new_id: Callable[[Alert], int], reopen_within_ms: int) -> None:
        self.new_id = new_id
        self.reopen_within_ms = reopen_within_ms
        self.by_key: dict[str, Alert] = {}
        self.by_id: dict[int, Alert] = {}
        self.seq: dict[int, int] = {}
        self.ignored = 0  # transitions that changed nothing (resolved without an alert…)

    def load(self, alerts: Sequence[tuple[Alert, int]]) -> None:
        for a, seq in alerts:
            self.by_key[a.key] = a
            self.by_id[a.id] = a
            self.seq[a.id] = seq

    def _event(self, kind: EventKind, a: Alert, at_ms: int, **detail: object) -> Event:
        self.seq[a.id] = self.seq.get(a.id, 0) + 1
        return Event(kind, dataclasses.replace(a, labels=dict(a.labels)), at_ms,
                     self.seq[a.id], dict(detail))

    def apply(self, t: Transition, labels: dict[str, str]) -> Event | None:
        key = f"{t.rule}|{t.subject}"
        a = self.by_key.get(key)
        if t.state == "firing":
            if a is not None and a.state == "firing":
                a.value, a.updated_ms = t.value, t.at_ms
                self.ignored += 1
                return None
            if a is not None and a.resolved_ms is not None \
                    and t.at_ms - a.resolved_ms <= self.reopen_within_ms:
                a.state, a.value, a.updated_ms, a.resolved_ms = "firing", t.value, t.at_ms, None
                a.labels = labels
                a.late_ms = t.late_ms
                # an escalation clock restarts: the receivers were told it was over
                a.level_since_ms = t.at_ms + t.late_ms
                return self._event("firing", a, t.at_ms, reopened=True, **_late(t))
            # a late alert's escalation clock starts when it is known, not at reading time
            a = Alert(id=0, rule=t.rule, subject=t.subject, state="firing", value=t.value,
                      severity=t.severity, labels=labels, annotations=dict(t.annotations),
                      started_ms=t.at_ms, updated_ms=t.at_ms,
                      level_since_ms=t.at_ms + t.late_ms, late_ms=t.late_ms)
            a.id = self.new_id(a)
            if key in self.by_key:
                self.by_id.pop(self.by_key[key].id, None)
            self.by_key[key] = a
            self.by_id[a.id] = a
            return self._event("firing", a, t.at_ms, **_late(t))
        if t.state == "resolved" and a is not None and a.state == "firing":
            a.state, a.value, a.updated_ms, a.resolved_ms = "resolved", t.value, t.at_ms, t.at_ms
            return self._event("resolved", a, t.at_ms, **_late(t))
        self.ignored += 1
        return None

    def acknowledge(self, alert_id: int, by: str, now_ms: int) -> Event | None:
        """None when already acknowledged (an ack is idempotent)."""
        a = self.by_id[alert_id]
        if a.acknowledged:
            return None
        a.acked_by, a.acked_ms, a.updated_ms = by, now_ms, now_ms
        return self._event("acknowledged", a, now_ms)

    def escalate(self, ladder: Sequence[EscalationLevel], now_ms: int,
                 muted: Callable[[Alert], bool]) -> list[Event]:
        """Firing alerts nobody acknowledged in time move one level up the ladder."""
        out = []
        for a in self.by_id.values():
            if a.state != "firing" or a.acknowledged or a.level >= len(ladder):
                continue
            step = ladder[a.level]
            if now_ms < a.level_since_ms + step.after_ms or muted(a):
                continue
            waited = now_ms - a.level_since_ms
            a.level += 1
            a.level_since_ms = now_ms
            a.updated_ms = now_ms
            out.append(self._event("escalated", a, now_ms, waited_ms=waited))
        return out

    def adopt(self, t: Transition, labels: dict[str, str]) -> Alert | None:
        """Open, without an event, an alert announced before and taken over with its
        device (`collector.handover`): its `resolved` then closes it here and is
        announced. None when this collector already has it firing."""
        old = self.by_key.get(f"{t.rule}|{t.subject}")
        if old is not None and old.state == "firing":
            return None
        a = Alert(id=0, rule=t.rule, subject=t.subject, state="firing", value=t.value,
                  severity=t.severity, labels=labels, annotations=dict(t.annotations),
                  started_ms=t.at_ms, updated_ms=t.at_ms, level_since_ms=t.at_ms)
        a.id = self.new_id(a)
        if old is not None:
            self.by_id.pop(old.id, None)
        self.by_key[a.key] = a
        self.by_id[a.id] = a
        return a

    def hand_over(self, subjects: Iterable[str], now_ms: int) -> list[Alert]:
        """Close the firing alerts of devices that now report to another collector,
        without an event: their episode is not over, the new owner has adopted it and
        announces its end. Returns the alerts closed (the caller stores them)."""
        wanted = set(subjects)
        out = []
        for a in self.by_id.values():
            if a.state == "firing" and a.subject in wanted:
                a.state, a.updated_ms, a.resolved_ms = "resolved", now_ms, now_ms
                out.append(a)
        return out

    def forget(self, now_ms: int) -> None:
        """Drop alerts resolved too long ago to be reopened (they stay in SQLite)."""
        old = [a for a in self.by_id.values()
               if a.resolved_ms is not None and now_ms - a.resolved_ms > self.reopen_within_ms]
        for a in old:
            del self.by_id[a.id]
            self.seq.pop(a.id, None)
            if self.by_key.get(a.key) is a:
                del self.by_key[a.key]
