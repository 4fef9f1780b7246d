"""Engine state: one column per device, recent readings folded into time buckets.

Every device shares the same clock, so bucket `b` lives in ring slot `b % slots` for all
devices at once. Arrays are laid out (slot, device): a window aggregate is the sum of a
few contiguous rows, with no per-device bookkeeping. When the fleet's clock enters a new
bucket the slot it reuses is zeroed for everyone, so a slot only ever holds data of a
bucket in the last `slots` buckets.

Two rings: a fine one (`resolution_ms`, for windows up to an hour or so) and an hourly
one (for hourly, 24-hour and NowCast aggregates). Late readings older than a ring are
dropped from that ring and counted in `late_dropped`. Beside the rings, the runs of
identical readings in a row of the fields a rule asks for (`ReadingRuns`): a frozen
sensor, at any cadence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from alert_rules.reading_runs import ReadingRuns
from alert_rules.registry import Registered

FloatArr = npt.NDArray[np.float64]
IntArr = npt.NDArray[np.int64]
BoolArr = npt.NDArray[np.bool_]

HOUR_MS = 3_600_000


def sorted_union(parts: list[IntArr], n: int) -> IntArr:
    """Sorted distinct row numbers (< n) of several arrays: `np.unique` for a few, a mask
    over the fleet for many (numpy's hash-based unique costs more than one pass there)."""
    count = sum(p.size for p in parts)
    if count <= 2048:
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    mask = np.zeros(n, bool)
    for p in parts:
        mask[p] = True
    return np.flatnonzero(mask)


@dataclass
class Running:
    """A window's integer totals per device, kept as readings land and buckets leave
    (instead of adding up every bucket of the window at each tick): counts, and the sums
    of a ring whose values are whole numbers (quality flags), so exactly what adding the
    buckets gives. The window is the `span` + 1 newest buckets up to the ring's head."""

    span: int
    cnt: npt.NDArray[np.int64]
    sum: FloatArr | None  # None: the ring's sums are not whole numbers (not kept)


@dataclass
class Ring:
    """Sum / count (and optionally min / max) per (bucket slot, device) for one field."""

    width_ms: int
    slots: int
    track_extremes: bool = False
    head: int = -1  # newest bucket id the fleet clock has entered (-1: none yet)
    past_version: int = 0  # bumped when a reading lands in a bucket older than `head`
    version: int = 0  # bumped on every change of the arrays (memoised window reductions)
    #: rows whose data a reading's clock move dropped (a reading far ahead of the tick)
    evicted: list[IntArr] = field(default_factory=list)
    sum: FloatArr = field(default_factory=lambda: np.zeros((0, 0)))
    cnt: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros((0, 0), np.int32))
    min: FloatArr = field(default_factory=lambda: np.zeros((0, 0)))
    max: FloatArr = field(default_factory=lambda: np.zeros((0, 0)))
    #: values are whole numbers (0/1 quality flags): window sums are kept running too
    whole_sums: bool = False
    #: running window totals by span (`window_totals`), built on first use
    running: dict[int, Running] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sum = np.zeros((self.slots, 0))
        self.cnt = np.zeros((self.slots, 0), np.int32)
        self.min = np.zeros((self.slots, 0))
        self.max = np.zeros((self.slots, 0))

    def allocate(self, cap: int) -> None:
        extra = cap - self.sum.shape[1]
        if extra <= 0:
            return
        self.sum = np.hstack([self.sum, np.zeros((self.slots, extra))])
        self.cnt = np.hstack([self.cnt, np.zeros((self.slots, extra), np.int32)])
        if self.track_extremes:
            self.min = np.hstack([self.min, np.full((self.slots, extra), np.inf)])
            self.max = np.hstack([self.max, np.full((self.slots, extra), -np.inf)])
        for w in self.running.values():
            w.cnt = np.r_[w.cnt, np.zeros(extra, np.int64)]
            if w.sum is not None:
                w.sum = np.r_[w.sum, np.zeros(extra)]

    def advance(self, bucket: int, record: bool = False) -> None:
        """Move the clock to `bucket`, zeroing the slots of buckets it enters (with
        `record`, the rows that had data there are kept in `evicted`)."""
        if bucket <= self.head:
            return
        first = max(self.head + 1, bucket - self.slots + 1)
        idx = np.arange(first, bucket + 1) % self.slots
        for w in self.running.values():
            # buckets that leave the window (still held: slots > span + 1)
            gone = np.arange(max(self.head - w.span, 0), min(bucket - w.span, self.head + 1))
            for s in (gone % self.slots).tolist():
                w.cnt -= self.cnt[s]
                if w.sum is not None:
                    w.sum -= self.sum[s]
        if record and self.cnt.shape[1]:
            held = np.flatnonzero((self.cnt[idx] != 0).any(axis=0))
            if held.size:
                self.evicted.append(held)
        self.sum[idx] = 0.0
        self.cnt[idx] = 0
        if self.track_extremes:
            self.min[idx] = np.inf
            self.max[idx] = -np.inf
        self.head = bucket
        self.version += 1

    def add(self, rows: IntArr, buckets: IntArr, v: FloatArr) -> int:
        """Fold readings in; returns how many were too old for the ring."""
        if buckets.size:
            self.advance(int(buckets.max()), record=True)
        keep = (buckets > self.head - self.slots) & ~np.isnan(v)
        late = int(((buckets <= self.head - self.slots) & ~np.isnan(v)).sum())
        if (buckets[keep] < self.head).any():
            self.past_version += 1
        r, s, x = rows[keep], buckets[keep] % self.slots, v[keep]
        self.version += 1
        for w in self.running.values():
            inside = buckets[keep] >= self.head - w.span
            np.add.at(w.cnt, r[inside], 1)
            if w.sum is not None:
                np.add.at(w.sum, r[inside], x[inside])
        np.add.at(self.sum, (s, r), x)
        np.add.at(self.cnt, (s, r), 1)
        if self.track_extremes:
            np.minimum.at(self.min, (s, r), x)
            np.maximum.at(self.max, (s, r), x)
        return late

    def seed_from(self, src: Ring, rows: IntArr, src_rows: IntArr, upto: int) -> None:
        """A fresh ring's clock set to bucket `upto`, holding what `src` (a ring of the
        same width and slots) still holds of these rows for buckets up to `upto`."""
        lo = max(src.head - src.slots + 1, upto - self.slots + 1, 0)
        hi = min(upto, src.head)
        if lo <= hi and rows.size:
            s = np.arange(lo, hi + 1) % self.slots
            mine, theirs = np.ix_(s, rows), np.ix_(s, src_rows)
            self.sum[mine] = src.sum[theirs]
            self.cnt[mine] = src.cnt[theirs]
            if self.track_extremes:
                self.min[mine] = src.min[theirs]
                self.max[mine] = src.max[theirs]
        self.head = max(self.head, upto)
        self.version += 1
        self.running.clear()

    def clear_rows(self, rows: IntArr) -> None:
        """Empty these devices' columns in every slot."""
        self.sum[:, rows] = 0.0
        self.cnt[:, rows] = 0
        if self.track_extremes:
            self.min[:, rows] = np.inf
            self.max[:, rows] = -np.inf
        for w in self.running.values():
            w.cnt[rows] = 0
            if w.sum is not None:
                w.sum[rows] = 0.0
        self.past_version += 1  # hourly memos keyed on it must recompute
        self.version += 1

    def window_totals(self, first_bucket: int, last_bucket: int, n: int
                      ) -> tuple[npt.NDArray[np.int64], FloatArr | None] | None:
        """(count, sum if kept) per device over buckets first..last, from the running
        totals when the window ends at the head (the tick's window); None otherwise (the
        caller adds the buckets up). Both are the same integers adding up gives."""
        span = last_bucket - first_bucket
        if last_bucket != self.head or first_bucket < 0 or span < 0 \
                or first_bucket <= self.head - self.slots:
            return None
        w = self.running.get(span)
        if w is None:
            cnt = self.reduce(self.cnt, first_bucket, last_bucket, self.cnt.shape[1])
            total = (self.reduce(self.sum, first_bucket, last_bucket, self.sum.shape[1])
                     if self.whole_sums else None)
            if cnt is None:
                return None
            w = self.running[span] = Running(span, cnt.astype(np.int64), total)
        return w.cnt[:n], None if w.sum is None else w.sum[:n]

    def forget_running(self) -> None:
        """The arrays were written from outside (a seed): rebuild running totals."""
        self.running.clear()

    def reduce(self, arr: npt.NDArray[Any], first_bucket: int, last_bucket: int, n: int,
               op: Any = np.add, rows: IntArr | None = None) -> npt.NDArray[Any] | None:
        """op-reduce rows of buckets first..last over the first n devices, or over
        `rows` only (None if the ring holds none of them). Contiguous slices for the
        whole fleet, so no (window × devices) copy."""
        lo = max(first_bucket, self.head - self.slots + 1, 0)
        if lo > last_bucket:
            return None
        a, b = lo % self.slots, last_bucket % self.slots

        def part(block: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return _reduce_rows(op, block[:, :n] if rows is None else block[:, rows],
                                rows is not None)

        if a <= b:
            return part(arr[a:b + 1])
        return op(part(arr[a:]), part(arr[:b + 1]))  # type: ignore[no-any-return]


def _reduce_rows(op: Any, block: npt.NDArray[Any], by_row: bool = False) -> npt.NDArray[Any]:
    """op over the rows of a (buckets × devices) block, bucket after bucket. Integer
    counts are added row by row in place: numpy's int32 `add.reduce` along axis 0 is
    about 4× slower than that. Floats over the whole fleet use `reduce`, which adds
    row after row too; a subset (`by_row`) is added explicitly in that order, so a
    device's sum is the same double either way."""
    if (block.dtype.kind == "i" and op is np.add) or by_row:
        out: npt.NDArray[Any] = block[0].copy()
        for row in block[1:]:
            op(out, row, out=out)
        return out
    result: npt.NDArray[Any] = op.reduce(block, axis=0)
    return result


@dataclass
class FleetState:
    """Per-device state the rules read. Rows are added as devices appear and never move,
    so rule state arrays are indexed by the same row.
    """

    fields: tuple[str, ...]
    resolution_ms: int = 60_000
    fine_slots: int = 16
    hour_slots: int = 0
    extremes: tuple[str, ...] = ()  # fields whose min/max per bucket are kept (flatline)
    #: fields whose identical readings in a row are counted (flatline, spatial)
    run_fields: tuple[str, ...] = ()
    devices: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    cap: int = 0
    latest_v: dict[str, FloatArr] = field(default_factory=dict)
    latest_ts: dict[str, IntArr] = field(default_factory=dict)
    prev_v: dict[str, FloatArr] = field(default_factory=dict)
    prev_ts: dict[str, IntArr] = field(default_factory=dict)
    last_ts: IntArr = field(default_factory=lambda: np.zeros(0, np.int64))
    first_seen_ms: IntArr = field(default_factory=lambda: np.zeros(0, np.int64))
    fine: dict[str, Ring] = field(default_factory=dict)
    runs: dict[str, ReadingRuns] = field(default_factory=dict)
    hourly: dict[str, Ring] = field(default_factory=dict)
    flagged: Ring | None = None  # per bucket: readings with any quality flag (sum) / all (cnt)
    late_dropped: int = 0
    bad_values: int = 0  # non-finite values given to ingest (treated as missing)
    registry: dict[str, Registered] = field(default_factory=dict)
    #: a number per row derived from its registry entry (`per_device`): key → (how, values)
    derived: dict[str, tuple[Callable[[Registered | None], float], FloatArr]] = field(
        default_factory=dict)
    layout: dict[str, Any] = field(default_factory=dict)  # derived from the registry
    #: window reductions of this tick, shared by rules reading the same window (a 10-minute
    #: mean is read by the threshold and the spatial rule): key → (ring version, result)
    memo: dict[tuple[object, ...], tuple[tuple[int, ...], Any]] = field(default_factory=dict)
    #: rows whose data changed since the engine last took them (`take_changed`); all of
    #: them after a restore or a registry change
    changed: list[IntArr] = field(default_factory=list)
    changed_all: bool = True
    changed_count: int = 0  # row numbers held in `changed` (with repeats)
    unseen: bool = False  # some rows wait for the next tick to start their silence

    def __post_init__(self) -> None:
        for f in self.fields:
            self.fine[f] = Ring(self.resolution_ms, self.fine_slots, f in self.extremes)
            if self.hour_slots:
                self.hourly[f] = Ring(HOUR_MS, self.hour_slots)
            for d in (self.latest_v, self.prev_v):
                d[f] = np.zeros(0)
            for t in (self.latest_ts, self.prev_ts):
                t[f] = np.zeros(0, np.int64)
        self.flagged = Ring(self.resolution_ms, self.fine_slots, whole_sums=True)
        self.runs = {f: ReadingRuns() for f in self.run_fields}

    @property
    def size(self) -> int:
        return len(self.devices)

    def rings(self) -> list[Ring]:
        out = [*self.fine.values(), *self.hourly.values()]
        if self.flagged is not None:
            out.append(self.flagged)
        return out

    def per_device(self, key: str, of: Callable[[Registered | None], float]) -> FloatArr:
        """`of(registry entry)` for every row (None: not registered), kept per key and
        brought up to date row by row: new rows when the fleet grows, the rows whose
        entry changed at a registry reload (`registry_changed`), never a walk of the
        fleet on a tick after the first."""
        n = self.size
        hit = self.derived.get(key)
        have = hit[1] if hit is not None else np.zeros(0)
        if have.size < n:
            reg = self.registry
            grown = np.empty(n)
            grown[:have.size] = have
            grown[have.size:] = np.fromiter(
                (of(reg.get(d)) for d in self.devices[have.size:n]), np.float64, n - have.size)
            self.derived[key] = (of, grown)
            return grown
        return have

    def registry_changed(self, devices: Sequence[str]) -> None:
        """These devices' registry entries changed (added, edited or removed): their rows'
        derived numbers are worked out again."""
        known = [d for d in devices if d in self.index]
        if not known or not self.derived:
            return
        rows = np.fromiter((self.index[d] for d in known), np.int64, len(known))
        entries = [self.registry.get(d) for d in known]
        for key, (of, values) in self.derived.items():
            inside = rows < values.size  # rows past it are worked out when first asked
            values[rows[inside]] = np.fromiter(
                (of(e) for e, ok in zip(entries, inside.tolist(), strict=True) if ok),
                np.float64, int(inside.sum()))
            self.derived[key] = (of, values)

    def rows_for(self, devices: list[str]) -> IntArr:
        """Row of each device, adding rows for new ones (capacity grows by doubling)."""
        index = self.index
        new = [d for d in dict.fromkeys(devices) if d not in index]
        if new:
            self.add_rows(new)
        return np.fromiter(map(index.__getitem__, devices), np.int64, len(devices))

    def add_rows(self, new: list[str]) -> None:
        """Rows for devices that have none, each id once (an engine built with its
        registry: 100,000 rows without a look-up each)."""
        start = len(self.devices)
        self.index.update(zip(new, range(start, start + len(new)), strict=True))
        self.devices += new
        self._grow(len(self.devices))
        self.mark(np.arange(start, len(self.devices)))
        self.unseen = True

    def _grow(self, n: int) -> None:
        if n <= self.cap:
            return
        cap = max(n, 2 * self.cap, 16)
        extra = cap - self.cap

        def more(a: npt.NDArray[np.generic], fill: float) -> npt.NDArray[np.generic]:
            return np.concatenate([a, np.full(extra, fill, a.dtype)])

        for f in self.fields:
            self.latest_v[f] = more(self.latest_v[f], np.nan)  # type: ignore[assignment]
            self.prev_v[f] = more(self.prev_v[f], np.nan)  # type: ignore[assignment]
            self.latest_ts[f] = more(self.latest_ts[f], 0)  # type: ignore[assignment]
            self.prev_ts[f] = more(self.prev_ts[f], 0)  # type: ignore[assignment]
        self.last_ts = more(self.last_ts, 0)  # type: ignore[assignment]
        self.first_seen_ms = more(self.first_seen_ms, -1)  # type: ignore[assignment]
        for ring in self.rings():
            ring.allocate(cap)
        self.cap = cap

    def ingest(self, rows: IntArr, ts: IntArr, values: dict[str, FloatArr],
               flagged: BoolArr | None = None) -> None:
        """Fold readings (any order, several per device) in, vectorized."""
        if rows.size == 0:
            return
        order = np.lexsort((ts, rows))
        rows, ts = rows[order], ts[order]
        fb = ts // self.resolution_ms
        for f in self.fields:
            v = values[f][order]
            self.late_dropped += self.fine[f].add(rows, fb, v)
            if self.hour_slots:
                self.hourly[f].add(rows, ts // HOUR_MS, v)
            self._update_latest(f, rows, ts, v)
            if f in self.runs:
                self.runs[f].feed(rows, v, ts, in_order=True)
        if self.flagged is not None:
            fl = (np.zeros(rows.size) if flagged is None
                  else np.asarray(flagged, np.float64)[order])
            self.flagged.add(rows, fb, fl)
        np.maximum.at(self.last_ts, rows, ts)
        self.mark(rows)
        for ring in self.rings():
            self.changed.extend(ring.evicted)
            ring.evicted.clear()

    def seed_latest(self, src: FleetState, rows: IntArr, src_rows: IntArr,
                    upto_ms: int | IntArr) -> None:
        """These rows' latest and previous values, when they were last heard and first
        seen, as `src` knew its rows up to `upto_ms` (one time, or one per row); their
        runs of identical readings as `src` has them now."""
        for f in self.fields:
            for v, t, sv, st in ((self.latest_v, self.latest_ts, src.latest_v, src.latest_ts),
                                 (self.prev_v, self.prev_ts, src.prev_v, src.prev_ts)):
                before = st[f][src_rows] <= upto_ms
                v[f][rows] = np.where(before, sv[f][src_rows], np.nan)
                t[f][rows] = np.where(before, st[f][src_rows], 0)
        last = src.last_ts[src_rows]
        self.last_ts[rows] = np.where(last <= upto_ms, last, 0)
        self.first_seen_ms[rows] = src.first_seen_ms[src_rows]
        # runs as they stand: a run is not wound back, and readings no newer than its
        # newest leave it as it is
        for f, runs in self.runs.items():
            runs.copy_from(rows, src.runs[f], src_rows)

    def seed_rows(self, src: FleetState, rows: IntArr, src_rows: IntArr, upto_ms: int) -> None:
        """These rows as `src` knew its rows up to `upto_ms` (a fleet of the same layout,
        fresh): windows, latest values and when they were last heard."""
        self.seed_latest(src, rows, src_rows, upto_ms)
        for mine, theirs in zip(self.rings(), src.rings(), strict=True):
            width = mine.width_ms
            mine.seed_from(theirs, rows, src_rows, upto_ms // width)
        self.mark_all()  # a seeded ring's clock moved: every window may differ
        self.unseen = True

    def clear_rows(self, rows: IntArr) -> None:
        """Empty these rows, as if their devices had never reported (a hand-over moved
        them elsewhere). Memoised hourly aggregates are invalidated."""
        rows = rows[rows < self.size]
        if rows.size == 0:
            return
        for f in self.fields:
            self.latest_v[f][rows] = np.nan
            self.prev_v[f][rows] = np.nan
            self.latest_ts[f][rows] = 0
            self.prev_ts[f][rows] = 0
        self.last_ts[rows] = 0
        self.first_seen_ms[rows] = -1
        for ring in self.rings():
            ring.clear_rows(rows)
        for runs in self.runs.values():
            runs.clear(rows)
        self.mark(rows)
        self.unseen = True

    # ---- what changed since the last tick (a tick judges only those rows, see Engine) ----

    def mark(self, rows: IntArr) -> None:
        """These rows' data or alert state changed: the next tick judges them."""
        if rows.size and not self.changed_all:
            self.changed.append(rows)
            self.changed_count += rows.size
            if self.changed_count > max(self.size, 1024):
                self.mark_all()  # keep no more than about a fleet's worth of row numbers

    def mark_all(self) -> None:
        self.changed_all = True
        self.changed.clear()
        self.changed_count = 0

    def take_changed(self, limit: int) -> IntArr | None:
        """Rows changed since the last call (sorted, unique), or None when every row is
        to be judged: after `mark_all`, or when more than `limit` rows changed (judging
        the whole fleet is then cheaper than picking rows)."""
        parts, everything, count = self.changed, self.changed_all, self.changed_count
        self.changed, self.changed_all, self.changed_count = [], False, 0
        if everything or count > limit:
            return None
        if not parts:
            return np.zeros(0, np.int64)
        rows = sorted_union(parts, self.size)
        return None if rows.size > limit else rows

    def _update_latest(self, f: str, rows: IntArr, ts: IntArr, v: FloatArr) -> None:
        """Latest and previous value per device, from readings sorted by (row, ts)."""
        ok = ~np.isnan(v)
        rows, ts, v = rows[ok], ts[ok], v[ok]
        if rows.size == 0:
            return
        last = np.r_[np.flatnonzero(np.diff(rows)), rows.size - 1]
        r = rows[last]
        newer = ts[last] >= self.latest_ts[f][r]
        first = np.r_[0, last[:-1] + 1]
        has_two = last > first
        # previous: the batch's second-newest reading, or the stored latest
        pv = np.where(has_two, v[np.maximum(last - 1, 0)], self.latest_v[f][r])
        pt = np.where(has_two, ts[np.maximum(last - 1, 0)], self.latest_ts[f][r])
        r, last, pv, pt = r[newer], last[newer], pv[newer], pt[newer]
        self.prev_v[f][r] = pv
        self.prev_ts[f][r] = pt
        self.latest_v[f][r] = v[last]
        self.latest_ts[f][r] = ts[last]

    def advance(self, now_ms: int) -> None:
        """Enter the buckets of `now_ms` (the tick's clock)."""
        fb = now_ms // self.resolution_ms
        for ring in self.rings():
            ring.advance(fb if ring.width_ms == self.resolution_ms else now_ms // HOUR_MS)
        if self.unseen:  # only after new or cleared rows: no scan of the fleet each tick
            n = self.size
            unseen = self.first_seen_ms[:n] < 0
            self.first_seen_ms[:n][unseen] = now_ms
            self.unseen = False

    # ---- aggregates the rules read (each a handful of whole-fleet array operations) ----

    def latest(self, f: str, now_ms: int | None = None, max_age_ms: int = 0,
               rows: IntArr | None = None) -> FloatArr:
        """Newest value per device (of `rows` only, if given); NaN once older than
        `max_age_ms`."""
        sel = slice(0, self.size) if rows is None else rows
        v = self.latest_v[f][sel]
        if now_ms is None or max_age_ms <= 0:
            return v
        return np.where(now_ms - self.latest_ts[f][sel] < max_age_ms, v, np.nan)

    def window_buckets(self, now_ms: int, span_ms: int) -> tuple[int, int]:
        """Fine buckets of a window: from the one holding (bucket start of now − span)."""
        w = self.resolution_ms
        last = now_ms // w
        return last - -(-span_ms // w), last

    def _memo(self, ring: Ring, kind: str, first: int, last: int, compute: Any) -> Any:
        """A window reduction of `ring`, reused while the ring and the window are
        unchanged (one entry per ring, kind and window length); the arrays are read-only,
        since several rules share them."""
        key = (id(ring), kind, last - first)
        stamp = (ring.version, first, last, self.size)
        hit = self.memo.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        out = compute()
        for a in out if isinstance(out, tuple) else (out,):
            a.flags.writeable = False
        self.memo[key] = (stamp, out)
        return out

    def _window_count(self, ring: Ring, first: int, last: int,
                      rows: IntArr | None = None) -> FloatArr:
        def compute() -> FloatArr:
            k = self.size if rows is None else rows.size
            kept = ring.window_totals(first, last, self.size)
            if kept is not None:
                return (kept[0] if rows is None else kept[0][rows]).astype(np.float64)
            count = ring.reduce(ring.cnt, first, last, self.size, rows=rows)
            return np.zeros(k) if count is None else count.astype(np.float64)

        if rows is not None:
            return compute()
        out: FloatArr = self._memo(ring, "count", first, last, compute)
        return out

    def window_sum_count(self, ring: Ring, now_ms: int, span_ms: int,
                         rows: IntArr | None = None) -> tuple[FloatArr, FloatArr]:
        """(sum, number) of readings in the window per device (of `rows` only)."""
        first, last = self.window_buckets(now_ms, span_ms)

        def compute() -> FloatArr:
            k = self.size if rows is None else rows.size
            kept = ring.window_totals(first, last, self.size) if ring.whole_sums else None
            if kept is not None and kept[1] is not None:
                return kept[1].copy() if rows is None else kept[1][rows]
            total = ring.reduce(ring.sum, first, last, self.size, rows=rows)
            return np.zeros(k) if total is None else total

        total: FloatArr = (compute() if rows is not None
                           else self._memo(ring, "sum", first, last, compute))
        return total, self._window_count(ring, first, last, rows)

    def window_mean(self, f: str, now_ms: int, span_ms: int,
                    rows: IntArr | None = None) -> FloatArr:
        """Mean of readings from the bucket start of (now − span) to now; NaN if none."""
        ring = self.fine[f]
        first, last = self.window_buckets(now_ms, span_ms)

        def compute() -> FloatArr:
            total, count = self.window_sum_count(ring, now_ms, span_ms, rows)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean: FloatArr = np.where(count > 0, total / count, np.nan)
            return mean

        if rows is not None:
            return compute()
        out: FloatArr = self._memo(ring, "mean", first, last, compute)
        return out

    def window_level(self, f: str, now_ms: int, span_ms: int, pair_ms: int,
                     rows: IntArr) -> FloatArr:
        """What two or more readings of each of `rows` agree on: the window's mean without
        its highest reading; with one reading in the window, the lower of it and the
        device's previous reading, if that is no more than `pair_ms` older; NaN
        otherwise. One reading, however high, does not carry it. Never above the window
        mean (the field's ring keeps extremes)."""
        ring = self.fine[f]
        first, last = self.window_buckets(now_ms, span_ms)
        # the fleet's window sums are shared with the mean (memoised); the max of `rows`
        total, count = (a[rows] for a in self.window_sum_count(ring, now_ms, span_ms))
        top = ring.reduce(ring.max, first, last, self.size, np.maximum, rows)
        hi = np.full(rows.size, -np.inf) if top is None else top
        prev, prev_ts = self.prev_v[f][rows], self.prev_ts[f][rows]
        paired = (self.latest_ts[f][rows] - prev_ts <= pair_ms) & (prev_ts > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            trimmed = (total - hi) / (count - 1)
            pair = np.where(paired, np.minimum(total, prev), np.nan)
        level: FloatArr = np.where(count >= 2, trimmed, np.where(count == 1, pair, np.nan))
        return level

    def window_count(self, f: str, now_ms: int, span_ms: int,
                     rows: IntArr | None = None) -> FloatArr:
        return self._window_count(self.fine[f], *self.window_buckets(now_ms, span_ms), rows)

    def window_range(self, f: str, now_ms: int, span_ms: int,
                     rows: IntArr | None = None) -> tuple[FloatArr, FloatArr]:
        """(min, max) over the window; +inf/-inf where empty."""
        ring = self.fine[f]
        first, last = self.window_buckets(now_ms, span_ms)

        def compute() -> tuple[FloatArr, FloatArr]:
            k = self.size if rows is None else rows.size
            lo = ring.reduce(ring.min, first, last, self.size, np.minimum, rows)
            hi = ring.reduce(ring.max, first, last, self.size, np.maximum, rows)
            if lo is None or hi is None:
                return np.full(k, np.inf), np.full(k, -np.inf)
            return lo, hi

        if rows is not None:
            return compute()
        out: tuple[FloatArr, FloatArr] = self._memo(ring, "range", first, last, compute)
        return out

    def flagged_fraction(self, now_ms: int, span_ms: int, rows: IntArr | None = None
                         ) -> tuple[FloatArr, FloatArr]:
        """(fraction of readings with quality flags, number of readings) over the window."""
        assert self.flagged is not None
        bad, total = self.window_sum_count(self.flagged, now_ms, span_ms, rows)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, bad / total, np.nan), total

    def hourly_key(self, f: str, now_ms: int) -> tuple[object, ...]:
        """Changes whenever the complete hours of `f` may have changed."""
        ring = self.hourly[f]
        return (now_ms // HOUR_MS, ring.head, ring.past_version, self.size)

    def hourly_means(self, f: str, now_ms: int, hours: int) -> FloatArr:
        """(hours, devices) means of the last `hours` complete clock hours, newest first."""
        ring = self.hourly[f]
        n = self.size
        cur = now_ms // HOUR_MS
        # complete hours only change when the hour turns or a late reading arrives: memo
        key = ("hourly", f, hours, cur, ring.head, ring.past_version, n)
        memo = f"hourly_memo:{f}:{hours}"
        hit = self.layout.get(memo)
        if hit is not None and hit[0] == key:
            return hit[1]  # type: ignore[no-any-return]
        out = np.full((hours, n), np.nan)
        b = cur - 1 - np.arange(hours)
        held = (b >= 0) & (b > ring.head - ring.slots)
        s = b[held] % ring.slots
        c = ring.cnt[s, :n]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[held] = np.where(c > 0, ring.sum[s, :n] / c, np.nan)
        self.layout[memo] = (key, out)
        return out
