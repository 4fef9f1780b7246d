"""Builds the open batch from deliveries: validate, drop repeats, encode, sum the hours.

Each delivery is accepted (its fresh valid readings become lines, its status a status
line; each invalid reading is quarantined alone) or dead-lettered with its reason; `seal`
closes the batch with the lines of the hours it touched and the checkpoint of the state it
changed, ready for the batch writer.

Repeats are dropped by (device, outbox epoch, seq): the seq tracker's key is the device,
or `device/epoch` for payloads that carry an epoch. No message can stop ingestion: an
exception while building from it quarantines it (`processing_error`), and a message that
was in flight when the collector crashed is processed alone next time and quarantined
after `MAX_ATTEMPTS` (`collector.quarantine`).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter

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
from collector.line_protocol import READINGS, fields_of, reading_lines, status_line
from collector.metrics import Metrics
from collector.quarantine import MAX_ATTEMPTS, Quarantine, message_key
from collector.state_store import Snapshot, StateStore
from collector.tag_cache import TagCache

log = logging.getLogger(__name__)

_SEQ_FIELD = re.compile(r",seq=(\d+)i,")
_SENSOR = attrgetter("sensor", "sensor_idx")
_TS, _SEQ = attrgetter("ts"), attrgetter("seq")
_PM2_5, _PM10 = attrgetter("pm2_5"), attrgetter("pm10")


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
    keys: list[str] = field(default_factory=list)  # its messages' keys (attempt counting)
    inflight_id: int = 0  # its row in the quarantine's in-flight table


def seq_key(device: str, epoch: str) -> str:
    """The seq tracker's key: an epoch starts its own sequence ("" = before epochs)."""
    return f"{device}/{epoch}" if epoch else device


class BatchBuilder:
    def __init__(self, intake: Intake, tags: TagCache, dead_letters: DeadLetters,
                 counters: Counters, metrics: Metrics,
                 quarantine: Quarantine | None = None) -> None:
        self.quarantine = quarantine
        self.intake = intake
        self.tags = tags
        self.dead_letters = dead_letters
        self.counters = counters
        self.metrics = metrics
        self.seqs = SeqTracker()
        self.aggregates = HourlyAggregates()
        self.health = DeviceHealth()
        self.open = Batch()
        self._keys: list[str] = []
        self._epochs: dict[str, str] = {}  # device -> latest outbox epoch seen
        #: the open batch holds a suspect message: seal it before adding another
        self.isolated = False

    def restore_epochs(self) -> None:
        """After the seq state is restored: each device's known epoch, from its keys."""
        for key in self.seqs.devices:
            device, _, epoch = key.partition("/")
            self._epochs.setdefault(device, epoch)

    def suspect(self, d: Delivery) -> bool:
        """The message was in flight when the collector stopped abnormally."""
        q = self.quarantine
        return q is not None and bool(q.suspects) and \
            message_key(d.topic, d.payload) in q.suspects

    def add(self, d: Delivery) -> None:
        o = self.open
        if not o.deliveries:
            o.started = time.monotonic()
        o.deliveries.append(d)
        self.counters.messages += 1
        now_ms = int(time.time() * 1000)
        q = self.quarantine
        if q is not None:
            key = message_key(d.topic, d.payload)
            self._keys.append(key)
            attempts = q.suspects.get(key, 0) if q.suspects else 0
            if attempts:
                self.isolated = True
                if attempts >= MAX_ATTEMPTS:
                    device = d.topic.split("/")[3] if d.topic.count("/") == 4 else ""
                    self.dead_letters.message(
                        d, "poison", f"the collector stopped {attempts} times while this "
                                     "message was in flight; quarantined unprocessed", device)
                    return
        try:
            self._add(d, now_ms)
        except Exception as exc:  # no message may stop ingestion
            log.exception("processing a message on %s failed", d.topic)
            device = d.topic.split("/")[3] if d.topic.count("/") == 4 else ""
            self.dead_letters.message(d, "processing_error",
                                      f"{type(exc).__name__}: {exc}", device)

    def _add(self, d: Delivery, now_ms: int) -> None:
        o = self.open
        try:
            device, kind = parse_device_topic(d.topic, self.intake.prefix)
            if kind == "up":
                self.metrics.messages.labels("up").inc()
                self._add_up(device, d, now_ms)
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
            device = d.topic.split("/")[3] if d.topic.count("/") == 4 else ""
            self.dead_letters.message(d, exc.reason, exc.detail, device)

    def _add_up(self, device: str, d: Delivery, now_ms: int) -> None:
        up, bad = decode_up(d.payload, device, now_ms, self.intake.max_payload_bytes,
                            self.intake.max_future_ms)
        known = self.tags.registered(device)
        if known is None and self.tags.in_use:
            if self.intake.unknown_devices == "reject":
                raise WireError("unknown_device", f"device {device!r} is not in the registry")
            self.counters.unknown_device_readings += len(up.readings)
            self.metrics.unknown_devices.inc(len(up.readings))
        if bad:
            self.dead_letters.readings(device, d.topic, up.epoch, up.boot, bad)
        readings = up.readings
        self.metrics.readings_in.inc(len(readings))
        if self._epochs.get(device, up.epoch) != up.epoch:
            log.warning("device %s sends from a new outbox epoch %r (was %r): a new "
                        "sequence; the old epoch's readings stay stored", device, up.epoch,
                        self._epochs[device],
                        extra={"device": device, "epoch": up.epoch})
            self.metrics.new_epochs.inc()
            self.counters.new_epochs += 1
        self._epochs[device] = up.epoch
        if not readings:
            return
        before = self.seqs.duplicates
        keep = self.seqs.fresh(seq_key(device, up.epoch), list(map(_SEQ, readings)))
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
        corrected: list[float | None] = [None] * len(readings)
        if cal is None:  # each sensor's run of readings encoded at once
            for (sensor, idx), run in groupby(readings, _SENSOR):
                lines += reading_lines(self.tags.reading(device, sensor, idx), list(run))
        else:
            tags = None
            last_sensor: tuple[str, int] | None = None
            for i, r in enumerate(readings):
                if (r.sensor, r.sensor_idx) != last_sensor:
                    last_sensor = (r.sensor, r.sensor_idx)
                    tags = self.tags.reading(device, r.sensor, r.sensor_idx)
                extra = ""
                v = corrected[i] = cal.correct(r.pm2_5, r.pm2_5_cf1, r.humidity_pct)
                if v is not None:
                    extra = f",pm2_5_corr={v!r}"
                lines.append(f"{tags} {fields_of(r, extra)} {r.ts}")
        ts = list(map(_TS, readings))
        self.aggregates.add(device, ts, [list(map(_PM2_5, readings)),
                                         list(map(_PM10, readings)), corrected])
        o.readings += len(readings)
        o.devices.extend([device] * len(readings))
        o.ts.extend(ts)
        o.fresh.extend(readings)
        o.newest.append(max(ts))

    def unstore(self, b: Batch, refused: list[str]) -> None:
        """Storage refused these lines of a sealed batch: its refused readings leave the
        batch (not counted as stored, not judged) and their hours (rewritten with the next
        batch). Refusals are rare: a linear search is enough."""
        prefix = READINGS + ","
        drop: set[int] = set()
        for line in refused:
            if not line.startswith(prefix):
                continue
            m = _SEQ_FIELD.search(line)
            ts = line.rpartition(" ")[2]
            if m is None or not ts.isdigit():
                continue
            seq, t = int(m.group(1)), int(ts)
            for i, r in enumerate(b.fresh):
                if (i not in drop and r.seq == seq and r.ts == t
                        and f",device={b.devices[i]}" in line):
                    drop.add(i)
                    self.aggregates.remove(b.devices[i], t, (r.pm2_5, r.pm10))
                    break
        if drop:
            keep = [i for i in range(len(b.fresh)) if i not in drop]
            b.fresh = [b.fresh[i] for i in keep]
            b.devices = [b.devices[i] for i in keep]
            b.ts = [b.ts[i] for i in keep]
            b.readings -= len(drop)

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
        keys, self._keys = self._keys, []
        self.isolated = False
        inflight = self.quarantine.begin(keys) if self.quarantine is not None else 0
        return SealedBatch(o, lines, snap, hours, keys, inflight)

    def forget(self, devices: list[str]) -> None:
        """Devices silent past retention (collector.retention): their health, known
        outbox epoch and cached tags go (their seq state went with the tracker's keys)."""
        for device in devices:
            self._epochs.pop(device, None)
        self.health.forget(devices)
        self.tags.forget(devices)
