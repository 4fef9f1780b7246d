"""The deadman keeper: one province collector judges the silence of each registered device
that no collector has heard.

A province collector judges only the devices it has readings of (`Engine.hold_heard_only`):
the others report to another collector. A registered device that never reported anywhere
would then be judged by none, and its deadman alert raised by none. So each collector
keeps the never-heard devices that rendezvous hashing of (device, collector) over the
`amqp.collectors` table gives it (`keeper_of`). Every collector has the same table and the
same registry, so each such device has exactly one keeper, found without talking; a
collector added or removed takes or gives up only its own share of them.

A kept device is judged here (`Engine.keep`), but its deadman `firing` is held until
InfluxDB has been asked, on the keeper's own thread (never the ingest thread), whether any
collector stored a reading of it:

- one did: the device reports elsewhere. It is forgotten here as a moved device is
  (`HandOver.forget_moved`): no alert; its owner judges it;
- its deadman is open on record (`alert_events`: announced by its keeper before a restart,
  or before the table changed): taken over silently (the `on_adopt` hooks), not repeated;
- neither: announced.

If InfluxDB cannot answer, the alert stays held and the question is asked again after
`RETRY_MS` (counted): late while the store is down, never forged. Kept devices are also
asked about every `recheck_ms`, so one that starts reporting to another collector after
its deadman fired is forgotten here (its owner adopts the open alert from the record and
announces its end). One that reports here is this collector's own from then on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from alert_rules.engine import Engine
from alert_rules.transitions import Transition
from collector.handover import (
    ANNOUNCED_LOOKBACK_MS,
    HEARD_QUERY_DEVICES,
    HandOver,
    HistorySource,
    OnForget,
)
from collector.metrics import Metrics

log = logging.getLogger(__name__)

#: a question InfluxDB could not answer is asked again after this long
RETRY_MS = 5_000

_SCALE = float(1 << 53)


def _unit(device: str, collector: str) -> float:
    """A number in (0, 1), uniform over devices, the same in every process (not `hash()`,
    which is salted per process). The collector's name is length-prefixed, so no pair of
    (device, collector) reads as another."""
    digest = hashlib.blake2b(f"{len(collector)}:{collector}:{device}".encode(),
                             digest_size=8).digest()
    return ((int.from_bytes(digest, "big") >> 11) + 0.5) / _SCALE


def keeper_of(device: str, ring: Sequence[tuple[str, int]]) -> str:
    """The collector that keeps `device`'s deadman while no collector has heard it.

    Weighted rendezvous (highest random weight) hashing: each collector scores
    −weight / ln(u), u uniform in (0, 1) from (device, collector); the highest score
    keeps, so a collector keeps weight / total of the devices (Schindelhauer and
    Schomaker, "Weighted distributed hash tables", SPAA 2005). A collector's score does
    not depend on the others: removing one moves only the devices it kept, adding one
    moves only devices to it. Ties (never seen with 53-bit scores) go to the greater name.
    """
    if not ring:
        raise ValueError("keeper_of: no collectors")
    return max(ring, key=lambda cw: (-cw[1] / math.log(_unit(device, cw[0])), cw[0]))[0]


@dataclass
class KeeperCounters:
    checked: int = 0  # kept devices asked about in InfluxDB
    handed: int = 0  # found stored by another collector: forgotten here, no alert
    raised: int = 0  # deadman alerts announced after the check
    adopted: int = 0  # deadman alerts open on record: taken over silently
    check_failures: int = 0  # questions InfluxDB did not answer (asked again)
    released: int = 0  # no longer kept here: heard here, or kept by another collector


@dataclass
class _Answer:
    """What InfluxDB said about some kept devices (on the keeper's thread)."""

    devices: list[str]
    held: bool  # held deadman alerts wait for it (else a periodic re-check)
    heard: set[str] = field(default_factory=set)
    announced: dict[tuple[str, str], int] = field(default_factory=dict)
    error: str | None = None


class DeadmanKeeper:
    def __init__(self, engine: Engine, handover: HandOver, history: HistorySource,
                 collector: str, ring: Sequence[tuple[str, int]], recheck_ms: int,
                 metrics: Metrics | None = None,
                 on_release: Sequence[OnForget] = ()) -> None:
        self.engine = engine
        self.handover = handover
        self.history = history
        self.collector = collector
        self.ring = tuple(ring)
        self.recheck_ms = recheck_ms
        self.metrics = metrics
        #: told the never-heard devices another collector keeps (at start-up: their
        #: alerts still open here, from before the table changed, are closed silently)
        self.on_release = list(on_release)
        self.deadman = frozenset(r.name for r in engine.rules if r.kind == "deadman")
        self.kept: set[str] = set()
        #: deadman alerts held for the answer: device -> rule -> its `firing`
        self.held: dict[str, dict[str, Transition]] = {}
        self.counters = KeeperCounters()
        self._mine: dict[str, bool] = {}  # keeper_of(device) == this collector, cached
        self._registry: object = None  # the registry `keep` last worked from
        self._asking: list[Future[_Answer]] = []
        self._retry: set[str] = set()  # held devices to ask again (InfluxDB was down)
        self._retry_at = 0
        self._next_recheck = 0
        self._rechecking = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deadman-keeper")

    def is_mine(self, device: str) -> bool:
        mine = self._mine.get(device)
        if mine is None:
            mine = self._mine[device] = keeper_of(device, self.ring) == self.collector
        return mine

    def _heard_here(self, device: str) -> bool:
        f = self.engine.fleet
        row = f.index.get(device)
        return row is not None and device not in self.engine.away and f.last_ts[row] > 0

    def keep(self, now_ms: int) -> int:
        """Keep this collector's share of the registered devices never heard here (and not
        known to have moved away): at start-up, after `Engine.hold_heard_only`, and after
        each registry reload. Returns how many devices are kept now."""
        fleet, engine = self.engine.fleet, self.engine
        first = self._registry is None
        self._registry = fleet.registry
        forgotten = self.handover.forgotten
        ids = list(fleet.registry)
        rows = np.fromiter(map(fleet.index.__getitem__, ids), np.int64, len(ids))
        # never heard here (a forgotten device's row is cleared too: it moved away)
        unheard = (fleet.last_ts[rows] == 0).tolist()
        never = [d for d, u in zip(ids, unheard, strict=True) if u and d not in forgotten]
        mine = [d for d in never if self.is_mine(d)]
        mine_set = set(mine)
        gone = [d for d in self.kept if d not in mine_set]
        for d in gone:
            self.held.pop(d, None)
        self.kept = mine_set
        engine.keep(mine)
        self._count(released=len(gone))
        if first and self.on_release:
            others = [d for d in never if d not in mine_set]
            for hook in self.on_release:
                hook(others, now_ms)
        self._gauge()
        log.info("keeping the deadman of %d registered devices no collector has heard "
                 "(%d never heard here)", len(mine), len(never))
        return len(mine)

    def screen(self, transitions: list[Transition], now_ms: int) -> list[Transition]:
        """Between a tick and its announcement: hold kept devices' deadman `firing` until
        InfluxDB has answered; let out what earlier answers released."""
        out = self._collect(now_ms)
        ask: list[str] = []
        for t in transitions:
            d = t.subject
            if t.rule in self.deadman and d in self.kept:
                held = self.held.get(d)
                if t.state == "resolved" and held is not None and t.rule in held:
                    del held[t.rule]  # never announced: nothing to end
                    if not held:
                        del self.held[d]
                    if self._heard_here(d):
                        self._release_heard(d)
                    continue
                if self._heard_here(d):
                    self._release_heard(d)  # reports here now: its own alerts go out
                elif t.state == "firing":
                    self.held.setdefault(d, {})[t.rule] = t
                    ask.append(d)
                    continue
            out.append(t)
        if ask:
            self._ask(list(dict.fromkeys(ask)), held=True, now_ms=now_ms)
        if self._retry and now_ms >= self._retry_at:
            retry, self._retry = sorted(self._retry), set()
            self._ask([d for d in retry if d in self.held], held=True, now_ms=now_ms)
        if self.engine.fleet.registry is not self._registry:
            self.keep(now_ms)  # a registry reload: devices added, removed
        if now_ms >= self._next_recheck and not self._rechecking:
            self._next_recheck = now_ms + self.recheck_ms
            again = [d for d in self.kept if d not in self.held]
            if again:
                self._rechecking = True
                self._ask(again, held=False, now_ms=now_ms)
        return out

    def _release_heard(self, device: str) -> None:
        self.kept.discard(device)
        self._count(released=1)

    def _ask(self, devices: list[str], held: bool, now_ms: int) -> None:
        if not devices:
            return
        self.counters.checked += len(devices)
        if self.metrics is not None:
            self.metrics.deadman_keeper.labels("checked").inc(len(devices))
        self._asking.append(self._pool.submit(self._query, devices, held, now_ms))

    def _query(self, devices: list[str], held: bool, now_ms: int) -> _Answer:
        """On the keeper's thread: which devices any collector stored readings of, and
        (for held alerts) which deadman alerts are open on record."""
        answer = _Answer(devices, held)
        try:
            for i in range(0, len(devices), HEARD_QUERY_DEVICES):
                part = devices[i:i + HEARD_QUERY_DEVICES]
                answer.heard.update(self.history.heard_after(dict.fromkeys(part, 0)))
            if held:
                rest = [d for d in devices if d not in answer.heard]
                for i in range(0, len(rest), HEARD_QUERY_DEVICES):
                    answer.announced.update(self.history.announced(
                        rest[i:i + HEARD_QUERY_DEVICES], now_ms - ANNOUNCED_LOOKBACK_MS))
        except OSError as exc:
            answer.error = str(exc)
        except Exception as exc:  # a bug here must not stop ingestion: logged, asked again
            log.exception("kept devices' question failed")
            answer.error = repr(exc)
        return answer

    def _collect(self, now_ms: int) -> list[Transition]:
        """On the ingest thread: apply the answers that have come; returns the held
        alerts to announce."""
        if not self._asking:
            return []
        done = [f for f in self._asking if f.done()]
        if not done:
            return []
        self._asking = [f for f in self._asking if not f.done()]
        out: list[Transition] = []
        handed: list[str] = []
        adopted: list[Transition] = []
        for fut in done:
            a = fut.result()
            if not a.held:
                self._rechecking = False
            if a.error is not None:
                self.counters.check_failures += 1
                if self.metrics is not None:
                    self.metrics.deadman_keeper.labels("check_failed").inc()
                log.warning("could not ask InfluxDB about %d kept devices (%s): %s", len(
                    a.devices), a.error, "their deadman alerts wait, asked again in "
                    f"{RETRY_MS / 1000:.0f} s" if a.held else "asked again later")
                if a.held:
                    self._retry.update(a.devices)
                    self._retry_at = now_ms + RETRY_MS
                continue
            for d in a.devices:
                if d not in self.kept:
                    self.held.pop(d, None)  # released meanwhile
                    continue
                if self._heard_here(d):
                    self._release_heard(d)
                    out.extend(t for t in self.held.pop(d, {}).values()
                               if self._firing(t.rule, d))
                    continue
                if d in a.heard:
                    handed.append(d)
                    self.held.pop(d, None)
                    continue
                if not a.held:
                    continue
                for rule, t in self.held.pop(d, {}).items():
                    if not self._firing(rule, d):
                        continue  # resolved meanwhile
                    fired_ms = a.announced.get((rule, d))
                    if fired_ms is None:
                        out.append(t)
                    else:
                        adopted.append(dataclasses.replace(t, at_ms=fired_ms))
        if handed:
            self.kept.difference_update(handed)
            self.handover.forget_moved(handed, now_ms)
            log.info("%d kept devices report to other collectors: forgotten here, no "
                     "deadman alert", len(handed))
        if adopted:
            for hook in self.handover.on_adopt:
                hook(adopted, now_ms)
        self._count(handed=len(handed), adopted=len(adopted), raised=len(out))
        if out:
            log.info("deadman of %d registered devices no collector has heard: announced",
                     len(out))
        return out

    def _firing(self, rule_name: str, device: str) -> bool:
        row = self.engine.fleet.index.get(device)
        for rule in self.engine.rules:
            if rule.name == rule_name:
                firing = rule.columns.firing
                return row is not None and row < firing.size and bool(firing[row])
        return False

    def _count(self, **by_outcome: int) -> None:
        for outcome, n in by_outcome.items():
            setattr(self.counters, outcome, getattr(self.counters, outcome) + n)
            if n and self.metrics is not None:
                self.metrics.deadman_keeper.labels(outcome).inc(n)
        self._gauge()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.deadman_kept.set(len(self.kept))

    def wait(self, timeout_s: float | None = None) -> None:
        """Until the questions asked so far are answered (tests)."""
        for f in list(self._asking):
            f.exception(timeout_s)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def mine_of(devices: Iterable[str], ring: Sequence[tuple[str, int]]) -> dict[str, list[str]]:
    """Each collector's kept devices among `devices` (tools, tests)."""
    out: dict[str, list[str]] = {name: [] for name, _w in ring}
    for d in devices:
        out[keeper_of(d, ring)].append(d)
    return out
