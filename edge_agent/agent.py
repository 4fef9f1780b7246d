"""The edge agent service: sensor → sampler → outbox → publisher."""

from __future__ import annotations

import logging
import threading
import time
import uuid

from airgrid.wire import SCHEMA_VERSION, Status
from edge_agent import __version__
from edge_agent.clock import clock_synced
from edge_agent.config import EdgeConfig
from edge_agent.drivers.pms5003 import PmsFrame
from edge_agent.outbox import Outbox
from edge_agent.publisher import Publisher
from edge_agent.sampler import Sampler
from edge_agent.serial_reader import SerialSensorReader

log = logging.getLogger(__name__)


class EdgeAgent:
    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self.boot_id = uuid.uuid4().hex[:12]
        self.started = time.monotonic()
        self.outbox = Outbox(config.outbox_path, config.outbox_max_rows, config.outbox_synchronous)
        self.sampler = Sampler(warmup_s=config.warmup_s, started_at=self.started)
        self._sampler_lock = threading.Lock()
        self.reader = SerialSensorReader(
            config.port, config.baudrate, self._on_frame, silent_after_s=config.silent_after_s
        )
        self.publisher = Publisher(
            config.device, self.boot_id, self.outbox, config.broker, config.publish, self.status
        )
        self.captured = 0
        self._stop = threading.Event()

    def _on_frame(self, frame: PmsFrame) -> None:
        with self._sampler_lock:
            self.sampler.add(frame)

    def _synced(self) -> bool:
        return self.config.trust_system_clock or clock_synced()

    def status(self) -> Status:
        errors = dict(self.reader.errors)
        errors["warmup"] = self.sampler.warmup_frames
        counters = self.outbox.counters()
        return Status(
            v=SCHEMA_VERSION, device=self.config.device, state="online",
            agent_version=__version__, outbox_depth=self.outbox.depth(),
            dropped=counters.get("dropped", 0), uptime_s=round(time.monotonic() - self.started, 1),
            clock_synced=self._synced(), sensor_errors=errors,
        )

    def sample_once(self) -> None:
        synced = self._synced()
        with self._sampler_lock:
            sample = self.sampler.take(time.monotonic(), synced)
        if sample is None:
            return
        self.outbox.capture({
            "ts": int(time.time() * 1000), "sensor": self.config.sensor_model,
            **sample.values, "flags": sample.flags, "clock_synced": synced,
        })
        self.captured += 1
        self.publisher.notify()

    def run(self) -> None:
        self.reader.start()
        self.publisher.start()
        interval = self.config.interval_s
        next_sample = time.monotonic() + interval
        next_status = time.monotonic() + self.config.status_interval_s
        while not self._stop.is_set():
            self._stop.wait(max(0.0, next_sample - time.monotonic()))
            if self._stop.is_set():
                break
            next_sample += interval
            self.sample_once()
            if time.monotonic() >= next_status and self.publisher.connected:
                self.publisher.publish_status()
                next_status = time.monotonic() + self.config.status_interval_s

    def stop(self, drain_s: float = 5.0) -> None:
        self._stop.set()
        self.reader.stop()
        self.publisher.stop(drain_s=drain_s)
        self.outbox.close()
