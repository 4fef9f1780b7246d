"""`airgrid demo`: the whole system on simulated sensors, with a live terminal view."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from airgrid.wire import decode_up, device_subscription, parse_device_topic
from alert_rules import aqi
from orchestration.services import InfluxDB, Mosquitto
from orchestration.stack import SimDevice, Stack, Timing


@dataclass
class DeviceView:
    readings: int = 0
    pm2_5: float | None = None
    ts_ms: int = 0
    alert: str = ""


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
                dv.alert = "" if event["data"]["state"] == "resolved" else event["data"]["state"]
            return
        try:
            device, _ = parse_device_topic(msg.topic)
            batch = decode_up(bytes(msg.payload), device)
        except ValueError:
            return
        with self.lock:
            dv = self.devices.setdefault(device, DeviceView())
            dv.readings += len(batch.readings)
            last = batch.readings[-1]
            if last.ts >= dv.ts_ms:
                dv.pm2_5, dv.ts_ms = last.pm2_5, last.ts

    def fired(self) -> list[dict[str, object]]:
        with self.lock:
            return [a for a in self.alerts if a["data"]["state"] == "firing"]  # type: ignore[index]


def demo_devices(n: int) -> list[SimDevice]:
    """Device 1 goes through a pollution episode; the others have clean air."""
    out = []
    for i in range(1, n + 1):
        scenario = "episode" if i == 1 else "clean"
        out.append(SimDevice(device=f"demo-{i:03d}", scenario=scenario,
                             baseline=20.0 + 5 * (i % 4), seed=i,
                             episode_start_s=12.0, episode_length_s=25.0))
    return out


def _render(view: LiveView, elapsed: float, seconds: float | None):  # type: ignore[no-untyped-def]
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    std = aqi.get()
    table = Table(title=f"airgrid demo — {elapsed:.0f} s"
                  + (f" of {seconds:.0f}" if seconds else " (Ctrl-C to stop)"))
    columns = ("device", "readings", "PM2.5 µg/m³", f"IAQI ({std.name})", "category 类别", "alert")
    for col in columns:
        table.add_column(col)
    with view.lock:
        items = sorted(view.devices.items())
        alerts = list(view.alerts[-6:])
    for device, dv in items:
        if dv.pm2_5 is None:
            table.add_row(device, str(dv.readings), "-", "-", "-", dv.alert)
            continue
        index = float(std.iaqi("pm2_5", [dv.pm2_5])[0])
        cat = std.category(index)
        name = Text(f"{cat.zh} {cat.en}" if cat else "-", style=f"bold {cat.color}" if cat else "")
        table.add_row(device, str(dv.readings), f"{dv.pm2_5:.1f}", f"{index:.0f}", name,
                      Text(dv.alert, style="bold red") if dv.alert else "")
    lines = [Text(f"{a['time']}  {a['data']['state']:<8} {a['data']['rule']}  {a['subject']}  "  # type: ignore[index]
                  f"{a['data']['annotations'].get('summary_zh', '')}")  # type: ignore[index]
             for a in alerts]
    return Group(table, Text("alerts 告警:", style="bold"), *(lines or [Text("  (none yet)")]))


def run_demo(devices: int, seconds: float | None, headless: bool, keep: bool,
             workdir: Path | None = None) -> dict[str, object]:
    base = workdir or Path(tempfile.mkdtemp(prefix="airgrid-demo-"))
    broker = Mosquitto(base / "mosquitto")
    influx = InfluxDB(base / "influxdb")
    stack = Stack(base / "stack", broker, influx, demo_devices(devices), Timing())
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
            while seconds is None or time.monotonic() - t0 < seconds:
                time.sleep(0.5)
        else:
            from rich.live import Live

            with Live(_render(view, 0, seconds), refresh_per_second=2) as live:
                try:
                    while seconds is None or time.monotonic() - t0 < seconds:
                        time.sleep(0.5)
                        live.update(_render(view, time.monotonic() - t0, seconds))
                except KeyboardInterrupt:
                    pass
        drained = stack.quiesce(timeout=60)
        captured, stored = stack.captured(), stack.stored()
        summary = {
            "devices": devices,
            "readings_captured": sum(captured.values()),
            "readings_stored": sum(stored.values()),
            "alerts_fired": len(view.fired()),
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
                input()
    finally:
        stack.stop()
        watcher.loop_stop()
        watcher.disconnect()
        influx.stop()
        broker.stop()
        if workdir is None and not keep:
            shutil.rmtree(base, ignore_errors=True)
    return summary
