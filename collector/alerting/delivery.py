"""Retry stage: one worker thread per channel drains that channel's part of the outbox.

A slow or failing channel only ever holds up its own worker. Failures back off
exponentially (persisted `next_ms`, so a restart keeps the schedule); after `max_attempts`
a message is dead-lettered: kept in the outbox with status `dead`, logged, and counted.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from collector.alerting.channels.notifier import Notifier
from collector.alerting.config import ChannelSpec
from collector.alerting.errors import DeliveryRejected, DeliveryRetry
from collector.alerting.model import Message
from collector.alerting.store import Store

log = logging.getLogger(__name__)


class DeliveryStats:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.sent: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.dead: Counter[str] = Counter()
        self._sent = PromCounter("airgrid_alert_messages_sent", "Messages delivered",
                                 ["channel"], registry=self.registry)
        self._retries = PromCounter("airgrid_alert_delivery_retries", "Failed attempts retried",
                                    ["channel"], registry=self.registry)
        self._dead = PromCounter("airgrid_alert_dead_letters", "Messages given up on",
                                 ["channel"], registry=self.registry)

    def count(self, what: str, channel: str) -> None:
        getattr(self, what)[channel] += 1
        getattr(self, f"_{what}").labels(channel=channel).inc()


class ChannelWorker:
    def __init__(self, notifier: Notifier, spec: ChannelSpec, store: Store, stats: DeliveryStats,
                 clock: Callable[[], float] = time.time,
                 on_dead: Callable[[Message, int, str], None] | None = None,
                 on_outcome: Callable[[Message, bool, int], None] | None = None) -> None:
        self.notifier = notifier
        self.spec = spec
        self.store = store
        self.stats = stats
        self.clock = clock
        self.on_dead = on_dead
        self.on_outcome = on_outcome  # (message, delivered, at_ms): sent or dead-lettered
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"alert-{spec.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.drain()
                nxt = self.store.next_due_ms(self.spec.name)
            except sqlite3.ProgrammingError:
                if self._stop.is_set():
                    return  # stopped mid-send and the store is closed: the row stays pending
                raise
            except Exception:  # a bug here must not kill the channel for good
                log.exception("channel %s: delivery loop failed", self.spec.name)
                nxt = None
            wait = 1.0 if nxt is None else min(1.0, max(0.0, (nxt - self._now_ms()) / 1000))
            if wait > 0:
                self._wake.wait(wait)

    def drain(self) -> int:
        """Send what is due now; returns how many were delivered."""
        done = 0
        while not self._stop.is_set():
            batch = self.store.due(self.spec.name, self._now_ms())
            if not batch:
                return done
            try:
                results = self.notifier.send_many([m for m, _ in batch])
            except Exception as exc:  # a channel bug: every message of the batch is retried
                results = [exc] * len(batch)
            for (msg, attempts), err in zip(batch, results, strict=True):
                done += self._outcome(msg, attempts, err)
        return done

    def _outcome(self, msg: Message, attempts: int, exc: Exception | None) -> int:
        name = self.spec.name
        if isinstance(exc, DeliveryRejected):
            self._dead(msg, attempts + 1, f"rejected: {exc}")
            return 0
        if exc is not None:  # DeliveryRetry, or a channel bug: both are retried
            counts = not isinstance(exc, DeliveryRetry) or exc.counts
            after = exc.after_s if isinstance(exc, DeliveryRetry) else None
            n = attempts + 1 if counts else attempts
            if n >= self.spec.max_attempts:
                self._dead(msg, n, str(exc))
                return 0
            if counts:
                self.stats.count("retries", name)
            backoff = min(self.spec.backoff_ms * 2 ** max(n - 1, 0), self.spec.max_backoff_ms)
            delay = int(after * 1000) if after is not None else backoff
            log.warning("channel %s: %s to %r failed (attempt %d): %s; retry in %.1f s",
                        name, msg.id, msg.recipient, n, exc, delay / 1000)
            self.store.reschedule(msg.id, self._now_ms() + delay, n, str(exc))
            return 0
        now = self._now_ms()
        self.store.mark_sent(msg.id, now)
        self.stats.count("sent", name)
        self._tell(msg, True, now)
        return 1

    def _tell(self, msg: Message, delivered: bool, at_ms: int) -> None:
        if self.on_outcome is not None:
            try:
                self.on_outcome(msg, delivered, at_ms)
            except Exception:  # recording an outcome must not fail the delivery
                log.exception("channel %s: recording an outcome failed", self.spec.name)

    def _dead(self, msg: Message, attempts: int, error: str) -> None:
        log.error("channel %s: dead letter %s to %r after %d attempts: %s", self.spec.name,
                  msg.id, msg.recipient, attempts, error)
        now = self._now_ms()
        self.store.mark_dead(msg.id, now, attempts, error)
        self.stats.count("dead", self.spec.name)
        self._tell(msg, False, now)
        if self.on_dead is not None:
            try:
                self.on_dead(msg, attempts, error)
            except Exception:  # telling about a failure must not become another failure
                log.exception("channel %s: reporting a dead letter failed", self.spec.name)
