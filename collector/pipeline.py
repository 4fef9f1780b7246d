"""The collector's loop: take messages → decode → dedup → store → checkpoint → ack → judge.

One thread does all of it in batches, so the order of the guarantee is plain to see:
nothing is acknowledged to the broker before InfluxDB or the durable spool has it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import tempfile
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from airgrid.wire import MAX_FUTURE_MS as MAX_FUTURE_MS_DEFAULT
from airgrid.wire import (
    Reading,
    WireError,
    deadletter_topic,
    decode_status,
    parse_device_topic,
)
from alert_rules.engine import Engine, SnapshotError
from alert_rules.transitions import Transition
from collector import alert_events
from collector.aggregates import HourlyAggregates
from collector.decode import decode_up
from collector.dedup import SeqTracker
from collector.device_health import DeviceHealth
from collector.handover import HandOver
from collector.influx_sink import StorageSink
from collector.ingest_source import Delivery, IngestSource
from collector.line_protocol import READINGS, escape_tag, fields_of, status_line, tag_set
from collector.metrics import Metrics
from collector.registry import RegistryWatcher
from collector.spool import Spool, SpoolFull
from collector.state_store import Snapshot, StateStore
from collector.writer import StorageWriter, WriteOutcome

if TYPE_CHECKING:
    from collector.alerting.service import AlertingService

log = logging.getLogger(__name__)


@dataclass
class Counters:
    messages: int = 0
    readings_stored: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    write_retries: int = 0
    alerts_published: int = 0
    stale_acks: int = 0
    unknown_device_readings: int = 0
    spooled: int = 0
    accepted: int = 0  # messages that passed validation (every message is accepted or rejected)


@dataclass
class _Open:
    """The batch being built: what to ack, what to write, what to feed the engine."""

    deliveries: list[Delivery] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    readings: int = 0
    devices: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    fresh: list[Reading] = field(default_factory=list)
    newest: list[int] = field(default_factory=list)  # per message: newest reading ts
    started: float = 0.0


@dataclass
class _Sealed:
    batch: _Open
    snapshot: Snapshot
    future: Future[WriteOutcome | None]
    agg_keys: frozenset[tuple[str, int]]


class Pipeline:
    def __init__(
        self, ingest: IngestSource, sink: StorageSink, engine: Engine, prefix: str = "airgrid",
        max_messages: int = 500, max_wait_s: float = 0.2, tick_interval_s: float = 1.0,
        *, max_lines: int = 5000, spool: Spool | None = None, state: StateStore | None = None,
        registry: RegistryWatcher | None = None, unknown_devices: str = "accept",
        metrics: Metrics | None = None, retries: int = 2, backoff_s: float = 0.2,
        max_payload_bytes: int = 256 * 1024, max_future_ms: int = MAX_FUTURE_MS_DEFAULT,
        max_writes: int = 2, handover: HandOver | None = None,
    ) -> None:
        self.handover = handover  # province: rebuild devices new to this collector
        self.ingest = ingest
        self.sink = sink
        self.engine = engine
        self.prefix = prefix
        self.max_messages = max_messages
        self.max_lines = max_lines
        self.max_wait_s = max_wait_s
        self.tick_interval_s = tick_interval_s
        self.max_payload_bytes = max_payload_bytes
        self.max_future_ms = max_future_ms
        self.metrics = metrics if metrics is not None else Metrics()
        # Without a configured spool directory the spool is a temp dir: still ordered and
        # retried, but not durable across a restart (run from the CLI, it always is).
        if spool is None:
            spool = Spool(Path(tempfile.mkdtemp(prefix="airgrid-spool-")), 1 << 30)
        self.spool = spool
        self.writer = StorageWriter(sink, self.spool, retries, backoff_s,
                                    observe_latency=self.metrics.write_latency.observe)
        self.state = state
        self.registry = registry if registry is not None else RegistryWatcher(None)
        self.unknown_devices = unknown_devices
        self.seqs = SeqTracker()
        self.aggregates = HourlyAggregates()
        self.health = DeviceHealth()
        self.counters = Counters()
        self.stopping = threading.Event()
        # The alert lifecycle (collector/alerting); without it transitions go out as events.
        self.alerting: AlertingService | None = None
        # Where the engine's state is saved (rule windows, pending/firing per device).
        self.engine_state_path: Path | None = None
        self.engine_state_every_s = 30.0
        self._tags: dict[tuple[str, str, int], str] = {}
        self._dev_tags: dict[str, str] = {}
        self._open = _Open()
        self._spool_full_since: float | None = None
        self._inflight: deque[_Sealed] = deque()
        self._replay_refused: list[tuple[str, str]] = []
        self.max_writes = max_writes
        self._executor = ThreadPoolExecutor(max_writes, thread_name_prefix="storage-write")
        if state is not None:
            n = state.restore(self.seqs, self.aggregates)
            log.info("restored seq state of %d devices", n)

    # --- tags -------------------------------------------------------------------------

    def device_tags(self, device: str) -> str:
        """`,device=…` plus registry tags (or unregistered=true when a registry is in use)."""
        tags = self._dev_tags.get(device)
        if tags is None:
            known = self.registry.devices.get(device)
            d = {"device": device}
            if known is not None:
                d.update(known.tags())
                if known.calibration is not None:
                    d["cal"] = known.calibration.formula
            elif self.registry.path is not None:
                d["unregistered"] = "true"
            tags = self._dev_tags[device] = tag_set(d)
        return tags

    def _reading_tags(self, device: str, sensor: str, idx: int) -> str:
        key = (device, sensor, idx)
        tags = self._tags.get(key)
        if tags is None:
            extra = f",sensor={escape_tag(sensor)}" + (f",idx={idx}" if idx else "")
            tags = self._tags[key] = f"{READINGS}{self.device_tags(device)}{extra}"
        return tags

    # --- loop -------------------------------------------------------------------------

    def run(self) -> None:
        next_tick = time.monotonic()
        next_save = time.monotonic() + self.engine_state_every_s
        while not self.stopping.is_set():
            wait = self.max_wait_s
            if self._open.deliveries:
                wait = max(0.0, self._open.started + self.max_wait_s - time.monotonic())
            for d in self.ingest.take(self.max_messages - len(self._open.deliveries), wait):
                self._add(d)
                if len(self._open.lines) >= self.max_lines:
                    self.flush()
            o = self._open
            if o.deliveries and (len(o.deliveries) >= self.max_messages
                                 or len(o.lines) >= self.max_lines
                                 or time.monotonic() >= o.started + self.max_wait_s):
                self.flush()
            self._housekeeping()
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.tick_interval_s
                self.publish_transitions(self.engine.tick(int(time.time() * 1000)))
            if time.monotonic() >= next_save:
                next_save = time.monotonic() + self.engine_state_every_s
                self.save_engine_state()
        self.drain()
        self.save_engine_state()

    def save_engine_state(self) -> None:
        """Write the engine's snapshot atomically; a failure is logged, never fatal."""
        if self.engine_state_path is None:
            return
        tmp = self.engine_state_path.with_name(self.engine_state_path.name + ".tmp")
        try:
            self.engine_state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(self.engine.snapshot())
            os.replace(tmp, self.engine_state_path)
        except OSError as exc:
            log.error("engine state not saved to %s: %s", self.engine_state_path, exc)

    def restore_engine_state(self) -> bool:
        """Load the saved snapshot; one taken with other rules is set aside, not fatal."""
        path = self.engine_state_path
        if path is None or not path.exists():
            return False
        try:
            self.engine.restore(path.read_bytes())
        except (OSError, SnapshotError) as exc:
            log.warning("engine state in %s not restored (%s); starting with empty windows",
                        path, exc)
            return False
        log.info("engine state restored: %d devices", self.engine.fleet.size)
        return True

    def _housekeeping(self) -> None:
        if self.registry.poll():
            self._tags.clear()
            self._dev_tags.clear()
        if self.registry.reload_errors > self._seen_reload_errors:
            self.metrics.registry_reload_errors.inc(
                self.registry.reload_errors - self._seen_reload_errors)
            self._seen_reload_errors = self.registry.reload_errors
        self.metrics.registry_devices.set(len(self.registry.devices))
        while self._inflight and self._inflight[0].future.done():
            self.complete()
        if not self._inflight and not self._open.deliveries:
            for line, reason in self.writer.replay():
                self._dead_letter_line(line, reason)
        self._update_gauges()

    _seen_reload_errors = 0
    _next_completeness = 0.0

    def drain(self) -> None:
        """Graceful stop: store and ack what is held; the rest stays with the broker."""
        while True:
            batch = self.ingest.take(self.max_messages, 0.0)
            if not batch:
                break
            for d in batch:
                self._add(d)
            if len(self._open.lines) >= self.max_lines:
                self.flush()
        self.flush()
        while self._inflight:
            self.complete()
        self._executor.shutdown()
        for line, reason in self.writer.replay(force=True):
            self._dead_letter_line(line, reason)
        self._update_gauges()

    def process(self, batch: list[Delivery]) -> None:
        """Take, store and ack a batch of deliveries at once."""
        for d in batch:
            self._add(d)
        self.flush()
        while self._inflight:
            self.complete()

    # --- one message ------------------------------------------------------------------

    def _add(self, d: Delivery) -> None:
        o = self._open
        if not o.deliveries:
            o.started = time.monotonic()
        o.deliveries.append(d)
        self.counters.messages += 1
        now_ms = int(time.time() * 1000)
        try:
            device, kind = parse_device_topic(d.topic, self.prefix)
            if kind == "up":
                self.metrics.messages.labels("up").inc()
                self._add_up(device, d.payload, now_ms)
            elif kind == "status":
                self.metrics.messages.labels("status").inc()
                if len(d.payload) > self.max_payload_bytes:
                    raise WireError("too_large", f"{len(d.payload)} bytes")
                if not d.payload:
                    self.counters.accepted += 1
                    return  # a retained status being cleared
                status = decode_status(d.payload, topic_device=device)
                h = self.health.update(device, status, now_ms)
                o.lines.append(status_line(self.device_tags(device), status, now_ms))
                log.info("device %s is %s", device, status.state,
                         extra={"device": device, "state": status.state,
                                "outbox_depth": h.outbox_depth})
            else:
                raise WireError("bad_topic", f"unknown kind {kind!r} in {d.topic!r}")
            self.counters.accepted += 1
        except WireError as exc:
            self.dead_letter(d, exc.reason, exc.detail)

    def _add_up(self, device: str, payload: bytes, now_ms: int) -> None:
        up = decode_up(payload, device, now_ms, self.max_payload_bytes, self.max_future_ms)
        known = self.registry.devices.get(device)
        if known is None and self.registry.path is not None:
            if self.unknown_devices == "reject":
                raise WireError("unknown_device", f"device {device!r} is not in the registry")
            self.counters.unknown_device_readings += len(up.readings)
            self.metrics.unknown_devices.inc(len(up.readings))
        readings = up.readings
        self.metrics.readings_in.inc(len(readings))
        before = self.seqs.duplicates
        keep = self.seqs.fresh(device, [r.seq for r in readings])
        dups = self.seqs.duplicates - before
        if dups:
            self.counters.duplicates += dups
            self.metrics.duplicates.inc(dups)
        if not keep:
            return
        if len(keep) < len(readings):
            readings = tuple(readings[i] for i in keep)
        o = self._open
        cal = known.calibration if known is not None else None
        lines = o.lines
        tags = None
        last_sensor: tuple[str, int] | None = None
        for r in readings:
            if (r.sensor, r.sensor_idx) != last_sensor:
                last_sensor = (r.sensor, r.sensor_idx)
                tags = self._reading_tags(device, r.sensor, r.sensor_idx)
            extra = ""
            if cal is not None:
                v = cal.correct(r.pm2_5, r.pm2_5_cf1, r.humidity_pct)
                if v is not None:
                    extra = f",pm2_5_corr={v!r}"
            lines.append(f"{tags} {fields_of(r, extra)} {r.ts}")
        ts = [r.ts for r in readings]
        self.aggregates.add(device, ts, [[r.pm2_5 for r in readings],
                                         [r.pm10 for r in readings]])
        o.readings += len(readings)
        o.devices.extend([device] * len(readings))
        o.ts.extend(ts)
        o.fresh.extend(readings)
        o.newest.append(max(ts))

    # --- one batch --------------------------------------------------------------------
    # Sealed batches are written by worker threads (up to max_writes at once) while the
    # next one is decoded; they are completed in order, and a batch is acked (and its state
    # checkpointed) only when its own write has returned. Readings are idempotent, so
    # concurrent writes may land in any order; an hourly aggregate is a running total, so
    # a batch carrying an hour that a write in flight also carries waits for that write.

    def flush(self) -> bool:
        """Seal the open batch and start its write; True unless an older write gave up."""
        o = self._open
        if not o.deliveries:
            return True
        ok = True
        keys = set(self.aggregates.touched)
        while self._inflight and (len(self._inflight) >= self.max_writes or any(
                not keys.isdisjoint(b.agg_keys) for b in self._inflight)):
            ok = self.complete() and ok
        lines = o.lines + self.aggregates.lines(self._dev_tags_all())
        touched = self.seqs.commit()
        hours = self.aggregates.commit(int(time.time() * 1000))
        snap = StateStore.snapshot(self.seqs, touched, self.aggregates, hours)
        self._open = _Open()
        self._inflight.append(
            _Sealed(o, snap, self._executor.submit(self._store, lines), frozenset(keys)))
        return ok

    def complete(self) -> bool:
        """Wait for the oldest write in flight, then checkpoint, ack and feed the engine."""
        if not self._inflight:
            return True
        sealed = self._inflight.popleft()
        outcome = sealed.future.result()
        if outcome is None:
            return False  # stopping while nothing could take it: not acked, redelivered later
        o = sealed.batch
        self.counters.spooled += outcome.spooled
        for line, reason in outcome.refused:
            self._dead_letter_line(line, reason)
        if self.state is not None:
            self.state.save(sealed.snapshot)
        self.counters.stale_acks += self.ingest.ack(o.deliveries)
        self.counters.readings_stored += o.readings
        self.metrics.readings_stored.inc(o.readings)
        now_ms = time.time() * 1000
        for newest in o.newest:
            self.metrics.lag.observe(max(0.0, (now_ms - newest) / 1000))
        if o.fresh and self.handover is not None:
            self.handover.before_ingest(o.devices, o.ts, int(now_ms))
        if o.fresh:
            self.engine.ingest(o.devices, o.ts, {
                f: [getattr(r, f, None) for r in o.fresh] for f in self.engine.fleet.fields},
                flagged=[bool(r.flags) for r in o.fresh])
        return True

    def _store(self, lines: list[str]) -> WriteOutcome | None:
        """Worker thread: storage or spool; holds the batch while neither can take it."""
        delay = 0.5
        self._replay_refused += self.writer.replay()  # what waits in the spool goes first
        while True:
            try:
                outcome = self.writer.store(lines)
                break
            except SpoolFull as exc:
                if self._spool_full_since is None:
                    self._spool_full_since = time.monotonic()
                    log.error("cannot store or spool a batch: %s", exc)
                self.metrics.spool_full.set(1)
                if self.stopping.wait(delay):
                    return None
                delay = min(delay * 2, 5.0)
                self._replay_refused += self.writer.replay(force=True)
        if self._spool_full_since is not None:
            log.info("storage or spool accepts batches again")
            self._spool_full_since = None
            self.metrics.spool_full.set(0)
        if self._replay_refused:
            refused, self._replay_refused = self._replay_refused, []
            return WriteOutcome(outcome.stored, outcome.spooled, refused + outcome.refused)
        return outcome

    def _dev_tags_all(self) -> dict[str, str]:
        for device, _ in self.aggregates.touched:
            self.device_tags(device)
        return self._dev_tags

    def _update_gauges(self) -> None:
        m = self.metrics
        now = time.monotonic()
        if now >= self._next_completeness:  # walks every device: once a second is plenty
            self._next_completeness = now + 1.0
            m.completeness.set(self.seqs.completeness())
            m.seq_missing.set(sum(len(d.missing) for d in self.seqs.devices.values()))
        m.spool_depth.set(self.spool.lines)
        m.spool_bytes.set(self.spool.bytes)
        m.devices_online.set(self.health.online_count())
        m.write_retries.inc(self.writer.write_retries - self.counters.write_retries)
        self.counters.write_retries = self.writer.write_retries

    def completeness(self) -> float:
        return self.seqs.completeness()

    def health_report(self) -> dict[str, object]:
        connected = self.ingest.connected.is_set()
        return {
            "ok": connected and self._spool_full_since is None,
            "broker_connected": connected,
            "storage_healthy": self.writer.healthy,
            "spool_lines": self.spool.lines,
            "spool_full": self._spool_full_since is not None,
            "devices_online": self.health.online_count(),
            "seq_completeness": round(self.seqs.completeness(), 6),
        }

    # --- dead letter and alerts -------------------------------------------------------

    def dead_letter(self, d: Delivery, reason: str, detail: str) -> None:
        self.counters.rejected[reason] += 1
        self.metrics.rejected.labels(reason).inc()
        log.warning("rejected message on %s: %s: %s", d.topic, reason, detail,
                    extra={"topic": d.topic, "reason": reason})
        self._publish_dead_letter(reason, detail, d.topic, d.payload)

    def _dead_letter_line(self, line: str, reason: str) -> None:
        self.counters.rejected["storage_refused"] += 1
        self.metrics.rejected.labels("storage_refused").inc()
        log.error("storage refused a line: %s", reason)
        self._publish_dead_letter("storage_refused", reason, "", line.encode())

    def _publish_dead_letter(self, reason: str, detail: str, topic: str, payload: bytes) -> None:
        body = {
            "reason": reason, "detail": detail, "topic": topic,
            "payload_b64": base64.b64encode(payload[:65536]).decode(),
            "at_ms": int(time.time() * 1000),
        }
        self.ingest.publish(deadletter_topic(self.prefix), json.dumps(body).encode(), qos=1)

    def publish_transitions(self, transitions: list[Transition]) -> None:
        if self.alerting is not None:
            self.alerting.handle(transitions)
            decided = sum(t.state != "pending" for t in transitions)
            self.counters.alerts_published += decided
            self.metrics.alerts.inc(decided)
            return
        for t in transitions:
            topic, payload = alert_events.encode(t, self.prefix)
            self.ingest.publish(topic, payload, qos=1)
            self.counters.alerts_published += 1
            self.metrics.alerts.inc()
            log.info("alert %s %s %s value=%.1f", t.rule, t.subject, t.state, t.value)
