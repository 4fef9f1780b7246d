"""Device hand-over between collectors: rebuild a newcomer's windows, forget the departed.

When a collector is added or removed, the consistent-hash exchange moves about 1/N of the
devices to another collector. The new owner has never seen them: the first time a device
appears, its recent raw readings are read back from InfluxDB (`readings`, as
`collector.line_protocol` writes it) and fed to the engine before the live batch, so
windowed rules judge it as its old owner would have. The old owner stops receiving the
device; once it has been silent for `forget_after_ms` its state is dropped
(`Engine.forget`), so it is never judged in two places (a silent device fires nothing:
windows of stale readings are empty and NaN never fires).

Alert state moves too: the rules are replayed over the same history on a blank engine
and its per-device state adopted (`Engine.adopt`), then settled against what was
announced (`alert_events`, written by every collector): a replayed `firing` nobody
announced (the old owner was still `pending` when it crashed or lost the device) is
announced with the next tick here, as the replay fired it, and stays firing; an
announced alert still open is taken over as firing, silently, and its end announced here
(`on_adopt`: the alert lifecycle opens it without an event). The old owner forgets a
device silent for `forget_after_ms` only once another collector stored newer readings of
it (a device silent everywhere is offline: its deadman is judged where it was held); in
the collector that question goes to the hand-over's own thread, so the ingest thread
never waits for InfluxDB. Then its `on_forget` hooks run (the alert lifecycle closes the
device's open alerts silently), and the list of forgotten devices is saved
(`forgotten_file`): after a restart the old owner still knows the device moved and
raises no deadman alert for it.

Between those two owners a `for` can run out: a device `pending` here moves, its next
reading goes to the new owner, and both would fire it at the same moment, the old owner
by time alone, before either firing is on record (the new owner's take-over reads the
record first). So `screen` holds a `firing` of a device past half its usual reporting
interval here (the gap between its last two readings): it is dropped if the
device turns out to have moved (forgotten), let out as soon as the device reports here
again, or once the store says nobody else heard it (offline: its alerts are judged here).
A hold costs only delay, at most `forget_after_ms` and a query.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from airgrid.measurements import ALERT_EVENTS, READINGS
from alert_rules.engine import Engine
from alert_rules.transitions import Transition

log = logging.getLogger(__name__)


@dataclass
class History:
    """Readings as the engine takes them: device, timestamp and one column per field."""

    devices: list[str] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)
    values: dict[str, list[float | None]] = field(default_factory=dict)


class HistorySource(Protocol):
    def recent(self, devices: Sequence[str], fields: Sequence[str], since_ms: int) -> History:
        """Readings of `devices` with ts > since_ms, oldest first; raise OSError if down."""
        ...

    def heard_after(self, after_ms: Mapping[str, int]) -> dict[str, int]:
        """Devices with a stored reading newer than the time given for each (their
        readings now reach another collector): device → its newest reading (ms); raise
        OSError if down."""
        ...

    def announced(self, devices: Sequence[str], since_ms: int) -> dict[tuple[str, str], int]:
        """Alerts of `devices` open on the bus: (rule, device) → when it fired (ms), from
        the `alert_events` every collector writes (the last `firing` or `resolved` after
        since_ms says whether it is open); raise OSError if down."""
        ...


#: Devices per query asking whether silent devices were heard elsewhere (an InfluxQL
#: WHERE of this many alternatives stays well inside a request's size)
HEARD_QUERY_DEVICES = 500

#: How far back a take-over looks for an announced alert that is still open: an episode
#: longer than this is announced again by the collector that takes its device over.
ANNOUNCED_LOOKBACK_MS = 7 * 24 * 3600 * 1000


class InfluxHistory:
    """Reads recent raw readings back over InfluxQL (answered by InfluxDB 1.x, 2.x, 3.x)."""

    def __init__(self, url: str, database: str, username: str | None = None,
                 password: str | None = None, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.auth = {"u": username, "p": password or ""} if username else {}
        self.timeout_s = timeout_s

    def query(self, devices: Sequence[str], fields: Sequence[str], since_ms: int) -> str:
        cols = ", ".join(f'"{f}"' for f in fields)
        which = self._which(devices)
        return (f'SELECT {cols} FROM "{READINGS}" WHERE ({which}) AND time > {since_ms}ms '
                f'GROUP BY "device" ORDER BY time ASC')

    @staticmethod
    def _which(devices: Sequence[str]) -> str:
        return " OR ".join("\"device\" = '{}'".format(d.replace("'", "\\'")) for d in devices)

    def announced_query(self, devices: Sequence[str], since_ms: int) -> str:
        # `open` is 1 on a firing event, 0 on a resolved one (collector.county_points)
        return (f'SELECT last("open") FROM "{ALERT_EVENTS}" WHERE ({self._which(devices)}) '
                f'AND time > {since_ms}ms GROUP BY "device", "rule"')

    def _get(self, q: str) -> list[dict[str, Any]]:
        params = {"db": self.database, "epoch": "ms", "q": q, **self.auth}
        req = urllib.request.Request(f"{self.url}/query",
                                     data=urllib.parse.urlencode(params).encode())
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                body = json.loads(resp.read())
        except (urllib.error.URLError, ValueError) as exc:
            raise OSError(f"InfluxDB {self.url} history query: {exc}") from exc
        results: list[dict[str, Any]] = body.get("results", [])
        for result in results:
            if "error" in result:
                raise OSError(f"InfluxDB {self.url} history query: {result['error']}")
        return results

    def heard_after(self, after_ms: Mapping[str, int]) -> dict[str, int]:
        out: dict[str, int] = {}
        if not after_ms:
            return out
        q = (f'SELECT last("seq") FROM "{READINGS}" WHERE ({self._which(list(after_ms))}) '
             f'AND time > {min(after_ms.values())}ms GROUP BY "device"')
        for result in self._get(q):
            for series in result.get("series", []):
                device = str(series.get("tags", {}).get("device", ""))
                newest = max(int(row[0]) for row in series["values"])
                if device in after_ms and newest > after_ms[device]:
                    out[device] = newest
        return out

    def announced(self, devices: Sequence[str], since_ms: int) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        if not devices:
            return out
        for result in self._get(self.announced_query(devices, since_ms)):
            for series in result.get("series", []):
                tags = series.get("tags", {})
                for at_ms, is_open in series["values"]:
                    if is_open:
                        out[(str(tags.get("rule", "")), str(tags.get("device", "")))] = int(at_ms)
        return out

    def recent(self, devices: Sequence[str], fields: Sequence[str], since_ms: int) -> History:
        out = History(values={f: [] for f in fields})
        if not devices:
            return out
        for result in self._get(self.query(devices, fields, since_ms)):
            for series in result.get("series", []):
                device = series.get("tags", {}).get("device", "")
                idx = {c: i for i, c in enumerate(series["columns"])}
                for row in series["values"]:
                    out.devices.append(device)
                    out.ts_ms.append(int(row[idx["time"]]))
                    for f in fields:
                        v = row[idx[f]] if f in idx else None
                        out.values[f].append(None if v is None else float(v))
        return out


@dataclass(frozen=True)
class _Where:
    """Where silent devices went: those another collector stored newer readings of."""

    silent: list[str]
    moved: set[str]
    error: str | None  # the store could not say


@dataclass
class HandOverCounters:
    rebuilt_devices: int = 0
    rebuilt_readings: int = 0
    rebuild_failures: int = 0
    forgotten_devices: int = 0
    #: alerts firing in a take-over's replay that no collector had announced (announced
    #: by the next tick here), and alerts announced before and taken over as firing
    replayed_unannounced: int = 0
    adopted_announced: int = 0
    announced_unknown: int = 0  # take-overs whose announced alerts could not be read
    #: silent devices kept because no other collector stored a reading of theirs either
    #: (offline, not moved: their deadman is judged here), or heard here again while
    #: the question was out
    kept_silent: int = 0
    moved_unknown: int = 0  # expiries that could not ask where silent devices went
    #: `firing` of devices overdue here, held (`HandOver.screen`); then dropped because
    #: the device moved, or let out because it reported here again or nowhere else
    held_firing: int = 0
    held_dropped: int = 0
    held_released: int = 0


#: A time-only `firing` is held once this share of the device's usual interval has
#: passed since its last reading arrived here: its next reading may be reaching another
#: owner, which fires as it rebuilds the device. Held only until the next reading comes
#: here (at most the rest of the interval) or the forget question is answered. Measured:
#: with "past the interval + 0.5 s", 30 of 2,500 episode devices were announced twice at
#: an add, each old owner's `for` running out 0.1–0.4 s before the next reading was due.
HOLD_AFTER_SHARE = 0.5


#: told how many held `firing` transitions had an outcome (held, dropped, released)
OnHeld = Callable[[str, int], None]
#: told which devices were forgotten, and when (ms): they now report elsewhere
OnForget = Callable[[list[str], int], None]
#: told the alerts a take-over adopted as announced and open (`firing` transitions at
#: the time they fired), and when (ms): this collector will announce their end
OnAdopt = Callable[[list[Transition], int], None]


class HandOver:
    def __init__(self, engine: Engine, history: HistorySource, lookback_ms: int,
                 forget_after_ms: int, forgotten_file: Path | None = None,
                 on_forget: Sequence[OnForget] = (),
                 on_adopt: Sequence[OnAdopt] = (), background: bool = False) -> None:
        self.engine = engine
        self.history = history
        self.lookback_ms = lookback_ms
        self.forget_after_ms = forget_after_ms
        self.forgotten_file = forgotten_file
        self.on_forget = list(on_forget)
        self.on_adopt = list(on_adopt)
        # device -> when last heard (ms), oldest first: expiry looks only at the front
        # (sorted once after the clock steps back)
        self.last_seen: OrderedDict[str, int] = OrderedDict()
        self._seen_sorted = True
        self.last_ts: dict[str, int] = {}  # newest reading judged here, per device (ms)
        self.gap: dict[str, int] = {}  # between its last two readings here (ms)
        #: transitions of overdue devices held back from announcement (`screen`), in order
        self.held: dict[str, list[Transition]] = {}
        self._released: list[Transition] = []  # let out by the next `screen`
        #: silent devices nobody else heard (asked since last heard): not moved
        self._stayed: set[str] = set()
        self.on_held: list[OnHeld] = []  # the collector's metric
        self.forgotten: dict[str, int] = {}  # device -> when it was forgotten (ms)
        self.counters = HandOverCounters()
        self._next_expiry = 0
        # where silent devices went is asked on this thread when `background` (the
        # collector: its ingest thread never waits for InfluxDB), else inline (tests, tools)
        self._pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="handover")
                      if background else None)
        self._question: Future[_Where] | None = None
        #: the devices of the question out, until heard here again (they stay then)
        self._in_question: set[str] = set()

    def restore(self) -> int:
        """After the engine's own state: devices forgotten before a restart stay
        forgotten (not judged, no deadman) until they report here again. An unreadable
        file is logged and set aside, never fatal."""
        path = self.forgotten_file
        if path is None or not path.exists():
            return 0
        try:
            saved = json.loads(path.read_text())
            if not isinstance(saved, dict) or not all(
                    isinstance(k, str) and isinstance(v, int) for k, v in saved.items()):
                raise ValueError("expected an object of device id -> ms")
        except (OSError, ValueError) as exc:
            log.warning("forgotten devices in %s not restored (%s); setting it aside",
                        path, exc)
            with contextlib.suppress(OSError):
                os.replace(path, path.with_name(path.name + ".unreadable"))
            return 0
        self.forgotten = saved
        self.engine.forget(list(saved))
        log.info("%d devices forgotten before the restart stay forgotten", len(saved))
        return len(saved)

    def _save_forgotten(self) -> None:
        path = self.forgotten_file
        if path is None:
            return
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.forgotten))
            os.replace(tmp, path)
        except OSError as exc:
            log.error("forgotten devices not saved to %s: %s", path, exc)

    def before_ingest(self, devices: Sequence[str], ts_ms: Sequence[int], now_ms: int) -> None:
        """Call with a stored batch before `engine.ingest` of the same batch."""
        if self.held:
            first: dict[str, int] = {}  # each held device's oldest reading in the batch
            for d, t in zip(devices, ts_ms, strict=True):
                if d in self.held and t < first.get(d, t + 1):
                    first[d] = t
            back = [d for d, t in first.items() if self._was_away(d, t)]
            if back:
                # Held, and back with a hole in its readings here: it reported elsewhere
                # (an owner added, then removed) and that owner may have announced the
                # held firing. Taken over like any moved device: rebuilt below from the
                # record, which adopts what was announced and announces what was not.
                self.forget_moved(back, now_ms)
        new = [d for d in dict.fromkeys(devices)
               if d not in self.last_seen and not self._holds(d)]
        if new:
            self.rebuild(new, devices, ts_ms, now_ms)
        last_seen, last_ts = self.last_seen, self.last_ts
        if last_seen and now_ms < next(reversed(last_seen.values())):
            self._seen_sorted = False
        gap = self.gap
        for d, t in zip(devices, ts_ms, strict=True):
            last_seen[d] = now_ms
            last_seen.move_to_end(d)
            before = last_ts.get(d) or self._engine_last_ts(d)
            if t > before:
                if before:
                    gap[d] = t - before
                last_ts[d] = t
        if self.held:
            for d in self.held.keys() & set(devices):
                self._release(d)  # reports here: it did not move
        if self._stayed:
            self._stayed.difference_update(devices)
        if self._in_question:
            self._in_question.difference_update(devices)  # heard here: not moved
        if self.forgotten and any(d in self.forgotten for d in new):
            for d in new:
                self.forgotten.pop(d, None)  # back here: judged again
            self._save_forgotten()
        if now_ms >= self._next_expiry:
            self._next_expiry = now_ms + max(1000, self.forget_after_ms // 10)
            self.expire(now_ms)
        elif self._question is not None:
            self._answered(now_ms)

    def _engine_last_ts(self, device: str) -> int:
        """The engine's newest reading of a device not heard here since start-up: restored
        from the snapshot after a restart, or rebuilt from the record. Its interval then
        counts from there: a restarted collector that had one reading of each device
        knew no interval, held no time-only firing, and repeated the alerts of devices
        that moved to an added collector (the 10,000-device runs)."""
        fleet = self.engine.fleet
        row = fleet.index.get(device)
        return 0 if row is None else int(fleet.last_ts[row])

    def _holds(self, device: str) -> bool:
        """The engine already has this device's readings (state restored at start-up):
        rebuilding would count its history twice."""
        fleet = self.engine.fleet
        row = fleet.index.get(device)
        return row is not None and device not in self.engine.away and fleet.last_ts[row] > 0

    def rebuild(self, new: list[str], devices: Sequence[str], ts_ms: Sequence[int],
                now_ms: int) -> None:
        fields = list(self.engine.fleet.fields)
        try:
            h = self.history.recent(new, fields, now_ms - self.lookback_ms)
        except OSError as exc:
            # Windows then fill from live data; counted and logged, never fatal.
            self.counters.rebuild_failures += 1
            log.warning("could not rebuild %d devices from history: %s", len(new), exc)
            return
        # The live batch is already stored: leave its readings to the live ingest.
        live = set(zip(devices, ts_ms, strict=True))
        keep = [i for i, key in enumerate(zip(h.devices, h.ts_ms, strict=True))
                if key not in live]
        if keep:
            devs = [h.devices[i] for i in keep]
            ts = [h.ts_ms[i] for i in keep]
            cols: dict[str, Sequence[float | None]] = {
                f: [h.values[f][i] for i in keep] for f in fields}
            self.engine.ingest(devs, ts, cols)
            replay, fired = self._replay(devs, ts, cols)
            self.engine.adopt(sorted(set(devs)), replay)
        else:
            fired = {}
        self.settle_announced(new, now_ms, fired)
        self.counters.rebuilt_devices += len(new)
        self.counters.rebuilt_readings += len(keep)
        log.info("took over %d devices, rebuilt from %d stored readings", len(new), len(keep))

    def settle_announced(self, new: list[str], now_ms: int,
                         fired: Mapping[tuple[str, str], Transition] | None = None) -> None:
        """The replay decides from readings; whether an alert was announced is on record
        (`alert_events`). Where they differ the record wins (`Engine.settle_announced`):
        an alert the replay found firing that no collector announced is announced here,
        one announced and still open is taken over as firing. If the record cannot be
        read, the replay's firing alerts are announced: a repeat rather than a loss.

        `fired`: the replay's own `firing` of each alert still firing at its end. Such an
        alert nobody announced goes out with the next `screen` as the replay decided it
        (its time, marked late), and stays firing here: made due instead, it would go out
        only if its condition still held at the next tick, and an episode that ended
        while nobody held the device (the collector it had moved to was removed while
        still `pending`) was never announced."""
        firing_before = self._firing(new)
        try:
            announced = self.history.announced(new, now_ms - ANNOUNCED_LOOKBACK_MS)
        except OSError as exc:
            self.counters.announced_unknown += 1
            log.warning("announced alerts of %d taken-over devices not read (%s): their "
                        "firing alerts are announced again", len(new), exc)
            announced = {}
        missing = firing_before - set(announced)
        now_out = [fired[k] for k in sorted(missing) if fired is not None and k in fired]
        adopted = self.engine.settle_announced(
            new, announced, now_ms, announcing={(t.rule, t.subject) for t in now_out})
        self._released.extend(replace(t, late_ms=max(0, now_ms - t.at_ms)) for t in now_out)
        unannounced = len(missing)
        self.counters.replayed_unannounced += unannounced
        self.counters.adopted_announced += len(adopted)
        if unannounced:
            log.info("%d alerts found firing in the replay of taken-over devices were never "
                     "announced: announcing them", unannounced)
        if adopted:
            for hook in self.on_adopt:
                hook(adopted, now_ms)

    def _firing(self, devices: list[str]) -> set[tuple[str, str]]:
        """(rule, device) of these devices' alerts firing in the engine."""
        index = self.engine.fleet.index
        out = set()
        for rule in self.engine.rules:
            if rule.kind == "spatial":
                continue  # township alerts
            firing = rule.columns.firing
            for d in devices:
                row = index.get(d)
                if row is not None and row < firing.size and firing[row]:
                    out.add((rule.name, d))
        return out

    def replay(self, devices: list[str], ts_ms: list[int],
               values: dict[str, Sequence[float | None]]) -> Engine:
        """Alert state as the old owner reached it: the same rules, ticked over the same
        readings. Without it a device moved while its alert fires would fire again here.
        Ticks fall on whole seconds after each reading (collectors tick every second or
        after each batch), so a long lookback costs at most one tick per second of it."""
        return self._replay(devices, ts_ms, values)[0]

    def _replay(self, devices: list[str], ts_ms: list[int],
                values: dict[str, Sequence[float | None]]
                ) -> tuple[Engine, dict[tuple[str, str], Transition]]:
        """`replay`, with the `firing` transition of each alert firing at its end."""
        fired: dict[tuple[str, str], Transition] = {}
        replay = self.engine.blank(sorted(set(devices)))
        order = sorted(range(len(ts_ms)), key=ts_ms.__getitem__)
        start = 0
        while start < len(order):
            tick = (ts_ms[order[start]] // 1000 + 1) * 1000
            end = start
            while end < len(order) and ts_ms[order[end]] < tick:
                end += 1
            part = order[start:end]  # readings up to this tick only: `latest` sees no future
            replay.ingest([devices[i] for i in part], [ts_ms[i] for i in part],
                          {f: [col[i] for i in part] for f, col in values.items()})
            # the old owner sent these transitions, unless the record says otherwise
            for t in replay.tick(tick):
                if t.state == "firing":
                    fired[(t.rule, t.subject)] = t
                elif t.state == "resolved":
                    fired.pop((t.rule, t.subject), None)
            start = end
        return replay, fired

    def expire(self, now_ms: int) -> list[str]:
        """Forget devices silent here for forget_after_ms whose newer readings another
        collector stored: they moved. A device silent everywhere is offline, not moved:
        it stays, so its deadman alert is judged here (and by no one else); it is asked
        about again after another forget_after_ms. If the store cannot say, silent
        devices are forgotten as moved (no collector judges them then). Only the front
        of the last-heard order is looked at.

        With `background` the question goes to the hand-over's thread and its answer is
        applied by a later call (this one or `before_ingest`'s); one question is out at a
        time, and a device heard here again meanwhile stays. Returns the devices
        forgotten by this call."""
        gone = self._answered(now_ms)
        if self._question is not None:
            return gone
        if not self._seen_sorted:
            self.last_seen = OrderedDict(sorted(self.last_seen.items(), key=lambda kv: kv[1]))
            self._seen_sorted = True
        last_seen = self.last_seen
        silent: list[str] = []
        for d, t in last_seen.items():
            if now_ms - t <= self.forget_after_ms:
                break
            silent.append(d)
        if not silent:
            return gone
        asked = {d: self.last_ts.get(d, 0) for d in silent}
        for d in silent:  # asked again after another forget_after_ms, if not forgotten
            last_seen[d] = now_ms
            last_seen.move_to_end(d)
        self._in_question = set(silent)
        if self._pool is not None:
            self._question = self._pool.submit(self._where, asked)
        else:
            self._question = Future()
            self._question.set_result(self._where(asked))
        return gone + self._answered(now_ms)

    def _where(self, asked: dict[str, int]) -> _Where:
        """Which of the silent devices another collector stored newer readings of (on
        the hand-over's thread when `background`)."""
        moved: set[str] = set()
        silent = list(asked)
        try:
            for i in range(0, len(silent), HEARD_QUERY_DEVICES):
                part = silent[i:i + HEARD_QUERY_DEVICES]
                moved.update(self.history.heard_after({d: asked[d] for d in part}))
        except OSError as exc:
            return _Where(silent, moved, str(exc))
        return _Where(silent, moved, None)

    def _answered(self, now_ms: int) -> list[str]:
        """Apply the answer about silent devices, if it has come."""
        q = self._question
        if q is None or not q.done():
            return []
        self._question = None
        answer = q.result()
        moved = answer.moved
        if answer.error is not None:
            self.counters.moved_unknown += 1
            log.warning("could not ask where %d silent devices went (%s): forgotten as "
                        "moved", len(answer.silent), answer.error)
            moved = set(answer.silent)
        still = self._in_question
        self._in_question = set()
        gone = [d for d in answer.silent if d in moved and d in still]
        self.counters.kept_silent += len(answer.silent) - len(gone)
        for d in answer.silent:
            if d in still and d not in moved:
                self._stayed.add(d)  # silent everywhere: its alerts are judged here
                if d in self.held:
                    self._release(d)
        if gone:
            self.forget_moved(gone, now_ms)
            log.info("forgot %d devices silent for %.0f s", len(gone),
                     self.forget_after_ms / 1000)
        return gone

    def screen(self, transitions: list[Transition], now_ms: int) -> list[Transition]:
        """Between a tick and its announcement (the same thread as `before_ingest`): hold
        the `firing` of a device overdue here, and everything after it for that device, until
        it reports here again or the forget question is answered; let out what was
        released since. A `resolved` of a held `firing` cancels both: nothing was said."""
        self._answered(now_ms)
        out, self._released = self._released, []
        for t in transitions:
            d = t.subject
            held = self.held.get(d)
            if held is not None:
                if t.state == "resolved" and any(h.rule == t.rule for h in held):
                    self.held[d] = [h for h in held if h.rule != t.rule]
                    self._count_held("dropped", 1)
                    if not self.held[d]:
                        del self.held[d]
                else:
                    held.append(t)
                continue
            if t.state == "firing" and self._overdue(d, now_ms):
                self.held[d] = [t]
                self._count_held("held", 1)
                log.info("%s %s fired with no reading here for %.1f s: held until it "
                         "reports here or is found to have moved", t.rule, d,
                         (now_ms - self.last_seen[d]) / 1000)
                continue
            out.append(t)
        return out

    def _overdue(self, device: str, now_ms: int) -> bool:
        """Its next reading may be coming, or should have come, by now: it may report
        elsewhere."""
        if device in self._stayed:
            return False
        if device in self._in_question:
            return True  # asked where it went (its `last_seen` is the asking time)
        seen, gap = self.last_seen.get(device), self.gap.get(device)
        return seen is not None and gap is not None and now_ms - seen > gap * HOLD_AFTER_SHARE

    def _was_away(self, device: str, ts_ms: int) -> bool:
        """Its reading of `ts_ms` follows its last one here by over one and a half of its
        intervals: the readings between went elsewhere (or were never sent). Reading
        time, not arrival: asking where a silent device went moves its `last_seen`."""
        last, gap = self.last_ts.get(device), self.gap.get(device)
        return last is not None and gap is not None and ts_ms - last > gap * 3 // 2

    def _release(self, device: str) -> None:
        released = self.held.pop(device)
        self._count_held("released", sum(t.state == "firing" for t in released))
        self._released.extend(released)

    def _count_held(self, outcome: str, n: int) -> None:
        if outcome == "held":
            self.counters.held_firing += n
        elif outcome == "dropped":
            self.counters.held_dropped += n
        else:
            self.counters.held_released += n
        for hook in self.on_held:
            hook(outcome, n)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def forget_moved(self, devices: list[str], now_ms: int) -> None:
        """These devices report to another collector: their state is dropped, they are
        judged here no more until they report here (also after a restart: the list is
        saved), and the `on_forget` hooks run (the alert lifecycle closes their open
        alerts silently)."""
        for d in devices:
            self.last_seen.pop(d, None)
            self.last_ts.pop(d, None)
            self.gap.pop(d, None)
            self._stayed.discard(d)
            dropped = self.held.pop(d, None)
            if dropped:  # announced by the owner it moved to
                self._count_held("dropped", sum(t.state == "firing" for t in dropped))
            self.forgotten[d] = now_ms
        self.engine.forget(devices)
        self.counters.forgotten_devices += len(devices)
        self._save_forgotten()
        for hook in self.on_forget:
            hook(devices, now_ms)
