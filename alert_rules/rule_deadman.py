"""Deadman: no data from a device for a duration.

Judged against every known row, so registry devices that never reported are caught too
(their silence counts from the first tick that knew them). Devices on a cellular link
get an extra grace period: their links drop for minutes without the device being dead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alert_rules.lifecycle import NEVER
from alert_rules.registry import Registered
from alert_rules.rule_base import RuleBase
from alert_rules.state import FleetState, FloatArr, IntArr
from alert_rules.transitions import Transition


@dataclass(kw_only=True)
class DeadmanRule(RuleBase):
    absent_ms: int
    grace_ms: int = 0  # added for devices whose registry link is "cellular"

    kind = "deadman"
    incremental = True

    def _since_limit(self, fleet: FleetState, rows: IntArr | None) -> tuple[IntArr, FloatArr]:
        sel = slice(0, fleet.size) if rows is None else rows
        last = fleet.last_ts[sel]
        since = np.where(last > 0, last, fleet.first_seen_ms[sel])
        return since, self.absent_ms + self.grace_ms * fleet_cellular(fleet)[sel]

    def judge(self, fleet: FleetState, now_ms: int, rows: IntArr | None) -> list[Transition]:
        since, limit = self._since_limit(fleet, rows)
        silence = (now_ms - since).astype(np.float64)
        over = silence >= limit
        return self.step(fleet, silence / 1000.0, over, ~over, now_ms, rows)

    def due_ms(self, fleet: FleetState, after_ms: int, rows: IntArr | None = None) -> IntArr:
        """A device's silence reaches the limit at (last heard + limit): the next-due
        index that lets a tick skip every device that is neither due nor heard."""
        since, limit = self._since_limit(fleet, rows)
        # silence >= limit as the judge computes it, in float: first ms it holds
        crossing = since + np.ceil(limit).astype(np.int64)
        due = np.where(crossing > after_ms, crossing, NEVER)
        return np.minimum(super().due_ms(fleet, after_ms, rows), due)


def fleet_cellular(fleet: FleetState) -> FloatArr:
    """1 per row whose registry entry says cellular, else 0 (kept on the fleet)."""
    return fleet.per_device("cellular", _cellular)


def _cellular(d: Registered | None) -> float:
    return 1.0 if d is not None and d.link == "cellular" else 0.0
