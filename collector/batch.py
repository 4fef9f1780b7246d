"""The batch being built: what to acknowledge, what to write, what to give the engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from airgrid.wire import Reading
from collector.delivery import Delivery


@dataclass
class Batch:
    deliveries: list[Delivery] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    readings: int = 0
    devices: list[str] = field(default_factory=list)  # per fresh reading
    ts: list[int] = field(default_factory=list)  # per fresh reading
    fresh: list[Reading] = field(default_factory=list)
    newest: list[int] = field(default_factory=list)  # per message: newest reading ts
    started: float = 0.0  # monotonic time of its first delivery
