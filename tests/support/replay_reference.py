"""The late replay one device at a time: the reference `alert_rules.late_replay` is held to.

Each device alone in its own scratch engine, seeded with its windows and alert states as
the engine held them just before its first late reading, then its readings bucket by
bucket, each bucket judged at its end (`late_replay.judged_at`); the alert states it ends
in go back to the engine. Simple and slow (an engine per device).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from alert_rules.engine import Engine
from alert_rules.late_replay import ARRIVAL_KINDS, judged_at
from alert_rules.transitions import Transition


def replay_each(engine: Engine, devices: Sequence[str], ts_ms: Sequence[int],
                values: dict[str, Sequence[float | None]], flagged: Sequence[bool] | None,
                now_ms: int, late_after_ms: int = 0) -> list[Transition]:
    n = len(devices)
    ts_all = np.asarray(ts_ms, np.int64)
    cols_all = {f: np.array([np.nan if x is None else x for x in values.get(f, [None] * n)],
                            np.float64) for f in engine.fleet.fields}
    for c in cols_all.values():
        c[np.isinf(c)] = np.nan
    fl_all = np.zeros(n, bool) if flagged is None else np.asarray(flagged, bool)
    dev = np.asarray(devices, dtype=object)
    out: list[Transition] = []
    width = engine.fleet.resolution_ms
    for device in dict.fromkeys(devices):
        mine = np.flatnonzero(dev == device)
        order = mine[np.argsort(ts_all[mine], kind="stable")]
        ts, fl = ts_all[order], fl_all[order]
        cols = {f: c[order] for f, c in cols_all.items()}
        sub = engine.blank([device])
        row = sub.fleet.rows_for([device])
        judged = [(m, t) for m, t in zip(engine.rules, sub.rules, strict=True)
                  if m.kind not in ARRIVAL_KINDS]
        if device in engine.fleet.index:
            src = engine.fleet.rows_for([device])
            sub.fleet.seed_rows(engine.fleet, row, src, int(ts[0]) - 1)
            for m, t in judged:
                t.copy_rows(row, m, src)
        buckets = ts // width
        start = 0
        for end in [*(np.flatnonzero(np.diff(buckets)) + 1).tolist(), ts.size]:
            part = slice(start, end)
            start = end
            rows = np.full(end - part.start, row[0], np.int64)
            part_cols = {f: c[part] for f, c in cols.items()}
            sub.fleet.ingest(rows, ts[part], part_cols, fl[part])
            for _, t in judged:
                t.observe(sub.fleet, rows, ts[part], part_cols)
            at = judged_at(int(buckets[part.start]), width, now_ms)
            sub.fleet.advance(at)
            late_ms = now_ms - at if now_ms - at > late_after_ms else 0
            for _, t in judged:
                out.extend(dataclasses.replace(x, late_ms=late_ms)
                           for x in t.evaluate(sub.fleet, at))
        back = engine.fleet.rows_for([device])
        for m, t in judged:
            m.copy_rows(back, t, row)
    return out
