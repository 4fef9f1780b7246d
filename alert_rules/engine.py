"""The rule engine: ingest readings into the fleet state, tick every rule over all devices.

No I/O and no wall clock: callers pass `now_ms`, so a tick is reproducible. The engine
sizes the fleet state from what its rules need (fields, window lengths, hourly history).
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
import zlib
from collections.abc import Collection, Mapping, Sequence
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from airgrid.interpreter_lock import sharing
from alert_rules import late_replay
from alert_rules.lifecycle import NEVER, NONE
from alert_rules.neighbour_layout import NeighbourLayout, install_layouts, prepare_layouts
from alert_rules.registry import Registered
from alert_rules.rule_base import RuleBase
from alert_rules.saved_state import SnapshotError, checked
from alert_rules.state import HOUR_MS, BoolArr, FleetState, FloatArr, IntArr, Ring, sorted_union
from alert_rules.transitions import Transition

SNAPSHOT_VERSION = 1


#: a tick picks the changed rows out when at most this share of the fleet changed;
#: beyond it, judging the whole fleet with contiguous arrays is cheaper
SUBSET_SHARE = 0.25


@dataclasses.dataclass
class Schedule:
    """When a rule was last judged whole, and when its next row falls due."""

    bucket: int = -1  # fine bucket / hour of the tick that last judged it whole
    hour: int = -1
    due_ms: int | None = None  # earliest time a row's result changes by time alone
    last_ms: int = 0  # the tick before (every row due by then has been judged)


@dataclasses.dataclass(frozen=True)
class RegistryChange:
    """A reloaded registry compared with the one in force (`Engine.prepare_registry`)."""

    base: Mapping[str, Registered]  # the registry it was compared with
    registry: dict[str, Registered]
    added: list[str]
    removed: list[str]
    changed: list[str]  # registered before and after, with another entry
    moved: bool  # a position or township is new, changed or gone: neighbours change
    layouts: Mapping[str, NeighbourLayout]  # for the rows after the change


def _placed(d: Registered) -> bool:
    return not (np.isnan(d.lat) or np.isnan(d.lon)) or bool(d.township)


def _same_place(a: Registered, b: Registered) -> bool:
    """Same position (NaN equal to NaN) and township: the neighbour layouts still hold."""
    return (a.township == b.township
            and (a.lat == b.lat or (np.isnan(a.lat) and np.isnan(b.lat)))
            and (a.lon == b.lon or (np.isnan(a.lon) and np.isnan(b.lon))))


#: a registry: its entries, or a mapping of device id to entry (taken as it is, copied)
Entries = Sequence[Registered] | Mapping[str, Registered]


def by_id(registry: Entries) -> dict[str, Registered]:
    """Device id → entry (a mapping is copied: at 100,000 devices a copy is a few ms, a
    dict built from the entries 0.15 s, each entry's id read from memory)."""
    return dict(registry) if isinstance(registry, Mapping) else {d.id: d for d in registry}


def _same_entry(a: Registered, b: Registered) -> bool:
    """What the engine reads of both entries is the same (an entry may carry more)."""
    return (a.id == b.id and a.grid == b.grid and a.link == b.link and a.name == b.name
            and _same_place(a, b))


def _rings_of(f: FleetState) -> dict[str, Ring]:
    """The fleet's rings by their names in a snapshot."""
    rings = {f"fine/{k}": r for k, r in f.fine.items()}
    rings.update({f"hourly/{k}": r for k, r in f.hourly.items()})
    if f.flagged is not None:
        rings["flagged"] = f.flagged
    return rings


def _read_snapshot(blob: bytes) -> tuple[dict[str, npt.NDArray[np.generic]], dict[str, Any]]:
    """Every array of the snapshot, read now (a damaged member fails here, not halfway
    through a restore), and its metadata."""
    try:
        data = np.load(io.BytesIO(blob), allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an archive")
        with data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(bytes(arrays.pop("meta")).decode())
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile, zlib.error,
            MemoryError, RecursionError) as exc:
        # a damaged header can claim an array of any size, a damaged metadata any depth
        raise SnapshotError(f"not an engine snapshot: {exc!r}") from exc
    if not isinstance(meta, dict):
        raise SnapshotError("not an engine snapshot: its metadata is no object")
    return arrays, meta


def _checked_meta(meta: dict[str, Any]) -> tuple[list[str], dict[str, Any], int]:
    """The snapshot's devices (distinct names), ring heads and late-dropped count."""
    devices = meta.get("devices")
    if (not isinstance(devices, list) or not all(isinstance(d, str) for d in devices)
            or len(set(devices)) != len(devices)):
        raise SnapshotError("snapshot metadata: 'devices' is not a list of distinct names")
    heads = meta.get("heads")
    if not isinstance(heads, dict):
        raise SnapshotError("snapshot metadata: 'heads' is not an object")
    late = meta.get("late_dropped")
    if type(late) is not int or late < 0:
        raise SnapshotError("snapshot metadata: 'late_dropped' is not a count")
    return devices, heads, late


def _under(arrays: Mapping[str, npt.NDArray[np.generic]], prefix: str
           ) -> dict[str, npt.NDArray[np.generic]]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def write_snapshot(file: IO[bytes], arrays: dict[str, npt.NDArray[np.generic]]) -> None:
    """Serialize `Engine.snapshot_arrays` to a binary file (numpy .npz, no pickle)."""
    np.savez(file, allow_pickle=False, **arrays)


def resolution_for(windows_ms: Sequence[int]) -> int:
    """Fine bucket width: a minute, or the shortest window if shorter (demo rules)."""
    short = [w for w in windows_ms if w > 0]
    return max(1, min([60_000, *short]))


class Engine:
    def __init__(self, rules: Sequence[RuleBase], *,
                 registry: Entries = (), resolution_ms: int | None = None) -> None:
        self.rules = list(rules)
        fields = tuple(sorted({f for r in self.rules for f in r.fields()})) or ("pm2_5",)
        windows = [w for r in self.rules for w in r.fine_windows_ms()]
        res = resolution_ms or resolution_for(windows)
        slots = max([-(-w // res) for w in windows] + [1]) + 2
        self.fleet = FleetState(
            fields=fields, resolution_ms=res, fine_slots=slots,
            hour_slots=max([r.hours_needed() for r in self.rules] + [0]),
            extremes=tuple(sorted({f for r in self.rules for f in r.extremes()})),
            run_fields=tuple(sorted({f for r in self.rules for f in r.runs_of()})),
            registry=by_id(registry),
        )
        if registry:
            self.fleet.add_rows(list(self.fleet.registry))
        self.away: set[str] = set()  # forgotten devices (moved to another collector)
        # their rows, for the tick (thousands in a province collector given the whole
        # registry): rebuilt only after `away` or the fleet changed
        self._away_rows: tuple[FleetState, IntArr] | None = None
        #: judge only devices heard here (`hold_heard_only`): a province collector
        self.heard_only = False
        #: snapshot rows of devices not in the registry at `restore` (see `set_registry`)
        self._restored_unlisted: list[str] = []
        self.last_tick_ms = 0  # the newest time the fleet has been judged at
        self.schedules = [Schedule() for _ in self.rules]
        self.subset_share = SUBSET_SHARE
        #: rows judged by the last tick, per rule name (None: the whole fleet)
        self.judged: dict[str, IntArr | None] = {}

    def ingest(self, devices: list[str], ts_ms: Sequence[int],
               values: Mapping[str, Sequence[float | None]],
               flagged: Sequence[bool] | None = None) -> None:
        """Readings as columns: device id, timestamp, one sequence per field and
        optionally whether each reading carries quality flags."""
        if not devices:
            return
        n = len(devices)
        if len(ts_ms) != n or any(len(v) != n for v in values.values()) or (
                flagged is not None and len(flagged) != n):
            raise ValueError(f"ingest: columns of different lengths ({n} devices, "
                             f"{len(ts_ms)} timestamps, "
                             f"{ {k: len(v) for k, v in values.items()} })")
        rows = self.fleet.rows_for(devices)
        if self.away:
            before = len(self.away)
            self.away.difference_update(devices)
            if len(self.away) != before:
                self._away_rows = None
        cols: dict[str, FloatArr] = {}
        for f in self.fleet.fields:
            col = values.get(f)
            if col is None:
                cols[f] = np.full(n, np.nan)
            else:
                arr = (col.astype(np.float64) if isinstance(col, np.ndarray) else
                       np.array([np.nan if x is None else x for x in col], np.float64))
                # inf is no reading: counted, then treated as missing
                bad = np.isinf(arr)
                if bad.any():
                    self.fleet.bad_values += int(bad.sum())
                    arr[bad] = np.nan
                cols[f] = arr
        ts = np.asarray(ts_ms, np.int64)
        fl: BoolArr | None = None if flagged is None else np.asarray(flagged, bool)
        self.fleet.ingest(rows, ts, cols, fl)
        for rule in self.rules:
            rule.observe(self.fleet, rows, ts, cols)

    def prepare_registry(self, registry: Entries) -> RegistryChange:
        """Compare a reloaded registry with the one in force, without changing anything:
        safe on another thread (the registry in force is replaced, never changed), so a
        reload of 100,000 devices is worked out off the ingest thread and `set_registry`
        only applies it. An entry the caller kept from the last reload (the same object)
        is unchanged without a comparison."""
        old = self.fleet.registry
        new = by_id(registry)
        added: list[str] = []
        changed: list[str] = []
        moved = False
        for device_id, d in sharing(new.items(), 256):  # beside ingest
            was = old.get(device_id)
            if was is None:
                added.append(device_id)
                moved = moved or _placed(d)
            elif was is not d and not _same_entry(was, d):
                changed.append(device_id)
                moved = moved or not _same_place(was, d)
        removed = [d for d in old if d not in new]
        moved = moved or any(_placed(old[d]) for d in removed)
        # the neighbour layouts of the rows the fleet will have: reused where nothing
        # moved, searched again where something did (`install_layouts` checks the rows)
        f = self.fleet
        rows = [*f.devices, *(d for d in added if d not in f.index)]
        layouts = prepare_layouts(dict(f.layout), rows, new)
        return RegistryChange(old, new, added, removed, changed, moved, layouts)

    def set_registry(self, registry: Entries,
                     change: RegistryChange | None = None) -> tuple[list[str], list[str]]:
        """The registry was reloaded: new devices are judged from the next tick (deadman
        included, their silence counting from it), removed ones are forgotten (as after
        a hand-over: no deadman for a retired sensor), changed places and links are used
        from the next tick. `change`: `prepare_registry(registry)`, worked out earlier
        (on a parse thread); used if the registry in force is still the one it was
        compared with. Returns (added, removed) device ids."""
        f = self.fleet
        if change is None or change.base is not f.registry:
            change = self.prepare_registry(registry)
        new = change.registry
        old = f.registry
        added, removed = change.added, list(change.removed)
        # rows restored from a snapshot of devices neither registered nor ever heard here
        # (retired before a restart) are not expected either; only a restore makes them
        unlisted, self._restored_unlisted = self._restored_unlisted, []
        removed += [d for d in unlisted if d not in new and d not in old
                    and d not in self.away and f.last_ts[f.index[d]] == 0]
        f.registry = new
        f.registry_changed(change.changed + change.removed)
        if change.moved:
            f.mark_all()  # neighbours change with a place
        elif change.changed:
            f.mark(f.rows_for(change.changed))  # their township, grid or link is news
        if added:
            rows = f.rows_for(added)  # rows new to the fleet are marked there
            f.registry_changed(added)  # rows it had already (heard while unregistered)
            f.mark(rows)
            if self.heard_only:
                # held by whichever collector its readings reach: judged once it reports here
                self.away.update(d for d, r in zip(added, rows.tolist(), strict=True)
                                 if f.last_ts[r] == 0)
                self._away_rows = None
            else:
                self.away.difference_update(added)
                self._away_rows = None
                # a device that was forgotten before counts its silence from now again
                f.first_seen_ms[rows[f.last_ts[rows] == 0]] = -1
        # layouts prepared for these rows; else rebuilt when a rule asks (from the one
        # in use: reused if nothing moved)
        install_layouts(f, change.layouts)
        if removed:
            self.forget(removed)
        return added, removed

    # ---- hand-over: devices move between collectors (collector.handover) ----

    def blank(self, devices: Sequence[str] | None = None) -> Engine:
        """An engine with the same rules and no state (to replay history into); it knows
        the registry entries of `devices` (all when None) for labels and grace periods."""
        reg = self.fleet.registry
        keep = reg.values() if devices is None else [reg[d] for d in devices if d in reg]
        return Engine([r.blank() for r in self.rules],
                      registry=list(keep), resolution_ms=self.fleet.resolution_ms)

    def adopt(self, devices: list[str], src: Engine) -> None:
        """Take these devices' alert state from `src`, an engine with the same rules
        (e.g. `blank()` after replaying their history); their windows are not copied."""
        known = [d for d in devices if d in src.fleet.index]
        self.away.difference_update(known)
        self._away_rows = None
        rows = self.fleet.rows_for(known)
        src_rows = np.fromiter((src.fleet.index[d] for d in known), np.int64, len(known))
        for mine, theirs in zip(self.rules, src.rules, strict=True):
            mine.copy_rows(rows, theirs, src_rows)
        self.fleet.mark(rows)

    def hold_heard_only(self) -> int:
        """Judge only the devices this engine has readings of (a province collector: a
        registry device it never heard reports to another collector, whose deadman rule
        judges its silence; here it would be a false deadman alert). Those never heard
        are set away until they report here (`ingest` takes them back), now and at each
        registry reload. Returns how many were set away now."""
        self.heard_only = True
        f = self.fleet
        unheard = np.flatnonzero(f.last_ts[:f.size] == 0).tolist()
        before = len(self.away)
        self.away.update(f.devices[r] for r in unheard)
        self._away_rows = None
        rows = np.asarray(unheard, np.int64)
        for rule in self.rules:
            rule.clear_rows(rows)
        return len(self.away) - before

    def keep(self, devices: Sequence[str]) -> int:
        """Judge these devices here although this engine never heard them (a province
        collector keeps the deadman of the registered devices no collector heard:
        `collector.deadman_keeper`): taken out of `away`, so the deadman rule sees their
        silence, counted from the first tick that knew them. Returns how many were away."""
        known = [d for d in devices if d in self.fleet.index]
        before = len(self.away)
        self.away.difference_update(known)
        if len(self.away) != before:
            self._away_rows = None
        self.fleet.mark(np.fromiter((self.fleet.index[d] for d in known), np.int64, len(known)))
        return before - len(self.away)

    def settle_announced(self, devices: Sequence[str],
                         announced: Mapping[tuple[str, str], int], now_ms: int,
                         announcing: Collection[tuple[str, str]] = ()
                         ) -> list[Transition]:
        """After `adopt`: make the taken-over devices' alert states agree with what was
        announced for them (`announced`: (rule, device) → when the alert that is open on
        the bus fired, ms; an alert resolved since is not in it). A replay decides from
        readings alone, so it can end `firing` where no collector announced it (the old
        owner was still `pending` on late readings, or crashed before its `for` ran out)
        and not `firing` where one was announced. The first is made due at once, so the
        next tick announces it (if its condition still holds), unless the caller announces
        it itself (`announcing`); the second is taken over
        as firing, so its end is announced here and it does not fire twice. Returns the
        alerts now firing here that were announced before (to open them silently in an
        alert lifecycle). `announcing`: (rule, device) of unannounced firing alerts the
        caller announces itself (the hand-over, from the replay's own `firing`): they stay
        firing, so their end is judged here even if the condition is already over.
        Township alerts (spatial) are not a device's: left alone."""
        ids = list(dict.fromkeys(devices))
        rows = list(zip(ids, self.fleet.rows_for(ids).tolist(), strict=True))
        adopted: list[Transition] = []
        for rule in self.rules:
            if rule.kind == "spatial":
                continue
            cols = rule.columns
            cols.fit(self.fleet.size)
            for device, row in rows:
                fired_ms = announced.get((rule.name, device))
                if cols.firing[row] and fired_ms is None:
                    if (rule.name, device) in announcing:
                        continue
                    cols.firing[row] = False
                    cols.clear_since[row] = NONE
                    cols.pending_since[row] = 0  # due now: fires at the next tick
                elif fired_ms is not None:
                    if not cols.firing[row]:
                        cols.firing[row] = True
                        cols.clear_since[row] = NONE
                    cols.pending_since[row] = NONE
                    adopted.append(rule.transition(device, "firing", float("nan"),
                                                   fired_ms, self.fleet))
        self.fleet.mark(np.fromiter((r for _d, r in rows), np.int64, len(rows)))
        return adopted

    def forget(self, devices: list[str]) -> int:
        """Drop the windows and alert state of devices now judged elsewhere (their row
        stays, empty, so other rows never move) and judge them no more until they report
        here again (a deadman would otherwise fire for a device that merely moved);
        returns how many were known."""
        known = [d for d in devices if d in self.fleet.index]
        self.away.update(known)
        self._away_rows = None
        rows = np.fromiter((self.fleet.index[d] for d in known), np.int64, len(known))
        self.fleet.clear_rows(rows)
        for rule in self.rules:
            rule.clear_rows(rows)
        return int(rows.size)

    def replay_late(self, devices: Sequence[str], ts_ms: Sequence[int] | IntArr,
                    values: dict[str, Sequence[float | None]] | dict[str, FloatArr],
                    flagged: Sequence[bool] | BoolArr | None, now_ms: int,
                    late_after_ms: int = 0) -> list[Transition]:
        """Judge readings in their own time: a backlog that arrives after the ticks of its
        time (an agent's network outage) is replayed bucket by bucket, all its devices at
        once (`alert_rules.late_replay`), in a scratch engine seeded with each device's
        windows and alert states as they were before its backlog; each bucket is judged
        at its end, its transitions carry that time and `late_ms`, and the alert states
        it ends in are taken back, so the next live tick neither repeats nor misses them.
        Deadman, spatial and anomaly rules judge at arrival only.
        The readings still have to be `ingest`ed (this engine's windows take them then).
        A transition decided at a reading no more than `late_after_ms` old is not late."""
        n = len(devices)
        if n == 0:
            return []
        ts = np.asarray(ts_ms, np.int64)
        # None (a column as numpy converts it: NaN) is no reading
        cols = {f: np.array(values.get(f, [None] * n), np.float64) for f in self.fleet.fields}
        for c in cols.values():
            c[np.isinf(c)] = np.nan  # as `ingest` does: inf is no reading
        fl = np.zeros(n, bool) if flagged is None else np.asarray(flagged, bool)
        return late_replay.replay(self, devices, ts, cols, fl, now_ms, late_after_ms)

    def tick(self, now_ms: int) -> list[Transition]:
        """Judge the fleet at `now_ms`. Cost follows what changed: a rule that can judge
        some rows (`RuleBase.incremental`) judges only the rows that got readings or
        were cleared since the last tick and the rows whose result falls due by time
        alone (deadman silence, a value's maximum age, `for` and `keep_firing_for`
        timers: `RuleBase.due_ms`) and its candidates whose verdict rests on other
        devices (`RuleBase.hot_rows`); windowed rules are judged whole when the clock enters
        a new bucket or hour; the rest every tick. The transitions are the same as
        judging every rule over the whole fleet."""
        self.last_tick_ms = max(self.last_tick_ms, now_ms)
        f = self.fleet
        f.advance(now_ms)
        changed = f.take_changed(int(f.size * self.subset_share))
        bucket, hour = now_ms // f.resolution_ms, now_ms // HOUR_MS
        out: list[Transition] = []
        for rule, sched in zip(self.rules, self.schedules, strict=True):
            rows = self._rows_to_judge(rule, sched, changed, now_ms, bucket, hour)
            sched.last_ms = now_ms
            self.judged[rule.name] = rows
            if rows is None:
                out.extend(rule.evaluate(f, now_ms))
                sched.bucket, sched.hour, sched.due_ms = bucket, hour, None
            elif rows.size:
                out.extend(rule.judge(f, now_ms, rows))
                if sched.due_ms is not None:
                    due = rule.due_ms(f, now_ms, rows)
                    later = due[due > now_ms]
                    if later.size:
                        sched.due_ms = min(sched.due_ms, int(later.min()))
        if self.away:
            cached = self._away_rows
            if cached is None or cached[0] is not self.fleet:
                cached = self._away_rows = (self.fleet, np.fromiter(
                    (self.fleet.index[d] for d in self.away), np.int64, len(self.away)))
            rows = cached[1]
            for rule in self.rules:
                rule.clear_rows(rows)
            out = [t for t in out if t.subject not in self.away]
        return out

    def _rows_to_judge(self, rule: RuleBase, sched: Schedule, changed: IntArr | None,
                       now_ms: int, bucket: int, hour: int) -> IntArr | None:
        """The rows `rule` must judge at this tick (None: all of them)."""
        if not rule.judges_rows() or changed is None or sched.bucket < 0:
            return None
        if rule.windowed() and (bucket != sched.bucket or hour != sched.hour):
            return None
        f = self.fleet
        due_rows = np.zeros(0, np.int64)
        if sched.due_ms is None or now_ms >= sched.due_ms:
            # the next-due index: which rows fall due now, and when the next one does
            if rule.other_due_ms() <= now_ms:
                return None
            due = rule.due_ms(f, sched.last_ms)
            now_due = due <= now_ms
            due_rows = np.flatnonzero(now_due)
            later = due[~now_due]
            sched.due_ms = min(int(later.min()) if later.size else int(NEVER),
                               rule.other_due_ms())
        hot = rule.hot_rows(f, now_ms)
        rows = (sorted_union([changed, due_rows, hot], f.size) if due_rows.size or hot.size
                else changed)
        if rule.whole_fleet:
            return None if rows.size else rows
        return None if rows.size > f.size * self.subset_share else rows

    # ---- snapshot / restore: a restart or a hand-over keeps windows and alert states ----

    def _layout(self) -> dict[str, object]:
        f = self.fleet
        return {"fields": list(f.fields), "resolution_ms": f.resolution_ms,
                "fine_slots": f.fine_slots, "hour_slots": f.hour_slots,
                "extremes": list(f.extremes),
                "rules": [[r.name, r.kind] for r in self.rules]}

    def snapshot(self) -> bytes:
        """The whole engine state as bytes (numpy .npz, no pickle)."""
        buf = io.BytesIO()
        write_snapshot(buf, self.snapshot_arrays(copy=False))
        return buf.getvalue()

    def snapshot_arrays(self, copy: bool = True) -> dict[str, npt.NDArray[np.generic]]:
        """The whole engine state as named arrays, copied: the engine goes on while a
        background thread writes them (`write_snapshot`). Copying is one pass over the
        state's memory (about 1.9 kB a device with the default and spatial rules);
        `copy=False` gives views, for a caller that serializes before the engine moves."""
        f = self.fleet
        n = f.size
        arrays: dict[str, npt.NDArray[np.generic]] = {
            "last_ts": f.last_ts[:n], "first_seen_ms": f.first_seen_ms[:n]}
        for name in f.fields:
            arrays[f"latest_v/{name}"] = f.latest_v[name][:n]
            arrays[f"latest_ts/{name}"] = f.latest_ts[name][:n]
            arrays[f"prev_v/{name}"] = f.prev_v[name][:n]
            arrays[f"prev_ts/{name}"] = f.prev_ts[name][:n]
        heads: dict[str, int] = {}
        for key, ring in self._rings().items():
            heads[key] = ring.head
            arrays[f"{key}/sum"] = ring.sum[:, :n]
            arrays[f"{key}/cnt"] = ring.cnt[:, :n]
            if ring.track_extremes:
                arrays[f"{key}/min"] = ring.min[:, :n]
                arrays[f"{key}/max"] = ring.max[:, :n]
        for name, runs in f.runs.items():
            runs.fit(n)
            for k, v in runs.arrays().items():
                arrays[f"runs/{name}/{k}"] = v[:n]
        for rule in self.rules:
            for k, v in rule.state_arrays().items():
                arrays[f"rule/{rule.name}/{k}"] = v
        meta = {"version": SNAPSHOT_VERSION, "layout": self._layout(), "devices": f.devices,
                "heads": heads, "late_dropped": f.late_dropped}
        copied = {k: np.array(v, copy=True) for k, v in arrays.items()} if copy else arrays
        copied["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        return copied

    def _rings(self) -> dict[str, Ring]:
        return _rings_of(self.fleet)

    def restore(self, blob: bytes) -> None:
        """Load a snapshot taken by an engine with the same rules; devices of the
        registry not in the snapshot are kept. All or nothing: a snapshot that does not
        fit, or is damaged anywhere, raises `SnapshotError` and leaves the engine as it
        was."""
        arrays, meta = _read_snapshot(blob)
        if meta.get("version") != SNAPSHOT_VERSION or meta.get("layout") != self._layout():
            raise SnapshotError("snapshot was taken with other rules or fields")
        devices, heads, late_dropped = _checked_meta(meta)
        old = self.fleet
        f = FleetState(
            fields=old.fields, resolution_ms=old.resolution_ms, fine_slots=old.fine_slots,
            hour_slots=old.hour_slots, extremes=old.extremes, run_fields=old.run_fields,
            registry=old.registry)
        m = len(devices)
        f.rows_for(devices)  # snapshot rows first, in their order: rule arrays line up
        f.rows_for(list(f.registry))
        f.last_ts[:m] = checked(arrays, "last_ts", (m,), f.last_ts.dtype)
        f.first_seen_ms[:m] = checked(arrays, "first_seen_ms", (m,), f.first_seen_ms.dtype)
        for name in f.fields:
            for key, column in ((f"latest_v/{name}", f.latest_v[name]),
                                (f"latest_ts/{name}", f.latest_ts[name]),
                                (f"prev_v/{name}", f.prev_v[name]),
                                (f"prev_ts/{name}", f.prev_ts[name])):
                column[:m] = checked(arrays, key, (m,), column.dtype)
        for key, ring in _rings_of(f).items():
            head = heads.get(key)
            # the newest bucket id the ring has entered, -1 for none
            if type(head) is not int or not -1 <= head < 2**53:
                raise SnapshotError(f"snapshot metadata: no head in range for {key!r}")
            ring.head = head
            parts: list[tuple[str, npt.NDArray[np.generic]]] = [
                ("sum", ring.sum), ("cnt", ring.cnt)]
            if ring.track_extremes:
                parts += [("min", ring.min), ("max", ring.max)]
            for part, store in parts:
                store[:, :m] = checked(arrays, f"{key}/{part}", (store.shape[0], m),
                                       store.dtype)
        for name, runs in f.runs.items():
            # a snapshot taken before the fleet kept runs starts them afresh
            prefix = f"runs/{name}/"
            saved = _under(arrays, prefix)
            if saved:
                try:
                    runs.load(saved)
                except SnapshotError as exc:
                    raise SnapshotError(f"under {prefix!r}: {exc}") from exc
        f.late_dropped = late_dropped
        self._load_rules(arrays)
        # rows of devices the registry no longer lists: the next reload decides on them
        self._restored_unlisted = [d for d in devices if d not in f.registry]
        self.fleet = f

    def _load_rules(self, arrays: Mapping[str, npt.NDArray[np.generic]]) -> None:
        """Every rule's state from the snapshot, or, if any part of it is refused, every
        rule's state as it was."""
        before = {rule.name: {k: np.array(v, copy=True)
                              for k, v in rule.state_arrays().items()}
                  for rule in self.rules}
        prefix = ""
        try:
            for rule in self.rules:
                prefix = f"rule/{rule.name}/"
                saved = _under(arrays, prefix)
                if saved:
                    rule.load_state(saved)
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            for rule in self.rules:
                rule.load_state(before[rule.name])
            what = exc if isinstance(exc, SnapshotError) else repr(exc)
            raise SnapshotError(f"under {prefix!r}: {what}") from exc
