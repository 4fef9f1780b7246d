"""Gauges refreshed from the pipeline's loop, and the health report behind `/healthz`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from collector.counters import Counters
from collector.dedup import SeqTracker
from collector.device_health import DeviceHealth
from collector.metrics import Metrics
from collector.registry import RegistryWatcher
from collector.spool import Spool
from collector.writer import StorageWriter


class Gauges:
    def __init__(self, metrics: Metrics, counters: Counters, *, seqs: SeqTracker,
                 devices: DeviceHealth, storage: StorageWriter, spool: Spool,
                 registry: RegistryWatcher, spool_full: Callable[[], bool],
                 connected: threading.Event, per_device: bool = False) -> None:
        self.metrics = metrics
        self.counters = counters
        self.seqs = seqs
        self.devices = devices
        self.storage = storage
        self.spool = spool
        self.registry = registry
        self.spool_full = spool_full
        self.connected = connected
        #: per-device completeness series (`[metrics] per_device_completeness`)
        self.per_device = per_device
        seqs.track_changed = per_device
        self._seen_reload_errors = 0
        self._next_completeness = 0.0

    def update(self) -> None:
        """On the pipeline's thread, once per loop."""
        m = self.metrics
        if self.registry.reload_errors > self._seen_reload_errors:
            m.registry_reload_errors.inc(self.registry.reload_errors - self._seen_reload_errors)
            self._seen_reload_errors = self.registry.reload_errors
        m.registry_devices.set(len(self.registry.devices))
        m.registry_parse_seconds.set(self.registry.last_parse_s)
        now = time.monotonic()
        if now >= self._next_completeness:  # once a second is plenty
            self._next_completeness = now + 1.0
            m.completeness.set(self.seqs.completeness())  # running totals: no walk
            m.seq_missing.set(self.seqs.missing())
            # only the devices that changed: a walk over 100,000 series a second would
            # cost the ingest thread a third of its time
            devices = self.seqs.devices
            for device in self.seqs.take_changed():
                d = devices.get(device)
                if d is not None:
                    total = d.received + d.missing
                    m.device_completeness.labels(device=device).set(
                        d.received / total if total else 1.0)
        m.spool_depth.set(self.spool.lines)
        m.spool_bytes.set(self.spool.bytes)
        m.devices_online.set(self.devices.online_count())
        retries = self.storage.write_retries
        m.write_retries.inc(retries - self.counters.write_retries)
        self.counters.write_retries = retries

    def health_report(self) -> dict[str, object]:
        """For `/healthz` (its own thread): ok while connected and batches can be stored."""
        connected = self.connected.is_set()
        spool_full = self.spool_full()
        return {
            "ok": connected and not spool_full,
            "broker_connected": connected,
            "storage_healthy": self.storage.healthy,
            "spool_lines": self.spool.lines,
            "spool_full": spool_full,
            "devices_online": self.devices.online_count(),
            "seq_completeness": round(self.seqs.completeness(), 6),
        }
