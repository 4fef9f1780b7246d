"""The collector's loop: take messages → decode → dedup → store → ack → judge → alert.

One thread does all of it in batches, so the order of the guarantee is plain to see:
nothing is acknowledged to the broker before InfluxDB has accepted it.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airgrid.wire import (
    Reading,
    WireError,
    deadletter_topic,
    decode_status,
    decode_up,
    parse_device_topic,
)
from alert_rules.engine import Engine
from alert_rules.transitions import Transition
from collector import alert_events
from collector.dedup import SeqTracker
from collector.errors import Rejected, RetryLater
from collector.influx_sink import StorageSink
from collector.line_protocol import reading_line, status_line, tag_set
from collector.mqtt_ingest import Delivery, MqttIngest

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


class Pipeline:
    def __init__(
        self, ingest: MqttIngest, sink: StorageSink, engine: Engine, prefix: str = "airgrid",
        max_messages: int = 500, max_wait_s: float = 0.2, tick_interval_s: float = 1.0,
    ) -> None:
        self.ingest = ingest
        self.sink = sink
        self.engine = engine
        self.prefix = prefix
        self.max_messages = max_messages
        self.max_wait_s = max_wait_s
        self.tick_interval_s = tick_interval_s
        self.seqs = SeqTracker()
        self.counters = Counters()
        self.stopping = threading.Event()
        self._tags: dict[str, str] = {}
        # The alert lifecycle (collector/alerting); without it transitions go out as events.
        self.alerting: AlertingService | None = None

    def device_tags(self, device: str) -> str:
        tags = self._tags.get(device)
        if tags is None:
            tags = self._tags[device] = tag_set({"device": device})
        return tags

    def run(self) -> None:
        next_tick = time.monotonic()
        while not self.stopping.is_set():
            batch = self.ingest.take(self.max_messages, self.max_wait_s)
            if batch:
                self.process(batch)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.tick_interval_s
                self.publish_transitions(self.engine.tick(int(time.time() * 1000)))

    def process(self, batch: list[Delivery]) -> None:
        now_ms = int(time.time() * 1000)
        lines: list[str] = []
        fresh: list[tuple[str, Reading]] = []
        in_batch: set[tuple[str, int]] = set()
        for d in batch:
            self.counters.messages += 1
            try:
                device, kind = parse_device_topic(d.topic, self.prefix)
                if kind == "up":
                    up = decode_up(d.payload, topic_device=device, now_ms=now_ms)
                    tags = self.device_tags(device)
                    for r in up.readings:
                        key = (device, r.seq)
                        if key in in_batch or self.seqs.seen(device, r.seq):
                            self.counters.duplicates += 1
                            continue
                        in_batch.add(key)
                        fresh.append((device, r))
                        lines.append(reading_line(tags, r))
                elif kind == "status":
                    status = decode_status(d.payload, topic_device=device)
                    lines.append(status_line(self.device_tags(device), status, now_ms))
                else:
                    raise WireError("bad_topic", f"unknown kind {kind!r} in {d.topic!r}")
            except WireError as exc:
                self.dead_letter(d, exc.reason, exc.detail)
        if not self.store(lines):
            return  # stopping while storage is down: nothing acked, the broker keeps it
        for device, r in fresh:
            self.seqs.mark(device, r.seq)
        self.counters.readings_stored += len(fresh)
        self.counters.stale_acks += self.ingest.ack(batch)
        if fresh:
            self.engine.ingest(
                [dev for dev, _ in fresh], [r.ts for _, r in fresh],
                {f: [getattr(r, f) for _, r in fresh] for f in self.engine.fleet.fields},
            )
            self.publish_transitions(self.engine.tick(now_ms))

    def store(self, lines: list[str]) -> bool:
        delay = 0.2
        while lines:
            try:
                self.sink.write(lines)
                return True
            except RetryLater as exc:
                self.counters.write_retries += 1
                log.warning("storage unavailable (%s); retrying in %.1f s", exc, delay)
                if self.stopping.wait(delay):
                    return False
                delay = min(delay * 2, 5.0)
            except Rejected as exc:
                # The whole batch refused: should not happen for validated input; keep
                # going line by line so only the bad ones are lost to the dead letter.
                log.error("storage rejected a batch: %s", exc)
                for line in lines:
                    self._write_one(line)
                return True
        return True

    def _write_one(self, line: str) -> bool:
        try:
            self.sink.write([line])
            return True
        except (Rejected, RetryLater) as exc:
            self.counters.rejected["storage"] += 1
            self._publish_dead_letter("storage", str(exc), "", line.encode())
            return False

    def dead_letter(self, d: Delivery, reason: str, detail: str) -> None:
        self.counters.rejected[reason] += 1
        log.warning("rejected message on %s: %s: %s", d.topic, reason, detail)
        self._publish_dead_letter(reason, detail, d.topic, d.payload)

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
            self.counters.alerts_published += sum(t.state != "pending" for t in transitions)
            return
        for t in transitions:
            topic, payload = alert_events.encode(t, self.prefix)
            self.ingest.publish(topic, payload, qos=1)
            self.counters.alerts_published += 1
            log.info("alert %s %s %s value=%.1f", t.rule, t.subject, t.state, t.value)
