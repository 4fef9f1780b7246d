"""What the lifecycle keeps about an alert, and what it hands to the channels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

LifecycleState = Literal["firing", "resolved"]
EventKind = Literal["firing", "resolved", "acknowledged", "escalated", "reopened"]


@dataclass
class Alert:
    """One alert: a rule for one subject (device, or township for regional rules).

    `id` is a small integer so a grid worker can type it in an SMS reply ("收到 123").
    """

    id: int
    rule: str
    subject: str
    state: LifecycleState
    value: float
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    started_ms: int
    updated_ms: int
    resolved_ms: int | None = None
    acked_by: str | None = None
    acked_ms: int | None = None
    level: int = 0  # escalation level: 0 = the first receivers (grid worker)
    level_since_ms: int = 0
    late_ms: int = 0  # fired on readings that arrived this late (started_ms is their time)

    @property
    def key(self) -> str:
        return f"{self.rule}|{self.subject}"

    @property
    def acknowledged(self) -> bool:
        return self.acked_ms is not None


@dataclass(frozen=True)
class Event:
    """A lifecycle event: the alert as it was when the event happened."""

    kind: EventKind
    alert: Alert
    at_ms: int
    seq: int  # per alert, so an event id is deterministic and unique
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    """One decided delivery: to one recipient over one channel. Stored in the outbox."""

    id: str  # idempotency key; receivers dedup on it
    channel: str
    recipient: str  # phone number, app id, or "" for broadcast channels
    kind: Literal["event", "notification"]
    text: str  # rendered for people
    event: dict[str, Any]  # CloudEvents 1.0 structured-mode body
    retain_key: str = ""  # MQTT: the alert's current-state topic suffix ("" = none)
