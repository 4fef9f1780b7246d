"""Retention of the collector's per-device state: nothing a device id creates stays forever.

Every `every_s` on the pipeline's thread: gaps older than `[gaps] max_age_s` are declared
lost also on devices that went silent (an active device's are checked as it reports);
devices silent for `[retention] forget_devices_after_s` are forgotten: their seq state
(its checkpoint row goes with the next batch), health, known epoch, cached tags, their
Prometheus series and, for a device the registry does not list, its rule state
(`Engine.forget`; a registered device stays judged: its deadman must still fire). With
`unknown = "accept"` a stream of made-up device ids therefore costs memory for a while,
not for ever. The sizes of the stores are set as gauges here too; the checkpoint's row
counts come from `StateDbSizes`, on a thread of its own (a count over millions of rows
must not hold up ingest).

None of it walks the fleet: the tracker and device health keep their devices in the order
last heard, and their gap expiry in a heap, so a run touches only what is due.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path

from alert_rules.engine import Engine
from collector.aggregates import HourlyAggregates
from collector.batch_builder import BatchBuilder
from collector.dedup import SeqTracker, device_of
from collector.metrics import Metrics
from collector.registry import RegistryWatcher
from collector.state_store import StateStore

log = logging.getLogger(__name__)


class Retention:
    def __init__(self, builder: BatchBuilder, engine: Engine, registry: RegistryWatcher,
                 metrics: Metrics, forget_after_ms: int, state: StateStore | None = None,
                 every_s: float = 10.0) -> None:
        self.builder = builder
        self.engine = engine
        self.registry = registry
        self.metrics = metrics
        self.forget_after_ms = forget_after_ms
        self.state = state
        self.every_s = every_s
        self.forgotten = 0  # seq keys forgotten
        self._next = 0.0
        self._seen_lost = 0
        self._seen_too_old = 0
        self._seen_pruned = 0

    @property
    def seqs(self) -> SeqTracker:
        return self.builder.seqs

    @property
    def aggregates(self) -> HourlyAggregates:
        return self.builder.aggregates

    def run(self, now_ms: int) -> None:
        """From the pipeline's housekeeping; does its work every `every_s`."""
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.every_s
        self.seqs.expire(now_ms)
        self.forget(now_ms - self.forget_after_ms)
        self.update_metrics()

    def forget(self, before_ms: int) -> list[str]:
        """Forget devices with nothing heard since `before_ms`; returns the device ids."""
        seqs, health = self.seqs, self.builder.health
        keys = seqs.forget_silent(before_ms)
        candidates = {device_of(k) for k in keys}
        # a device silent in status but still sending readings is taken here once: it
        # comes back as a candidate when its last seq key is forgotten
        candidates.update(health.take_silent(before_ms))
        if not candidates:
            return []
        devices = sorted(d for d in candidates if not seqs.has_device(d)
                         and (d not in health.devices
                              or health.devices[d].last_status_ms < before_ms))
        self.builder.forget(devices)
        registered = self.registry.devices
        unregistered = [d for d in devices if d not in registered]
        if unregistered:
            self.engine.forget(unregistered)
        for key in keys:
            with contextlib.suppress(KeyError):  # a series only exists once a batch set it
                self.metrics.device_completeness.remove(key)
        self.forgotten += len(keys)
        self.metrics.devices_forgotten.inc(len(keys))
        if devices:
            log.info("forgot %d devices silent since %d (%d not in the registry)",
                     len(devices), before_ms, len(unregistered))
        return devices

    def update_metrics(self) -> None:
        m, seqs, aggs = self.metrics, self.seqs, self.aggregates
        m.seq_lost.inc(seqs.lost - self._seen_lost)
        self._seen_lost = seqs.lost
        m.hourly_too_old.inc(aggs.too_old - self._seen_too_old)
        self._seen_too_old = aggs.too_old
        if self.state is not None:
            m.hourly_rows_pruned.inc(self.state.pruned_rows - self._seen_pruned)
            self._seen_pruned = self.state.pruned_rows
        rows = m.store_rows
        rows.labels("dedup_keys").set(len(seqs.devices))
        rows.labels("device_health").set(len(self.builder.health.devices))
        rows.labels("hourly_hours").set(len(aggs.hours))
        rows.labels("tag_cache").set(len(self.builder.tags))
        rows.labels("engine_devices").set(len(self.engine.fleet.index) - len(self.engine.away))


class StateDbSizes:
    """Rows of the checkpoint's tables and its size on disk, counted on a thread of its
    own with its own read connection (WAL: never in the writer's way)."""

    def __init__(self, path: Path, metrics: Metrics, every_s: float = 30.0) -> None:
        self.path = path
        self.metrics = metrics
        self.every_s = every_s
        self.rows: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="state-db-sizes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):  # no WAL yet
                total += Path(f"{self.path}{suffix}").stat().st_size
        return total

    def count(self) -> None:
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            for table in ("seqs", "hourly"):
                n = int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                self.rows[table] = n
                self.metrics.store_rows.labels(f"{table}_rows").set(n)
        finally:
            db.close()
        self.metrics.state_db_bytes.set(self.bytes())

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.count()
            except sqlite3.Error as exc:  # a gauge is not worth a crash; said, then retried
                log.warning("counting the rows of %s failed: %s", self.path, exc)
