"""The dead letter: what could not be stored goes to `<prefix>/v1/deadletter`, with why.

A rejected message keeps its topic and (up to 64 KiB of) its payload; a rejected reading
goes alone, so the good readings of its batch are stored; a line that storage refused
goes alone, so the rest of its batch is stored. Each is counted by reason (and device),
and rejected readings and messages are also kept in the durable quarantine
(`collector.quarantine`) for an operator to list and re-drive.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable

from airgrid.wire import BadReading, deadletter_topic
from collector.counters import Counters
from collector.delivery import Delivery
from collector.metrics import Metrics
from collector.quarantine import Quarantine

log = logging.getLogger(__name__)

#: publish(topic, payload, qos): the ingest source's, so a dead letter takes its broker
Publish = Callable[..., None]


class DeadLetters:
    def __init__(self, publish: Publish, prefix: str, counters: Counters,
                 metrics: Metrics, quarantine: Quarantine | None = None) -> None:
        self.publish = publish
        self.topic = deadletter_topic(prefix)
        self.counters = counters
        self.metrics = metrics
        self.quarantine = quarantine

    def message(self, d: Delivery, reason: str, detail: str, device: str = "") -> None:
        self.counters.rejected[reason] += 1
        self.metrics.rejected.labels(reason).inc()
        self.metrics.quarantined.labels(device, reason).inc()
        log.warning("rejected message on %s: %s: %s", d.topic, reason, detail,
                    extra={"topic": d.topic, "reason": reason, "device": device})
        if self.quarantine is not None:
            self.quarantine.add("message", device, d.topic, reason, detail, d.payload)
        self._publish(reason, detail, d.topic, d.payload)

    def readings(self, device: str, topic: str, epoch: str, boot: str,
                 bad: list[BadReading]) -> None:
        """Readings rejected one by one: the rest of their message is stored."""
        for b in bad:
            self.counters.rejected_readings[b.reason] += 1
            self.metrics.rejected.labels(b.reason).inc()
            self.metrics.quarantined.labels(device, b.reason).inc()
            log.warning("rejected reading %d of a message from %s: %s: %s", b.index, device,
                        b.reason, b.detail,
                        extra={"topic": topic, "reason": b.reason, "device": device})
            self._publish(b.reason, b.detail, topic, b.raw, device=device, epoch=epoch)
        if self.quarantine is not None:
            self.quarantine.add_many(("reading", device, topic, b.reason, b.detail, b.raw,
                                      epoch, boot) for b in bad)

    def line(self, line: str, reason: str) -> None:
        self.counters.rejected["storage_refused"] += 1
        self.metrics.rejected.labels("storage_refused").inc()
        log.error("storage refused a line: %s", reason)
        self._publish("storage_refused", reason, "", line.encode())

    def lines(self, refused: list[tuple[str, str]]) -> None:
        for line, reason in refused:
            self.line(line, reason)

    def _publish(self, reason: str, detail: str, topic: str, payload: bytes,
                 **extra: str) -> None:
        body = {
            "reason": reason, "detail": detail, "topic": topic,
            "payload_b64": base64.b64encode(payload[:65536]).decode(),
            "at_ms": int(time.time() * 1000), **extra,
        }
        self.publish(self.topic, json.dumps(body).encode(), qos=1)
