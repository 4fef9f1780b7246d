"""The rule engine: ingest readings into the fleet state, tick every rule over all devices.

No I/O and no wall clock: callers pass `now_ms`, so a tick is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alert_rules.rulefile import Rule
from alert_rules.state import FleetState, FloatArr
from alert_rules.transitions import Transition


class Engine:
    def __init__(self, rules: Sequence[Rule], window: int = 256) -> None:
        self.rules = list(rules)
        fields = tuple(sorted({r.field for r in self.rules})) or ("pm2_5",)
        self.fleet = FleetState(fields=fields, window=window)

    def ingest(self, devices: list[str], ts_ms: Sequence[int],
               values: dict[str, Sequence[float | None]]) -> None:
        """Readings as columns: device id, timestamp and one sequence per field."""
        rows = self.fleet.rows_for(devices)
        cols: dict[str, FloatArr] = {}
        for f in self.fleet.fields:
            col = values.get(f)
            cols[f] = (np.full(len(devices), np.nan) if col is None else
                       np.array([np.nan if x is None else x for x in col], np.float64))
        self.fleet.ingest(rows, np.asarray(ts_ms, np.int64), cols)

    def blank(self) -> Engine:
        """An engine with the same rules and no devices (to replay history into)."""
        return Engine([r.blank() for r in self.rules], window=self.fleet.window)

    def adopt(self, devices: list[str], src: Engine) -> None:
        """Take these devices' alert state from `src`, an engine with the same rules
        (e.g. `blank()` after replaying their history); their windows are not copied."""
        known = [d for d in devices if d in src.fleet.index]
        rows = self.fleet.rows_for(known)
        src_rows = np.fromiter((src.fleet.index[d] for d in known), np.int64, len(known))
        for mine, theirs in zip(self.rules, src.rules, strict=True):
            mine.copy_rows(rows, theirs, src_rows)

    def forget(self, devices: list[str]) -> int:
        """Drop the windows and alert state of devices now judged elsewhere (their row
        stays, empty, so other rows never move); returns how many were known."""
        rows = np.fromiter((self.fleet.index[d] for d in devices if d in self.fleet.index),
                           np.int64)
        self.fleet.clear_rows(rows)
        for rule in self.rules:
            rule.clear_rows(rows)
        return int(rows.size)

    def tick(self, now_ms: int) -> list[Transition]:
        out: list[Transition] = []
        for rule in self.rules:
            out.extend(rule.evaluate(self.fleet, now_ms))
        return out
