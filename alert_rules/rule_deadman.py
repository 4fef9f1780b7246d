"""Deadman: no data from a device for a duration.

Judged against every known row, so registry devices that never reported are caught too
(their silence counts from the first tick that knew them). Devices on a cellular link
get an extra grace period: their links drop for minutes without the device being dead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alert_rules.rule_base import RuleBase
from alert_rules.state import FleetState
from alert_rules.transitions import Transition


@dataclass(kw_only=True)
class DeadmanRule(RuleBase):
    absent_ms: int
    grace_ms: int = 0  # added for devices whose registry link is "cellular"

    kind = "deadman"

    def evaluate(self, fleet: FleetState, now_ms: int) -> list[Transition]:
        n = fleet.size
        since = np.where(fleet.last_ts[:n] > 0, fleet.last_ts[:n], fleet.first_seen_ms[:n])
        silence = (now_ms - since).astype(np.float64)
        limit = self.absent_ms + self.grace_ms * fleet_cellular(fleet)
        over = silence >= limit
        return self.step(fleet, silence / 1000.0, over, ~over, now_ms)


def fleet_cellular(fleet: FleetState) -> np.ndarray:
    """1 per row whose registry entry says cellular, else 0 (cached on the fleet)."""
    n = fleet.size
    cached = fleet.cache.get("cellular")
    if cached is None or cached.size != n:
        cached = np.fromiter(
            (1.0 if (d := fleet.registry.get(dev)) is not None and d.link == "cellular"
             else 0.0 for dev in fleet.devices), np.float64, n)
        fleet.cache["cellular"] = cached
    return cached
