"""Mute stage: silences (label matchers over a time span) and inhibition.

Inhibition: a firing alert matching a rule's `source` mutes alerts matching its `target`
that share the `equal` labels — a regional episode mutes the device alerts in its
township; a device's offline alert mutes its own data alerts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from collector.alerting.config import InhibitRule
from collector.alerting.matchers import Matcher, all_match
from collector.alerting.model import Alert


@dataclass(frozen=True)
class Silence:
    id: int
    matchers: tuple[Matcher, ...]
    starts_ms: int
    ends_ms: int
    author: str
    reason: str

    def active(self, now_ms: int) -> bool:
        return self.starts_ms <= now_ms < self.ends_ms


class Muter:
    def __init__(self, silences: Sequence[Silence], inhibit: Sequence[InhibitRule]) -> None:
        self.silences = list(silences)
        self.inhibit = list(inhibit)

    def reason(self, alert: Alert, firing: Sequence[Alert], now_ms: int) -> str | None:
        """Why `alert` is muted now ("silence 3: maintenance", "inhibited by #12"), or None."""
        for s in self.silences:
            if s.active(now_ms) and all_match(s.matchers, alert.labels):
                return f"silence {s.id}: {s.reason}"
        for rule in self.inhibit:
            if not all_match(rule.target, alert.labels):
                continue
            for src in firing:
                if (src.id != alert.id and src.state == "firing"
                        and all_match(rule.source, src.labels)
                        and all(src.labels.get(k) == alert.labels.get(k) for k in rule.equal)):
                    return f"inhibited by #{src.id} ({src.rule} {src.subject})"
        return None
