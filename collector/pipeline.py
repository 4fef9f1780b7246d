"""The collector's loop: take deliveries → build a batch → write it → (in order) ack → judge.

One thread runs the loop and every part it passes deliveries through, so the order of the
guarantee is plain to see: nothing is acknowledged to the broker before InfluxDB or the
durable spool has it (`collector.batch_writer`). The parts, each with one job:

- `BatchBuilder`: validate, drop repeats, encode lines, sum the hours (dead letters for
  the rejected);
- `BatchWriter`: concurrent writes, completed in order: checkpoint, ack, hand on;
- `AlertHandOff`: stored readings to the rule engine, its transitions to alerting or bus;
- `EngineStateFile`: the engine's state saved periodically and at exit;
- `Gauges`: gauges and the health report;
- `RegistryFeed`: the registry, on every (re)load, to the engine's fleet and InfluxDB;
- `CountyPoints`: alert events, deliveries and device places queued for the next batch;
- `Retention`: old gaps declared lost, long-silent devices forgotten, store sizes.

`collector.app` builds them from the configuration.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from collector.alert_handoff import AlertHandOff
from collector.batch_builder import BatchBuilder
from collector.batch_writer import BatchWriter
from collector.counters import Counters
from collector.county_points import CountyPoints
from collector.delivery import Delivery
from collector.engine_state_file import EngineStateFile
from collector.gauges import Gauges
from collector.ingest_source import IngestSource
from collector.long_lived_heap import LongLivedHeap
from collector.registry_feed import RegistryFeed
from collector.retention import Retention

#: how often the loop looks for finished writes while one is in flight: a stored batch
#: is judged (and its alerts decided) this soon after InfluxDB answers
WRITE_POLL_S = 0.005


@dataclass(frozen=True)
class Batching:
    """When the open batch is sealed (the engine's ticks: `AlertHandOff.ticks`)."""

    max_messages: int = 500
    max_lines: int = 5000
    max_wait_s: float = 0.2


class Pipeline:
    def __init__(self, ingest: IngestSource, builder: BatchBuilder, writer: BatchWriter,
                 alerts: AlertHandOff, engine_state: EngineStateFile, gauges: Gauges,
                 batching: Batching = Batching(), *, feed: RegistryFeed | None = None,
                 points: CountyPoints | None = None,
                 retention: Retention | None = None,
                 heap: LongLivedHeap | None = None) -> None:
        self.ingest = ingest
        self.builder = builder
        self.writer = writer
        self.alerts = alerts
        self.engine_state = engine_state
        self.gauges = gauges
        self.batching = batching
        self.feed = feed
        self.points = points
        self.retention = retention
        self.heap = heap
        # Also stops a writer holding a batch that neither storage nor the spool takes.
        self.stopping: threading.Event = writer.stopping

    @property
    def counters(self) -> Counters:
        return self.builder.counters

    def health_report(self) -> dict[str, object]:
        return self.gauges.health_report()

    def run(self) -> None:
        b, builder, ticks = self.batching, self.builder, self.alerts.ticks
        next_save = time.monotonic() + self.engine_state.every_s
        while not self.stopping.is_set():
            now = time.monotonic()
            wait = min(b.max_wait_s, ticks.wait_s(now))
            if builder.open.deliveries or builder.open.lines:
                wait = min(wait, max(0.0, builder.open.started + b.max_wait_s - now))
            if not self.writer.idle:
                wait = min(wait, WRITE_POLL_S)
            for d in self.ingest.take(b.max_messages - len(builder.open.deliveries), wait):
                self._add(d)
            o = builder.open
            if (o.deliveries or o.lines) and (len(o.deliveries) >= b.max_messages
                                 or len(o.lines) >= b.max_lines
                                 or time.monotonic() >= o.started + b.max_wait_s):
                self.flush()
            self._housekeeping()
            self.alerts.tick_if_due(time.monotonic())
            if time.monotonic() >= next_save:
                next_save = time.monotonic() + self.engine_state.every_s
                self.engine_state.save()
        self.drain()
        self.engine_state.save()

    def _add(self, d: Delivery) -> None:
        """Add a delivery; a suspect message (in flight at a crash) goes in a batch alone."""
        builder = self.builder
        if builder.isolated or (builder.open.deliveries and builder.suspect(d)):
            self.flush()
        builder.add(d)
        if builder.isolated or len(builder.open.lines) >= self.batching.max_lines:
            self.flush()

    def _housekeeping(self) -> None:
        self.builder.tags.refresh()
        if self.feed is not None:
            self.feed.update(int(time.time() * 1000))
        if self.retention is not None:  # forget the long silent, declare old gaps lost
            self.retention.run(int(time.time() * 1000))
        if self.points is not None:
            lines = self.points.take()
            if lines:  # alert events and device places ride with the next batch
                self.builder.add_lines(lines)
        self.writer.complete_finished()
        if self.writer.idle and not self.builder.open.deliveries:
            self.writer.replay_spool()
        self.gauges.update()
        if self.heap is not None and self.heap.freeze_if_due():
            self.gauges.metrics.gc_frozen.set(self.heap.frozen())

    def flush(self) -> bool:
        """Seal the open batch and start its write; True unless an older write gave up."""
        sealed = self.builder.seal()
        return True if sealed is None else self.writer.submit(sealed)

    def drain(self) -> None:
        """Graceful stop: store and ack what is held; the rest stays with the broker.
        Alert events queued since the last housekeeping (the last tick's) are stored too:
        they are the record a device's next owner reads when it takes the device over
        (`collector.handover`), so a removed collector's last announcements must not
        stay in its memory."""
        b = self.batching
        while True:
            batch = self.ingest.take(b.max_messages, 0.0)
            if not batch:
                break
            for d in batch:
                self._add(d)
        if self.points is not None:
            while lines := self.points.take():
                self.builder.add_lines(lines)
                self.flush()
        self.flush()
        self.writer.close()
        self.gauges.update()

    def process(self, batch: list[Delivery]) -> None:
        """Take, store and ack a batch of deliveries at once."""
        for d in batch:
            self._add(d)
        self.flush()
        while not self.writer.idle:
            self.writer.complete()
