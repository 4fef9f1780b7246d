"""Group stage: alerts of one route with equal `group_by` labels go out together.

Timing as in Alertmanager: a new group waits `group_wait` (so a township's devices crossing
together make one message), then changes go out at most every `group_interval`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from collector.alerting.config import Route
from collector.alerting.model import Alert
from collector.alerting.routing import match


@dataclass
class Group:
    route: Route
    key: str
    alerts: list[Alert] = field(default_factory=list)

    @property
    def receiver(self) -> str:
        return self.route.receiver


def group_key(route: Route, alert: Alert) -> str:
    return ",".join(f"{k}={alert.labels.get(k, '')}" for k in route.group_by)


def build(alerts: Iterable[Alert], root: Route) -> dict[tuple[str, str], Group]:
    groups: dict[tuple[str, str], Group] = {}
    for a in alerts:
        for route in match(root, a.labels):
            key = group_key(route, a)
            g = groups.get((route.receiver, key))
            if g is None:
                g = groups[(route.receiver, key)] = Group(route, key)
            g.alerts.append(a)
    return groups


def due(group: Group, last_sent_ms: int | None, now_ms: int) -> bool:
    """Is it time to look at this group (what to send is the dedup stage's call)?"""
    if last_sent_ms is None:
        firing = [a.started_ms for a in group.alerts if a.state == "firing"]
        return bool(firing) and now_ms >= min(firing) + group.route.group_wait_ms
    return now_ms >= last_sent_ms + group.route.group_interval_ms
