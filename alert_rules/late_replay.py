"""A late backlog judged in its own time, bucket by bucket, for all its devices at once.

A backlog that arrives after the ticks of its time (an agent's network outage) is replayed
in a scratch engine: each device joins it at its first late reading, seeded with its
windows and alert states as the engine held them just before that reading; then each
fine bucket's readings, of every device, are folded in together and the rules evaluated
once, at the bucket's end (as a tick at the end of that minute would have), for the
devices with readings in it. A device's result is the same as replaying it alone (the
Hypothesis test in tests/alert_rules/test_late.py holds the two side by side):

- all devices share the scratch fleet's clock, so a device joining when the clock is past
  its seed time takes only the buckets the ring still holds, and nothing newer;
- the rules evaluate every row, so the alert state of a device without readings in the
  bucket is put back as it was, and its transitions dropped.

Deadman, spatial and anomaly rules judge at arrival only (`ARRIVAL_KINDS`): they are not
fed or evaluated here.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from alert_rules.rule_base import RuleBase
from alert_rules.state import BoolArr, FleetState, FloatArr, IntArr
from alert_rules.transitions import Transition

if TYPE_CHECKING:  # the engine imports this module
    from alert_rules.engine import Engine

#: rule kinds judged at arrival only: a deadman is about arrival itself, a spatial rule
#: compares a device with neighbours whose readings of that time are not replayed with it,
#: and the anomaly detector learns reading by reading (the live `ingest` feeds it all)
ARRIVAL_KINDS = frozenset({"deadman", "spatial", "anomaly"})


def judged_at(bucket: int, resolution_ms: int, now_ms: int) -> int:
    """When a bucket of the backlog is judged: at its end, or now if it has not ended
    (never before its start)."""
    return max(bucket * resolution_ms, min((bucket + 1) * resolution_ms - 1, now_ms))


def seed(sub: FleetState, src: FleetState, rows: IntArr, src_rows: IntArr,
         upto_ms: IntArr) -> None:
    """Fresh rows of `sub` as `src` knew its rows up to each row's `upto_ms`: latest values,
    when last heard, and the ring buckets up to then that `sub`'s clock still holds."""
    sub.seed_latest(src, rows, src_rows, upto_ms)
    for mine, theirs in zip(sub.rings(), src.rings(), strict=True):
        upto = upto_ms // mine.width_ms
        mine.advance(int(upto.max()))  # the shared clock, as each row's own would be
        mine.forget_running()  # its arrays are written below
        lo = np.maximum.reduce([np.full(upto.size, theirs.head - theirs.slots + 1),
                                upto - mine.slots + 1,
                                np.full(upto.size, mine.head - mine.slots + 1),
                                np.zeros(upto.size, np.int64)])
        hi = np.minimum(upto, theirs.head)
        if rows.size == 0 or (lo > hi).all():
            continue
        buckets = np.arange(int(lo.min()), int(hi.max()) + 1)
        take = (buckets[:, None] >= lo) & (buckets[:, None] <= hi)  # (bucket, row)
        s = buckets % mine.slots
        mine_ix, theirs_ix = np.ix_(s, rows), np.ix_(s, src_rows)
        for name in ("sum", "cnt", "min", "max") if mine.track_extremes else ("sum", "cnt"):
            dst = getattr(mine, name)
            dst[mine_ix] = np.where(take, getattr(theirs, name)[theirs_ix], dst[mine_ix])


def replay(engine: Engine, devices: Sequence[str], ts: IntArr,
           cols: dict[str, FloatArr], flagged: BoolArr, now_ms: int,
           late_after_ms: int) -> list[Transition]:
    """Transitions of the backlog in its own time (`Engine.replay_late` documents it); the
    alert states it ends in are written back into `engine`'s rules."""
    main = engine.fleet
    width = main.resolution_ms
    ids = list(dict.fromkeys(devices))
    code = {d: i for i, d in enumerate(ids)}
    dev = np.array(list(map(code.__getitem__, devices)), np.int64)
    first = np.full(len(ids), np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first, dev, ts)
    bucket = ts // width
    order = np.lexsort((ts, bucket))
    dev, ts, bucket, flagged = dev[order], ts[order], bucket[order], flagged[order]
    cols = {f: c[order] for f, c in cols.items()}

    sub = engine.blank(ids)
    judged = [(m, t) for m, t in zip(engine.rules, sub.rules, strict=True)
              if m.kind not in ARRIVAL_KINDS]
    fleet = sub.fleet
    row_of = np.full(len(ids), -1, np.int64)  # scratch row per device, once joined
    out: list[Transition] = []
    cuts = np.r_[0, np.flatnonzero(np.diff(bucket)) + 1, bucket.size]
    for start, end in itertools.pairwise(cuts.tolist()):
        part = slice(start, end)
        here = np.unique(dev[part])
        joining = here[row_of[here] < 0]
        if joining.size:
            _join(engine, sub.fleet, judged, [ids[i] for i in joining], first[joining],
                  row_of, joining)
        rows = row_of[dev[part]]
        part_ts = ts[part]
        part_cols = {f: c[part] for f, c in cols.items()}
        fleet.ingest(rows, part_ts, part_cols, flagged[part])
        for _, t in judged:
            t.observe(fleet, rows, part_ts, part_cols)
        at = judged_at(int(bucket[part.start]), width, now_ms)
        fleet.advance(at)
        late_ms = now_ms - at if now_ms - at > late_after_ms else 0
        out.extend(_evaluate(fleet, [t for _, t in judged], row_of[here], at, late_ms))
    known = row_of >= 0
    back = main.rows_for(ids)[known]
    for m, t in judged:
        m.copy_rows(back, t, row_of[known])
    return out


def _join(engine: Engine, fleet: FleetState, judged: list[tuple[RuleBase, RuleBase]],
          names: list[str], first_ts: IntArr, row_of: IntArr, codes: IntArr) -> None:
    """Devices whose backlog starts in this bucket take their scratch rows, seeded with
    what the engine knew of them just before their first late reading."""
    rows = fleet.rows_for(names)
    row_of[codes] = rows
    main = engine.fleet
    known = np.fromiter((d in main.index for d in names), bool, len(names))
    fleet.first_seen_ms[rows[~known]] = -1  # never heard: first seen in its bucket
    if not known.any():
        return
    src = main.rows_for([d for d, k in zip(names, known, strict=True) if k])
    seed(fleet, main, rows[known], src, first_ts[known] - 1)
    for m, t in judged:
        t.copy_rows(rows[known], m, src)


def _evaluate(fleet: FleetState, rules: list[RuleBase], here: IntArr, at: int,
              late_ms: int) -> list[Transition]:
    """Evaluate every rule at `at`, keeping the outcome for the rows in `here` only."""
    n = fleet.size
    others = np.ones(n, bool)
    others[here] = False
    subjects = {fleet.devices[int(r)] for r in here}
    out: list[Transition] = []
    for rule in rules:
        c = rule.columns
        c.fit(n)
        saved = (c.pending_since[:n].copy(), c.clear_since[:n].copy(), c.firing[:n].copy())
        transitions = rule.evaluate(fleet, at)
        c.pending_since[:n][others] = saved[0][others]
        c.clear_since[:n][others] = saved[1][others]
        c.firing[:n][others] = saved[2][others]
        out.extend(dataclasses.replace(x, late_ms=late_ms)
                   for x in transitions if x.subject in subjects)
    return out
