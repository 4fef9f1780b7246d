"""Hands stored readings to the rule engine and its transitions to whoever announces them.

Only stored (and acked) batches are judged, so an alert never rests on a reading that is
not in InfluxDB. Hooks run just before the engine takes a batch: the province hand-over
(`collector.handover`) rebuilds a newcomer device's windows there. With the alert lifecycle
(`collector.alerting`) transitions go to it; without it they go out as events on the bus.
Each judged batch asks for a tick soon (`collector.tick_schedule`: debounced, bounded), so
an alert follows its reading without waiting for the timer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, cast

import numpy as np

from airgrid.wire import Reading
from alert_rules.engine import Engine
from alert_rules.state import BoolArr, FloatArr, IntArr
from alert_rules.transitions import Transition
from collector import alert_events
from collector.batch import Batch
from collector.counters import Counters
from collector.county_points import transition_line
from collector.dead_letters import Publish
from collector.metrics import Metrics
from collector.tick_schedule import DEFAULT_ARRIVAL_TICKS, TickSchedule

if TYPE_CHECKING:
    from collector.alerting.service import AlertingService

log = logging.getLogger(__name__)

#: a reading's fields (a rule's field that is none of them has no values)
READING_FIELDS = frozenset(Reading.__struct_fields__)
_FLAGS = attrgetter("flags")

#: called with a stored batch's (devices, reading times, now in ms) before it is judged
BeforeJudge = Callable[[Sequence[str], Sequence[int], int], None]
#: sees the engine's transitions (and now in ms) before they are announced, every tick:
#: returns those to announce now (the province's deadman keeper holds some back until
#: InfluxDB has answered, `collector.deadman_keeper`, and lets them out later)
Screen = Callable[[list[Transition], int], list[Transition]]


class AlertHandOff:
    def __init__(self, engine: Engine, publish: Publish, prefix: str, counters: Counters,
                 metrics: Metrics, *, alerting: AlertingService | None = None,
                 before_judge: Sequence[BeforeJudge] = (),
                 late_after_ms: int | None = None,
                 ticks: TickSchedule | None = None,
                 record: Callable[[list[str]], None] | None = None,
                 screen: Screen | None = None) -> None:
        self.engine = engine
        self.screen = screen
        # without a lifecycle: announced alerts as `alert_events` lines for InfluxDB (the
        # lifecycle writes its own events), read back by a collector taking a device over
        self.record = record
        self.ticks = ticks if ticks is not None else TickSchedule(1.0, DEFAULT_ARRIVAL_TICKS)
        self.publish = publish
        self.prefix = prefix
        self.counters = counters
        self.metrics = metrics
        self.alerting = alerting
        self.before_judge = list(before_judge)
        # a reading older than the last tick by more than this was missed by the ticks of
        # its time: it is judged in its own time (Engine.replay_late). By default one fine
        # bucket: a tick has then judged a later bucket without it.
        self.late_after_ms = (engine.fleet.resolution_ms if late_after_ms is None
                              else late_after_ms)

    def judge(self, batch: Batch, now_ms: int) -> None:
        """Feed a stored batch's fresh readings to the engine."""
        if not batch.fresh:
            return
        for hook in self.before_judge:
            hook(batch.devices, batch.ts, now_ms)
        fresh = batch.fresh
        # columns built once, for the replay and the engine (None becomes NaN: no value)
        values: dict[str, FloatArr] = {
            f: np.array(list(map(attrgetter(f), fresh)) if f in READING_FIELDS
                        else [None] * len(fresh), np.float64)
            for f in self.engine.fleet.fields}
        flagged = np.array(list(map(bool, map(_FLAGS, fresh))), bool)
        last_tick = self.engine.last_tick_ms
        live = len(fresh)
        if last_tick:
            ts = np.asarray(batch.ts, np.int64)
            old = np.flatnonzero(ts < last_tick - self.late_after_ms)
            if old.size:
                # a late device's newer readings in the batch are the tail of its backlog:
                # replayed with it, so what the backlog decides is decided at its own time
                late_devices = {batch.devices[i] for i in old.tolist()}
                late = np.flatnonzero(np.array(
                    list(map(late_devices.__contains__, batch.devices)), bool))
                self._judge_late(batch, ts, late, values, flagged, now_ms)
                live -= late.size
        # `ingest` takes numpy columns as they are (its annotation says sequences)
        self.engine.ingest(batch.devices, batch.ts,
                           cast("dict[str, Sequence[float | None]]", values),
                           flagged=cast("Sequence[bool]", flagged))
        if live:
            # live readings: tick for them soon (a backlog was judged by its replay)
            self.ticks.arrived()

    def _judge_late(self, batch: Batch, ts: IntArr, late: IntArr,
                    values: dict[str, FloatArr], flagged: BoolArr, now_ms: int) -> None:
        transitions = self.engine.replay_late(
            [batch.devices[i] for i in late.tolist()], ts[late],
            {f: col[late] for f, col in values.items()}, flagged[late], now_ms,
            self.late_after_ms)
        self.metrics.late_readings.inc(late.size)
        decided = [t for t in transitions if t.state != "pending"]
        for t in decided:
            log.info("late alert %s %s %s at reading time %d ms, %.0f s late", t.rule,
                     t.subject, t.state, t.at_ms, t.late_ms / 1000)
        self.metrics.late_alerts.inc(len(decided))
        if self.screen is not None:
            transitions = self.screen(transitions, now_ms)
        if transitions:
            self.publish_transitions(transitions)

    def tick(self, now_ms: int) -> None:
        transitions = self.engine.tick(now_ms)
        if self.screen is not None:
            transitions = self.screen(transitions, now_ms)
        self.publish_transitions(transitions)

    def tick_if_due(self, now_s: float) -> bool:
        """Tick when the schedule says (timer, or readings arrived); `now_s` is monotonic."""
        if not self.ticks.due(now_s):
            return False
        self.ticks.ticked(now_s)
        self.tick(int(time.time() * 1000))
        return True

    def publish_transitions(self, transitions: list[Transition]) -> None:
        if self.alerting is not None:
            self.alerting.handle(transitions)
            decided = sum(t.state != "pending" for t in transitions)
            self.counters.alerts_published += decided
            self.metrics.alerts.inc(decided)
            return
        if self.record is not None:
            lines = [x for x in map(transition_line, transitions) if x is not None]
            if lines:
                self.record(lines)
        for t in transitions:
            topic, payload = alert_events.encode(t, self.prefix)
            self.publish(topic, payload, qos=1)
            self.counters.alerts_published += 1
            self.metrics.alerts.inc()
            log.info("alert %s %s %s value=%.1f", t.rule, t.subject, t.state, t.value)
