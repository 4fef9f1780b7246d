"""`airgrid demo`: the whole system on simulated sensors, with a live terminal view."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import shutil
import signal
import tempfile
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from airgrid.wire import decode_up, device_subscription, parse_device_topic
from alert_rules import aqi
from collector.alerting.templates import CST
from orchestration.services import InfluxDB, Mosquitto
from orchestration.stack import DEMO_FAULT_RULES, SimDevice, Stack, Timing

#: HJ 633-2026 §4.2.3–4.2.4: the real-time AQI is the 1-hour mean looked up in the
#: 24-hour columns, so the live view keeps the last hour of readings per device.
HOUR_MS = 3_600_000


def beijing_time(iso: str) -> str:
    """A CloudEvents time (UTC, RFC 3339, maybe with microseconds) as Beijing time to
    the second, as the SMS texts show it."""
    try:
        when = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class DeviceView:
    readings: int = 0
    pm2_5: float | None = None
    ts_ms: int = 0
    alert: str = ""
    #: (reading time ms, PM2.5, PM10) of the last hour
    window: deque[tuple[int, float, float]] = field(default_factory=deque)

    def add(self, ts_ms: int, pm2_5: float | None, pm10: float | None) -> None:
        if pm2_5 is not None or pm10 is not None:
            self.window.append((ts_ms, math.nan if pm2_5 is None else pm2_5,
                                math.nan if pm10 is None else pm10))
        newest = max((t for t, _, _ in self.window), default=ts_ms)
        while self.window and self.window[0][0] <= newest - HOUR_MS:
            self.window.popleft()

    def hourly_mean(self) -> tuple[float, float]:
        """(PM2.5, PM10) means of the last hour's readings; NaN when there are none."""
        if not self.window:
            return math.nan, math.nan
        cols = np.array([(a, b) for _, a, b in self.window], np.float64)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: NaN is right
            means = np.nanmean(cols, axis=0)
        return float(means[0]), float(means[1])


@dataclass
class LiveView:
    """What the demo process sees on the broker: readings and alert events."""

    devices: dict[str, DeviceView] = field(default_factory=dict)
    alerts: list[dict[str, object]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if "/alerts/" in msg.topic:
            event = json.loads(msg.payload)
            with self.lock:
                self.alerts.append(event)
                dv = self.devices.setdefault(event["subject"], DeviceView())
                data = event["data"]
                dv.alert = ("" if data["state"] == "resolved"
                            else f"{data['state']} {data['rule']} → {who(event)}")
            return
        try:
            device, _ = parse_device_topic(msg.topic)
            batch = decode_up(bytes(msg.payload), device)
        except ValueError:
            return
        with self.lock:
            dv = self.devices.setdefault(device, DeviceView())
            dv.readings += len(batch.readings)
            for r in batch.readings:
                dv.add(r.ts, r.pm2_5, r.pm10)
            last = batch.readings[-1]
            if last.ts >= dv.ts_ms:
                dv.pm2_5, dv.ts_ms = last.pm2_5, last.ts

    def fired_by_rule(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for a in self.fired():
            subjects = out.setdefault(str(a["data"]["rule"]), [])  # type: ignore[index]
            if a["subject"] not in subjects:
                subjects.append(str(a["subject"]))
        return out

    def fired(self) -> list[dict[str, object]]:
        with self.lock:
            return [a for a in self.alerts if a["data"]["state"] == "firing"]  # type: ignore[index]


#: the demo's frozen sensor freezes this long after start
FREEZE_AT_S = 8.0


def demo_devices(n: int) -> list[SimDevice]:
    """Device 1 goes through a pollution episode (an alert for the grid worker); device
    2's sensor freezes after `FREEZE_AT_S` (a sensor fault, for the technician); the
    others have clean air."""
    out = []
    for i in range(1, n + 1):
        scenario = "episode" if i == 1 else "clean"
        out.append(SimDevice(device=f"demo-{i:03d}", scenario=scenario,
                             baseline=20.0 + 5 * (i % 4), seed=i,
                             episode_start_s=12.0, episode_length_s=25.0,
                             freeze_at_s=FREEZE_AT_S if i == 2 else None))
    return out


def who(event: dict[str, Any]) -> str:
    """Who an alert is for, as the view shows it: the device's technician (a sensor
    fault, `audience: maintenance`) or the grid worker."""
    labels = event["data"].get("labels") or {}
    return ("technician 维护员" if labels.get("audience") == "maintenance"
            else "grid worker 网格员")


def _render(view: LiveView, elapsed: float, seconds: float | None):  # type: ignore[no-untyped-def]
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    std = aqi.get()
    table = Table(title=f"airgrid demo — {elapsed:.0f} s"
                  + (f" of {seconds:.0f}" if seconds else " (Ctrl-C to stop)"))
    columns = ("device 设备", "readings", "PM2.5 µg/m³ latest 最新",
               "PM2.5 1 h mean / 1小时均值", f"AQI ({std.name}, 1 h mean / 1小时均值)",
               "category 类别", "alert 告警")
    for col in columns:
        table.add_column(col)
    with view.lock:
        items = sorted(view.devices.items())
        alerts = list(view.alerts[-6:])
    for device, dv in items:
        mean25, mean10 = dv.hourly_mean()
        index = float(std.aqi({"pm2_5": [mean25], "pm10": [mean10]})[0])
        if dv.pm2_5 is None or math.isnan(index):
            table.add_row(device, str(dv.readings), "-", "-", "-", "-", dv.alert)
            continue
        cat = std.category(index)
        name = Text(f"{cat.zh} {cat.en}" if cat else "-", style=f"bold {cat.color}" if cat else "")
        table.add_row(device, str(dv.readings), f"{dv.pm2_5:.1f}", f"{mean25:.1f}",
                      f"{index:.0f}", name, Text(dv.alert, style="bold red") if dv.alert else "")
    lines = [Text(f"{beijing_time(str(a['time']))}  {a['data']['state']:<8} "  # type: ignore[index]
                  f"{a['data']['rule']}  {a['subject']} → {who(a)}  "  # type: ignore[index]
                  f"{a['data']['annotations'].get('summary_zh', '')}")  # type: ignore[index]
             for a in alerts]
    heading = Text("alerts 告警 (Beijing time 北京时间):", style="bold")
    return Group(table, heading, *(lines or [Text("  (none yet)")]))


class DemoStopped(Exception):
    """SIGTERM or SIGHUP (a closed SSH session): end the run as Ctrl-C does."""


def _stop_on_signal(signum: int, frame: object) -> None:
    raise DemoStopped(signal.Signals(signum).name)


#: The children run in their own sessions (so a Ctrl-C reaches only the demo, which
#: stops them in order); these signals must therefore end the demo through its cleanup.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def run_demo(devices: int, seconds: float | None, headless: bool, keep: bool,
             workdir: Path | None = None) -> dict[str, object]:
    previous = {s: signal.signal(s, _stop_on_signal) for s in STOP_SIGNALS}
    try:
        return _run_demo(devices, seconds, headless, keep, workdir)
    except DemoStopped as exc:  # a second signal while the run was being ended
        return {"devices": devices, "stopped_by": str(exc)}
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _run_demo(devices: int, seconds: float | None, headless: bool, keep: bool,
              workdir: Path | None) -> dict[str, object]:
    base = workdir or Path(tempfile.mkdtemp(prefix="airgrid-demo-"))
    broker = Mosquitto(base / "mosquitto")
    influx = InfluxDB(base / "influxdb")
    stack = Stack(base / "stack", broker, influx, demo_devices(devices), Timing(),
                  extra_rules=(DEMO_FAULT_RULES,))
    view = LiveView()
    watcher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                          client_id="airgrid-demo-view")
    watcher.on_message = view.on_message
    summary: dict[str, object] = {}
    try:
        broker.start()
        influx.start()
        watcher.connect("127.0.0.1", broker.port)
        watcher.subscribe([(device_subscription("up"), 1), ("airgrid/v1/alerts/#", 1)])
        watcher.loop_start()
        stack.start()
        t0 = time.monotonic()
        if headless:
            with contextlib.suppress(KeyboardInterrupt, DemoStopped):
                while seconds is None or time.monotonic() - t0 < seconds:
                    time.sleep(0.5)
        else:
            from rich.live import Live

            with Live(_render(view, 0, seconds), refresh_per_second=2) as live:
                try:
                    while seconds is None or time.monotonic() - t0 < seconds:
                        time.sleep(0.5)
                        live.update(_render(view, time.monotonic() - t0, seconds))
                except (KeyboardInterrupt, DemoStopped):
                    pass
        drained = stack.quiesce(timeout=60)
        captured, stored = stack.captured(), stack.stored()
        summary = {
            "devices": devices,
            "readings_captured": sum(captured.values()),
            "readings_stored": sum(stored.values()),
            "alerts_fired": len(view.fired()),
            # rule → the devices it fired for: the episode's level alert, the frozen
            # sensor's fault
            "fired_by_rule": view.fired_by_rule(),
            "lost": sum(captured.values()) - sum(stored.values()),
        }
        if not drained:
            summary["note"] = "outboxes did not drain within 60 s"
        if not headless:
            print("\nQuery what was stored (InfluxDB 1.x, database 'airgrid'"
                  + ("):" if keep else "; add --keep to query it before the demo cleans up):"))
            print(f"  curl -G {influx.url}/query --data-urlencode db=airgrid --data-urlencode "
                  "\"q=SELECT mean(pm2_5) FROM readings WHERE time > now() - 10m "
                  "GROUP BY device, time(10s)\"")
            if keep:
                print(f"(services keep running until Enter is pressed; data in {base})")
                with contextlib.suppress(EOFError, KeyboardInterrupt, DemoStopped):
                    input()
    finally:
        # A second SIGTERM/SIGHUP must not cut the cleanup short and orphan children;
        # every stop below is bounded (SIGTERM, wait, SIGKILL).
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        stack.stop()
        watcher.loop_stop()
        watcher.disconnect()
        influx.stop()
        broker.stop()
        if workdir is None and not keep:
            shutil.rmtree(base, ignore_errors=True)
    return summary
