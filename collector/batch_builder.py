"""Builds the open batch from deliveries: validate, drop repeats, encode, sum the hours.

Each delivery is accepted (its fresh readings become lines, its status a status line) or
dead-lettered with its reason; `seal` closes the batch with the lines of the hours it
touched and the checkpoint of the state it changed, ready for the batch writer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from airgrid.wire import (
    MAX_FUTURE_MS,
    MAX_PAYLOAD_BYTES,
    WireError,
    decode_status,
    parse_device_topic,
)
from collector.aggregates import HourlyAggregates, Key
from collector.batch import Batch
from collector.counters import Counters
from collector.dead_letters import DeadLetters
from collector.decode import decode_up
from collector.dedup import SeqTracker
from collector.delivery import Delivery
from collector.device_health import DeviceHealth
from collector.line_protocol import fields_of, status_line
from collector.metrics import Metrics
from collector.state_store import Snapshot, StateStore
from collector.tag_cache import TagCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Intake:
    """What a message must satisfy to be accepted."""

    prefix: str = "airgrid"
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    max_future_ms: int = MAX_FUTURE_MS
    unknown_devices: str = "accept"  # or "reject": devices the registry does not list


@dataclass(frozen=True)
class SealedBatch:
    batch: Batch
    lines: list[str]  # the batch's lines and the touched hours' aggregates
    snapshot: Snapshot  # the state to checkpoint once the lines are stored
    hours: frozenset[Key]  # (device, hour) aggregates it carries


class BatchBuilder:
    def __init__(self, intake: Intake, tags: TagCache, dead_letters: DeadLetters,
                 counters: Counters, metrics: Metrics) -> None:
        self.intake = intake
        self.tags = tags
        self.dead_letters = dead_letters
        self.counters = counters
        self.metrics = metrics
        self.seqs = SeqTracker()
        self.aggregates = HourlyAggregates()
        self.health = DeviceHealth()
        self.open = Batch()

    def add(self, d: Delivery) -> None:
        o = self.open
        if not o.deliveries:
            o.started = time.monotonic()
        o.deliveries.append(d)
        self.counters.messages += 1
        now_ms = int(time.time() * 1000)
        try:
            device, kind = parse_device_topic(d.topic, self.intake.prefix)
            if kind == "up":
                self.metrics.messages.labels("up").inc()
                self._add_up(device, d.payload, now_ms)
            elif kind == "status":
                self.metrics.messages.labels("status").inc()
                if len(d.payload) > self.intake.max_payload_bytes:
                    raise WireError("too_large", f"{len(d.payload)} bytes")
                if not d.payload:
                    self.counters.accepted += 1
                    return  # a retained status being cleared
                status = decode_status(d.payload, topic_device=device)
                h = self.health.update(device, status, now_ms)
                o.lines.append(status_line(self.tags.device(device), status, now_ms))
                log.info("device %s is %s", device, status.state,
                         extra={"device": device, "state": status.state,
                                "outbox_depth": h.outbox_depth})
            else:
                raise WireError("bad_topic", f"unknown kind {kind!r} in {d.topic!r}")
            self.counters.accepted += 1
        except WireError as exc:
            self.dead_letters.message(d, exc.reason, exc.detail)

    def _add_up(self, device: str, payload: bytes, now_ms: int) -> None:
        up = decode_up(payload, device, now_ms, self.intake.max_payload_bytes,
                       self.intake.max_future_ms)
        known = self.tags.registered(device)
        if known is None and self.tags.in_use:
            if self.intake.unknown_devices == "reject":
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
        o = self.open
        cal = known.calibration if known is not None else None
        lines = o.lines
        tags = None
        last_sensor: tuple[str, int] | None = None
        corrected: list[float | None] = [None] * len(readings)
        for i, r in enumerate(readings):
            if (r.sensor, r.sensor_idx) != last_sensor:
                last_sensor = (r.sensor, r.sensor_idx)
                tags = self.tags.reading(device, r.sensor, r.sensor_idx)
            extra = ""
            if cal is not None:
                v = corrected[i] = cal.correct(r.pm2_5, r.pm2_5_cf1, r.humidity_pct)
                if v is not None:
                    extra = f",pm2_5_corr={v!r}"
            lines.append(f"{tags} {fields_of(r, extra)} {r.ts}")
        ts = [r.ts for r in readings]
        self.aggregates.add(device, ts, [[r.pm2_5 for r in readings],
                                         [r.pm10 for r in readings], corrected])
        o.readings += len(readings)
        o.devices.extend([device] * len(readings))
        o.ts.extend(ts)
        o.fresh.extend(readings)
        o.newest.append(max(ts))

    def add_lines(self, lines: list[str]) -> None:
        """Points the collector makes itself (alert events, device places): they are
        stored, or spooled, with the open batch."""
        o = self.open
        if not o.deliveries and not o.lines:
            o.started = time.monotonic()
        o.lines.extend(lines)

    def seal(self) -> SealedBatch | None:
        """Close the open batch (None if it holds nothing) and start a new one."""
        o = self.open
        if not o.deliveries and not o.lines:
            return None
        hours = frozenset(self.aggregates.touched)
        lines = o.lines + self.aggregates.lines(
            self.tags.devices([device for device, _ in hours]))
        touched = self.seqs.commit()
        committed = self.aggregates.commit(int(time.time() * 1000))
        snap = StateStore.snapshot(self.seqs, touched, self.aggregates, committed)
        self.open = Batch()
        return SealedBatch(o, lines, snap, hours)
