"""The pending → firing → resolved state machine, for all subjects of a rule at once.

Prometheus semantics: a condition must hold for `for` before the alert fires; once
firing, the clear condition (hysteresis: a separate, lower threshold) must hold for
`keep_firing_for` before it resolves. A subject without data neither fires nor clears.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from alert_rules.saved_state import one_length

IntArr = npt.NDArray[np.int64]
BoolArr = npt.NDArray[np.bool_]
NONE = -1
NEVER = np.iinfo(np.int64).max  # a due time that never comes


@dataclass
class Masks:
    """Rows (subjects) that changed state in a step."""

    pending: IntArr  # newly pending (and not fired in the same tick)
    firing: IntArr
    resolved: IntArr


@dataclass
class AlertColumns:
    pending_since: IntArr = field(default_factory=lambda: np.zeros(0, np.int64))
    clear_since: IntArr = field(default_factory=lambda: np.zeros(0, np.int64))
    firing: BoolArr = field(default_factory=lambda: np.zeros(0, bool))

    def fit(self, n: int) -> None:
        have = self.firing.size
        if n > have:
            extra = max(n - have, have)  # grow by doubling
            self.pending_since = np.r_[self.pending_since, np.full(extra, NONE, np.int64)]
            self.clear_since = np.r_[self.clear_since, np.full(extra, NONE, np.int64)]
            self.firing = np.r_[self.firing, np.zeros(extra, bool)]

    def step(self, over: BoolArr, under: BoolArr, now_ms: int, for_ms: int,
             keep_ms: int, rows: IntArr | None = None) -> Masks:
        """Advance every subject, or only `rows` (sorted; `over` and `under` then hold
        their conditions in that order); `over`: firing condition, `under`: clear
        condition.

        Only subjects that are over, pending or firing can change state: the machine
        runs on that (usually small) subset, gathered once.
        """
        if rows is None:
            n = over.size
            self.fit(n)
            rows = np.flatnonzero(over | self.firing[:n] | (self.pending_since[:n] != NONE))
            o, u = over[rows], under[rows]
        else:
            self.fit(int(rows[-1]) + 1 if rows.size else 0)
            local = np.flatnonzero(over | self.firing[rows] | (self.pending_since[rows] != NONE))
            rows, o, u = rows[local], over[local], under[local]
        firing = self.firing[rows]
        pending = self.pending_since[rows]
        clear = self.clear_since[rows]

        new_pending = ~firing & o & (pending == NONE)
        pending[new_pending] = now_ms
        pending[~firing & ~o] = NONE
        to_fire = ~firing & o & (now_ms - pending >= for_ms)

        clearing = firing & u
        clear[clearing & (clear == NONE)] = now_ms
        clear[firing & ~u] = NONE
        to_resolve = clearing & (now_ms - clear >= keep_ms)

        firing[to_fire] = True
        firing[to_resolve] = False
        done = to_resolve | to_fire
        pending[done] = NONE
        clear[done] = NONE
        self.firing[rows] = firing
        self.pending_since[rows] = pending
        self.clear_since[rows] = clear
        return Masks(rows[new_pending & ~to_fire], rows[to_fire], rows[to_resolve])

    def timer_due(self, for_ms: int, keep_ms: int, rows: IntArr | slice) -> IntArr:
        """When each subject's pending (`for`) or clearing (`keep_firing_for`) timer ends,
        NEVER where none runs: a tick must judge it then even if nothing arrived."""
        p, c = self.pending_since[rows], self.clear_since[rows]
        due = np.where(p != NONE, p + for_ms, NEVER)
        return np.where(self.firing[rows] & (c != NONE), np.minimum(due, c + keep_ms), due)

    def clear(self, rows: IntArr) -> None:
        """Forget these subjects' alert state (no transition is reported)."""
        rows = rows[rows < self.firing.size]
        self.pending_since[rows] = NONE
        self.clear_since[rows] = NONE
        self.firing[rows] = False

    def copy_from(self, rows: IntArr, src: AlertColumns, src_rows: IntArr) -> None:
        """Take these subjects' alert state from another rule's columns."""
        if rows.size == 0:
            return
        self.fit(int(rows.max()) + 1)
        src.fit(int(src_rows.max()) + 1)
        self.pending_since[rows] = src.pending_since[src_rows]
        self.clear_since[rows] = src.clear_since[src_rows]
        self.firing[rows] = src.firing[src_rows]

    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        return {"pending_since": self.pending_since, "clear_since": self.clear_since,
                "firing": self.firing}

    def load(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        one_length(arrays, "alert states", {"pending_since": np.int64,
                                            "clear_since": np.int64, "firing": bool})
        self.pending_since = arrays["pending_since"].astype(np.int64)
        self.clear_since = arrays["clear_since"].astype(np.int64)
        self.firing = arrays["firing"].astype(bool)
