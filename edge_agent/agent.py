"""The edge agent service: sensor → sampler → outbox → publisher."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from airgrid.sd_notify import notify
from airgrid.wire import SCHEMA_VERSION, Status
from edge_agent import __version__
from edge_agent.boot import boot_id
from edge_agent.clock import clock_synced
from edge_agent.config import EdgeConfig
from edge_agent.drivers import SERIAL_PROTOCOLS, sds011
from edge_agent.drivers.base import Measurement
from edge_agent.drivers.pmsa003i import PM_RANGE_MAX, Pmsa003iSensor
from edge_agent.gpio import GpiosetLine
from edge_agent.i2c_reader import I2cSensorReader, blinka_bus
from edge_agent.outbox import Outbox
from edge_agent.publisher import Publisher
from edge_agent.sampler import Sampler
from edge_agent.serial_reader import SerialSensorReader

log = logging.getLogger(__name__)

#: Readings are taken from this many seconds of frames when the sensor sleeps between
#: samples (after its warm-up).
AWAKE_SAMPLE_S = 10.0


class EdgeAgent:
    def __init__(
        self,
        config: EdgeConfig,
        *,
        i2c_bus: Any = None,
        clock: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.boot_id = boot_id()
        self.started = time.monotonic()
        self._clock = clock or clock_synced
        self.outbox = Outbox(
            config.outbox.path, config.outbox.max_rows, config.outbox.sqlite_synchronous,
            max_bytes=config.outbox.max_bytes, commit_interval_s=config.outbox.commit_interval_s,
        )
        self._run_s_base = self.outbox.counters().get("sensor_run_s", 0)
        self._sampler_lock = threading.Lock()
        self.reader: SerialSensorReader | I2cSensorReader
        if config.sensor.model in SERIAL_PROTOCOLS:
            protocol = SERIAL_PROTOCOLS[config.sensor.model]
            range_max = protocol.pm_range_max
            self.reader = SerialSensorReader(
                config.sensor.port, protocol, self._on_frame, polled=config.sensor.polled,
                poll_every_s=config.sensor.poll_every_s,
                silent_after_s=config.sensor.silent_after_s,
                failed_retry_s=config.sensor.failed_retry_s,
                reset_line=None if config.sensor.reset_gpio is None
                else GpiosetLine(config.sensor.reset_gpio),
                on_wake=self._on_wake,
                init_commands=b"" if config.sensor.working_period_min is None
                else sds011.set_working_period(config.sensor.working_period_min),
            )
        else:
            range_max = PM_RANGE_MAX
            sensor = Pmsa003iSensor(i2c_bus if i2c_bus is not None else blinka_bus(),
                                    config.sensor.i2c_address)
            self.reader = I2cSensorReader(
                sensor, self._on_frame, poll_every_s=config.sensor.poll_every_s,
                silent_after_s=config.sensor.silent_after_s,
                failed_retry_s=config.sensor.failed_retry_s,
            )
        self.sampler = Sampler(
            warmup_s=config.sensor.warmup_s, started_at=self.started, pm_range_max=range_max,
            stuck_frames=config.sensor.stuck_frames,
            high_humidity_pct=config.sensor.high_humidity_pct,
        )
        self._synced_once = False
        self._hold_said = ""  # "", "holding", "released": each said once in the log
        self.publisher = Publisher(
            config.device, self.boot_id, self.outbox, config.broker, config.publish, self.status,
            hold=self._hold,
        )
        self.captured = 0
        self._last_ts = 0
        self._stop = threading.Event()

    # --- callbacks ----------------------------------------------------------------------

    def _on_frame(self, frame: Measurement) -> None:
        with self._sampler_lock:
            if (self.config.sensor.sleep_between_samples and not frame.warming_up
                    and time.monotonic() - self.sampler.started_at < self.config.sensor.warmup_s):
                self.sampler.warmup_frames += 1  # a sleeping sensor's warm-up is not data
                return
            self.sampler.add(frame)

    def _on_wake(self, at: float) -> None:
        with self._sampler_lock:
            self.sampler.woke(at)

    def _synced(self) -> bool:
        return self.config.clock.trust_system_clock or self._clock()

    def _hold(self) -> bool:
        """Hold readings back while waiting for NTP, so they can be restamped first."""
        return self.clock_hold_left_s() > 0

    def clock_hold_left_s(self) -> float:
        """Seconds readings will still be held for an NTP sync (0: not holding). The first
        time it is positive the agent says so in its log; the status carries it."""
        if self._synced_once:
            return 0.0
        left = self.config.clock.hold_unsynced_s - (time.monotonic() - self.started)
        if left <= 0:
            if self._hold_said == "holding":
                log.warning("clock still not synchronised after %.0f s: publishing the held "
                            "readings with clock_synced=false",
                            self.config.clock.hold_unsynced_s)
                self._hold_said = "released"
            return 0.0
        if self._hold_said == "":
            log.warning("clock not synchronised (NTP): holding readings for up to %.0f s so "
                        "they can be restamped; check chrony/systemd-timesyncd and the "
                        "network, or set [clock] trust_system_clock = true with a hardware RTC",
                        left)
            self._hold_said = "holding"
        return left

    def run_hours(self) -> float:
        return (self._run_s_base + self.reader.awake_s) / 3600

    def status(self) -> Status:
        errors = dict(self.reader.errors)
        errors["warmup"] = self.sampler.warmup_frames
        counters = self.outbox.counters()
        return Status(
            v=SCHEMA_VERSION, device=self.config.device, state="online",
            agent_version=__version__, outbox_depth=self.outbox.depth(),
            dropped=counters.get("dropped", 0), uptime_s=round(time.monotonic() - self.started, 1),
            clock_synced=self._synced(), sensor_errors=errors,
            sensor_state=self.reader.state, sensor_run_hours=round(self.run_hours(), 3),
            outbox_bytes=self.outbox.depth_bytes(),
            corrupt_resets=counters.get("corrupt_resets", 0),
            uncaptured=self.outbox.uncaptured(),
            clock_hold_s=round(self.clock_hold_left_s(), 1),
        )

    # --- the loop -----------------------------------------------------------------------

    def check_clock(self) -> bool:
        synced = self._synced()
        if synced and not self._synced_once:
            self._synced_once = True
            if self._hold_said == "holding":
                log.info("clock synchronised: held readings restamped and released")
            self.outbox.fix_clock(self.boot_id, int(time.time() * 1000),
                                  int(time.monotonic() * 1000))
            self.publisher.notify()
        return synced

    def sample_once(self) -> None:
        synced = self.check_clock()
        now = time.monotonic()
        with self._sampler_lock:
            sample = self.sampler.take(now, synced)
        if sample is None:
            return
        ts = int(time.time() * 1000)
        if self._last_ts - 1000 < ts <= self._last_ts:
            # A point's identity is (device, time): two readings in one millisecond
            # would overwrite each other in InfluxDB. (A real clock step back is kept.)
            ts = self._last_ts + 1
        self._last_ts = ts
        self.outbox.capture(
            {"ts": ts, "sensor": self.config.sensor.model,
             **sample.values, "flags": sample.flags, "clock_synced": synced},
            boot=self.boot_id, mono_ms=int(now * 1000),
        )
        self.captured += 1
        self.publisher.notify()

    def run(self) -> None:
        cfg = self.config
        self.reader.start()
        self.check_clock()
        self.clock_hold_left_s()  # says at once when readings will be held
        self.publisher.start()
        notify("READY=1")
        interval = cfg.sampling.interval_s
        next_sample = time.monotonic() + interval
        next_status = time.monotonic() + cfg.status.interval_s
        asleep = False
        while not self._stop.is_set():
            now = time.monotonic()
            wake_at = next_sample - cfg.sensor.warmup_s - AWAKE_SAMPLE_S
            if asleep and now >= wake_at:
                self.reader.wake()
                asleep = False
            self._stop.wait(max(0.0, min(next_sample - now, 1.0,
                                         wake_at - now if asleep else 1.0)))
            if self._stop.is_set():
                break
            notify("WATCHDOG=1")
            self.outbox.flush_due()
            if time.monotonic() >= next_sample:
                # Fell behind (load, suspend)? Skip ahead rather than sample in a burst.
                next_sample = max(next_sample + interval, time.monotonic() + interval / 2)
                self.sample_once()
                if cfg.sensor.sleep_between_samples:
                    self.reader.sleep()
                    asleep = True
            if time.monotonic() >= next_status:
                self.outbox.set_counter("sensor_run_s",
                                        int(self._run_s_base + self.reader.awake_s))
                if self.publisher.connected:
                    self.publisher.publish_status()
                next_status = time.monotonic() + cfg.status.interval_s

    def stop(self, drain_s: float = 5.0) -> None:
        self._stop.set()
        notify("STOPPING=1")
        self.reader.stop()
        self.outbox.flush()
        self.outbox.set_counter("sensor_run_s", int(self._run_s_base + self.reader.awake_s))
        self.publisher.stop(drain_s=drain_s)
        self.outbox.close()
