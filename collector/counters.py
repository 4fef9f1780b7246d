"""What the collector has done so far: read by the CLI's stop line, tests and benches."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Counters:
    """Written on the pipeline's thread only (batches complete there, not on writers)."""

    messages: int = 0
    readings_stored: int = 0
    duplicates: int = 0
    new_epochs: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # messages and refused lines
    rejected_readings: Counter[str] = field(default_factory=Counter)  # single readings
    write_retries: int = 0
    alerts_published: int = 0
    stale_acks: int = 0
    unknown_device_readings: int = 0
    spooled: int = 0
    accepted: int = 0  # messages that passed validation (every message is accepted or rejected)
