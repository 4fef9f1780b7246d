"""The dead letter: what could not be stored goes to `<prefix>/v1/deadletter`, with why.

A rejected message keeps its topic and (up to 64 KiB of) its payload; a line that storage
refused goes alone, so the rest of its batch is stored. Each is counted by reason.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable

from airgrid.wire import deadletter_topic
from collector.counters import Counters
from collector.delivery import Delivery
from collector.metrics import Metrics

log = logging.getLogger(__name__)

#: publish(topic, payload, qos): the ingest source's, so a dead letter takes its broker
Publish = Callable[..., None]


class DeadLetters:
    def __init__(self, publish: Publish, prefix: str, counters: Counters,
                 metrics: Metrics) -> None:
        self.publish = publish
        self.topic = deadletter_topic(prefix)
        self.counters = counters
        self.metrics = metrics

    def message(self, d: Delivery, reason: str, detail: str) -> None:
        self.counters.rejected[reason] += 1
        self.metrics.rejected.labels(reason).inc()
        log.warning("rejected message on %s: %s: %s", d.topic, reason, detail,
                    extra={"topic": d.topic, "reason": reason})
        self._publish(reason, detail, d.topic, d.payload)

    def line(self, line: str, reason: str) -> None:
        self.counters.rejected["storage_refused"] += 1
        self.metrics.rejected.labels("storage_refused").inc()
        log.error("storage refused a line: %s", reason)
        self._publish("storage_refused", reason, "", line.encode())

    def lines(self, refused: list[tuple[str, str]]) -> None:
        for line, reason in refused:
            self.line(line, reason)

    def _publish(self, reason: str, detail: str, topic: str, payload: bytes) -> None:
        body = {
            "reason": reason, "detail": detail, "topic": topic,
            "payload_b64": base64.b64encode(payload[:65536]).decode(),
            "at_ms": int(time.time() * 1000),
        }
        self.publish(self.topic, json.dumps(body).encode(), qos=1)
