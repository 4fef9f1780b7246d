"""What a tick reports: a rule's alert for one subject changed state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AlertState = Literal["pending", "firing", "resolved"]


@dataclass(frozen=True)
class Transition:
    rule: str
    subject: str  # device id (or township for regional alerts)
    state: AlertState
    value: float
    at_ms: int
    severity: str = "warning"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)  # rendered text, not templates
    #: > 0: decided on readings that arrived late (a backlog after an outage), judged in
    #: their own time: `at_ms` is the readings' time, `at_ms + late_ms` when it was judged
    late_ms: int = 0
