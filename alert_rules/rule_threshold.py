"""Threshold on a windowed aggregate, with `for`, hysteresis and `keep_firing_for`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from alert_rules.state import FleetState, FloatArr, IntArr
from alert_rules.transitions import AlertState, Transition

Aggregate = Literal["latest", "mean"]
NONE = np.int64(-1)


@dataclass
class ThresholdRule:
    name: str
    field: str
    above: float
    clear_below: float  # hysteresis: firing clears only below this (<= above)
    aggregate: Aggregate = "latest"
    window_ms: int = 0
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    severity: str = "warning"
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    # per-device state, indexed like FleetState rows
    pending_since: IntArr = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    clear_since: IntArr = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    firing: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, bool))

    def _fit(self, n: int) -> None:
        have = self.firing.size
        if n > have:
            self.pending_since = np.concatenate([self.pending_since, np.full(n - have, NONE)])
            self.clear_since = np.concatenate([self.clear_since, np.full(n - have, NONE)])
            self.firing = np.concatenate([self.firing, np.zeros(n - have, bool)])

    def blank(self) -> ThresholdRule:
        """The same rule with no per-device state."""
        return dataclasses.replace(
            self, pending_since=np.zeros(0, np.int64), clear_since=np.zeros(0, np.int64),
            firing=np.zeros(0, bool),
        )

    def copy_rows(self, rows: IntArr, src: ThresholdRule, src_rows: IntArr) -> None:
        """Take these devices' alert state from the same rule in another engine."""
        if rows.size == 0:
            return
        self._fit(int(rows.max()) + 1)
        src._fit(int(src_rows.max()) + 1)
        self.pending_since[rows] = src.pending_since[src_rows]
        self.clear_since[rows] = src.clear_since[src_rows]
        self.firing[rows] = src.firing[src_rows]

    def clear_rows(self, rows: IntArr) -> None:
        """Forget these devices' alert state (no transition is reported)."""
        rows = rows[rows < self.firing.size]
        self.pending_since[rows] = NONE
        self.clear_since[rows] = NONE
        self.firing[rows] = False

    def value(self, fleet: FleetState, now_ms: int) -> FloatArr:
        if self.aggregate == "mean":
            return fleet.window_mean(self.field, now_ms, self.window_ms)
        return fleet.latest(self.field)

    def evaluate(self, fleet: FleetState, now_ms: int) -> list[Transition]:
        n = fleet.size
        self._fit(n)
        v = self.value(fleet, now_ms)
        with np.errstate(invalid="ignore"):
            over = v > self.above  # NaN compares False: no data never fires
            under = v < self.clear_below  # NaN: no data never clears (deadman's job)
        firing = self.firing[:n]
        pending = self.pending_since[:n]
        clear = self.clear_since[:n]

        new_pending = ~firing & over & (pending == NONE)
        pending[new_pending] = now_ms
        pending[~firing & ~over] = NONE
        to_fire = ~firing & over & (now_ms - pending >= self.for_ms)

        clearing = firing & under
        clear[clearing & (clear == NONE)] = now_ms
        clear[firing & ~under] = NONE
        to_resolve = clearing & (now_ms - clear >= self.keep_firing_for_ms)

        firing[to_fire] = True
        firing[to_resolve] = False
        pending[to_resolve | to_fire] = NONE
        clear[to_resolve | to_fire] = NONE

        out: list[Transition] = []
        for state, mask in (("pending", new_pending & ~to_fire), ("firing", to_fire),
                            ("resolved", to_resolve)):
            for row in np.flatnonzero(mask):
                out.append(self._transition(fleet.devices[row], state, float(v[row]), now_ms))  # type: ignore[arg-type]
        return out

    def _transition(self, device: str, state: AlertState, value: float, now_ms: int) -> Transition:
        return Transition(
            rule=self.name, subject=device, state=state, value=value, at_ms=now_ms,
            severity=self.severity, labels=dict(self.labels), annotations=dict(self.annotations),
        )
