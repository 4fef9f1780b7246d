"""Prometheus metrics and the /metrics + /healthz HTTP endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


class Metrics:
    """One registry per collector (tests run several in one process)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "airgrid_collector_"
        self.messages = Counter(p + "messages", "MQTT messages taken in", ["kind"], registry=r)
        self.readings_in = Counter(p + "readings_in", "readings in valid messages", registry=r)
        self.readings_stored = Counter(p + "readings_stored",
                                       "readings in InfluxDB or the spool", registry=r)
        self.rejected = Counter(p + "rejected", "messages or lines sent to the dead letter",
                                ["reason"], registry=r)
        self.quarantined = Counter(p + "quarantined",
                                   "readings or messages rejected, by device and reason",
                                   ["device", "reason"], registry=r)
        self.duplicates = Counter(p + "duplicates", "repeats dropped by (device, epoch, seq)",
                                  registry=r)
        self.new_epochs = Counter(p + "new_epochs",
                                  "devices seen with a new outbox epoch (re-flashed or "
                                  "recreated outbox)", registry=r)
        self.checkpoint_errors = Counter(p + "checkpoint_errors",
                                         "state checkpoints that failed (batch acked anyway)",
                                         registry=r)
        self.unknown_devices = Counter(p + "unknown_device_readings",
                                       "readings accepted from devices not in the registry",
                                       registry=r)
        self.spool_depth = Gauge(p + "spool_depth_lines", "lines waiting in the spool",
                                 registry=r)
        self.spool_bytes = Gauge(p + "spool_bytes", "bytes in the spool", registry=r)
        self.spool_full = Gauge(p + "spool_full", "1 while the spool cannot take a batch",
                                registry=r)
        self.spooled_batches = Counter(
            p + "spooled_batches", "batches put in the spool instead of written, by reason: "
            "slow (a write ran past the bound or the write slots were full), down (storage "
            "failed after retries), queued (behind batches already spooled)", ["reason"],
            registry=r)
        self.write_retries = Counter(p + "write_retries", "storage writes retried", registry=r)
        self.write_latency = Histogram(p + "write_latency_seconds", "storage write latency",
                                       registry=r)
        self.lag = Histogram(p + "end_to_end_lag_seconds",
                             "stored time minus reading time (newest reading per message)",
                             buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400),
                             registry=r)
        self.devices_online = Gauge(p + "devices_online", "devices whose status is online",
                                    registry=r)
        self.completeness = Gauge(p + "seq_completeness_ratio",
                                  "received / (received + missing seqs), all devices",
                                  registry=r)
        self.device_completeness = Gauge(
            p + "device_seq_completeness_ratio",
            "received / (received + missing seqs), per device", ["device"], registry=r)
        self.seq_missing = Gauge(p + "missing_readings", "seqs not (yet) received",
                                 registry=r)
        self.registry_devices = Gauge(p + "registry_devices", "devices in the registry",
                                      registry=r)
        self.registry_parse_seconds = Gauge(
            p + "registry_parse_seconds",
            "how long the last registry (re)load took to parse (on its own thread)", registry=r)
        self.registry_reload_errors = Counter(p + "registry_reload_errors",
                                              "registry reloads refused", registry=r)
        self.engine_state_refused = Counter(
            p + "engine_state_refused", "saved rule-engine states not restored at start-up "
            "(damaged, or taken with other rules): set aside as engine.npz.refused, the "
            "engine started with empty windows", registry=r)
        self.engine_state_save_errors = Counter(p + "engine_state_save_errors",
                                                "rule-engine state saves that failed",
                                                registry=r)
        self.store_rows = Gauge(
            p + "store_entries", "entries held per store: in memory (dedup_keys, "
            "device_health, hourly_hours, tag_cache, engine_devices) and in the checkpoint "
            "state.db (seqs_rows, hourly_rows)", ["store"], registry=r)
        self.gc_frozen = Gauge(p + "gc_frozen_objects",
                               "objects moved out of the cycle collector's reach "
                               "(collector/long_lived_heap.py)", registry=r)
        self.state_db_bytes = Gauge(p + "state_db_bytes",
                                    "size of the checkpoint state.db with its WAL", registry=r)
        self.seq_lost = Counter(p + "seq_lost", "missing seqs declared lost: a gap older than "
                                "[gaps] max_age_s or beyond max_ranges", registry=r)
        self.devices_forgotten = Counter(
            p + "devices_forgotten", "device seq keys forgotten after "
            "[retention] forget_devices_after_s of silence", registry=r)
        self.hourly_too_old = Counter(
            p + "hourly_too_old_readings", "readings stored but older than [retention] "
            "hourly_s: no hourly aggregate changed", registry=r)
        self.hourly_rows_pruned = Counter(p + "hourly_rows_pruned",
                                          "checkpointed hourly rows past their use, deleted",
                                          registry=r)
        self.alerts = Counter(p + "alert_transitions", "alert transitions published",
                              registry=r)
        self.late_alerts = Counter(p + "late_alert_transitions",
                                   "alert transitions decided on readings that arrived late",
                                   registry=r)
        self.late_readings = Counter(p + "late_readings",
                                     "readings judged in their own time (arrived late)",
                                     registry=r)
        # province: the deadman of registered devices no collector heard
        # (collector/deadman_keeper.py)
        self.deadman_kept = Gauge(p + "deadman_kept_devices",
                                  "registered devices no collector has heard whose deadman "
                                  "this collector keeps", registry=r)
        self.deadman_keeper = Counter(
            p + "deadman_keeper_devices", "kept devices by what happened: checked (asked "
            "about in InfluxDB), handed (stored by another collector: forgotten, no alert), "
            "raised (deadman announced), adopted (open on record: taken over), released "
            "(heard here, or kept elsewhere), check_failed (questions not answered)",
            ["outcome"], registry=r)
        # province: a `firing` of a device overdue here, held (collector/handover.py)
        self.held_firing = Counter(
            p + "held_firing", "alerts fired by time alone for a device overdue here, by "
            "what happened: held, dropped (the device moved: its new owner announces it), "
            "released (it reported here again, or nobody else heard it)",
            ["outcome"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """`/metrics` (Prometheus text) and `/healthz` (200 when healthy, else 503, JSON body)."""

    def __init__(self, metrics: Metrics, health: Callable[[], dict[str, object]],
                 host: str, port: int) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body, ctype, code = outer.metrics.render(), CONTENT_TYPE_LATEST, 200
                elif self.path.startswith("/healthz"):
                    h = outer.health()
                    body = json.dumps(h).encode()
                    ctype, code = "application/json", 200 if h.get("ok") else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the log

        self.metrics = metrics
        self.health = health
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="metrics-http")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
