"""The demo's live view: AQI of the hourly mean, said on screen; alert times in Beijing time."""

from __future__ import annotations

import json
import math

from paho.mqtt.client import MQTTMessage
from rich.console import Console

from orchestration.demo import HOUR_MS, DeviceView, LiveView, _render, beijing_time


def test_alert_times_are_beijing_time_to_the_second() -> None:
    assert beijing_time("2026-11-26T03:04:05.123456Z") == "2026-11-26 11:04:05"
    assert beijing_time("2026-11-26T23:59:59.999+00:00") == "2026-11-27 07:59:59"
    assert beijing_time("not a time") == "not a time"


def test_hourly_mean_forgets_readings_older_than_an_hour() -> None:
    dv = DeviceView()
    dv.add(0, 400.0, 500.0)
    dv.add(HOUR_MS // 2, 30.0, None)
    assert dv.hourly_mean() == (215.0, 500.0)
    dv.add(HOUR_MS + 1, 40.0, 60.0)  # the first reading is now more than an hour old
    assert dv.hourly_mean() == (35.0, 60.0)
    assert all(math.isnan(v) for v in DeviceView().hourly_mean())


def test_view_shows_the_aqi_of_the_hourly_mean_not_the_latest_reading() -> None:
    view = LiveView()
    dv = view.devices.setdefault("d1", DeviceView())
    # latest reading 200 µg/m³ (重度污染 on its own); the hourly mean is 57.5, which
    # GB/T 8170 rounds to 58 (57 is odd) → IAQI 50 + 50/25 × 23 = 96 (良)
    for i, pm in enumerate([10.0, 10.0, 10.0, 200.0]):
        dv.add(i * 60_000, pm, None)
    dv.pm2_5, dv.readings = 200.0, 4
    console = Console(record=True, width=200)
    console.print(_render(view, 10, None))
    text = console.export_text()
    assert "1 h mean / 1小时均值" in text and "北京时间" in text
    row = next(line for line in text.splitlines() if "d1" in line)
    cells = [c.strip() for c in row.split("│")]
    assert cells[3:7] == ["200.0", "57.5", "96", "良 Good"], cells


def test_an_alert_says_whether_it_is_for_the_technician_or_the_grid_worker() -> None:
    view = LiveView()

    def event(device: str, rule: str, labels: dict[str, str]) -> bytes:
        return json.dumps({"subject": device, "time": "2026-11-26T03:04:05Z", "data": {
            "state": "firing", "rule": rule, "labels": labels,
            "annotations": {"summary_zh": "…"}}}).encode()

    for device, rule, labels in (
            ("d1", "pm25_heavy", {"category": "pollution"}),
            ("d2", "sensor_stuck", {"category": "device", "audience": "maintenance"})):
        msg = MQTTMessage(topic=b"airgrid/v1/alerts/" + device.encode())
        msg.payload = event(device, rule, labels)
        view.on_message(None, None, msg)  # type: ignore[arg-type]
    assert view.devices["d1"].alert == "firing pm25_heavy → grid worker 网格员"
    assert view.devices["d2"].alert == "firing sensor_stuck → technician 维护员"
    assert view.fired_by_rule() == {"pm25_heavy": ["d1"], "sensor_stuck": ["d2"]}
    console = Console(record=True, width=200)
    console.print(_render(view, 10, None))
    assert "sensor_stuck  d2 → technician 维护员" in console.export_text()
