"""Bytes on a serial line → rows in InfluxDB and an alert on MQTT, every hop real."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from airgrid.wire import COUNT_FIELDS, PM_FIELDS, Reading, decode_up
from orchestration.services import InfluxDB, Mosquitto
from orchestration.stack import SimDevice, Stack, Timing


def test_three_devices_every_reading_stored_and_only_polluted_device_alerts(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    devices = [
        SimDevice("e2e-clean-1", "clean", baseline=20, seed=1),
        SimDevice("e2e-polluted", "episode", baseline=30, peak=230, episode_start_s=10,
                  episode_length_s=20, seed=2),
        SimDevice("e2e-clean-2", "clean", baseline=40, seed=3),
    ]
    # 0.5 s sampling for 30 s: ~60 readings per device
    stack = Stack(tmp_path / "stack", mosquitto, influxdb, devices,
                  Timing(frame_period_s=0.1, sample_interval_s=0.5))
    events: list[dict[str, object]] = []
    lock = threading.Lock()

    # What the agents published (every captured reading crosses the broker at least once).
    published: dict[str, dict[int, Reading]] = {d.device: {} for d in devices}

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            if msg.topic.endswith("/up"):
                batch = decode_up(msg.payload)
                for r in batch.readings:
                    published[batch.device][r.seq] = r
            else:
                events.append(json.loads(msg.payload))

    watcher = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    watcher.on_message = on_message
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.subscribe([("airgrid/v1/alerts/#", 1), ("airgrid/v1/dev/+/up", 1)])
    watcher.loop_start()

    try:
        stack.start()
        time.sleep(31)
        assert stack.quiesce(timeout=60), f"not drained: {stack.captured()} vs {stack.stored()}"
        counts = stack.captured()
    finally:
        stack.stop()
        watcher.loop_stop()

    for d in devices:
        assert 50 <= counts[d.device] <= 70, counts
    # Every reading, with its exact values and tags, is in InfluxDB.
    for d in devices:
        res = influxdb.query(f"SELECT * FROM readings WHERE device='{d.device}'", db="airgrid")
        series = res["results"][0]["series"][0]  # type: ignore[index]
        cols = series["columns"]
        rows = {int(row[cols.index("seq")]): dict(zip(cols, row, strict=True))
                for row in series["values"]}
        assert sorted(rows) == list(range(1, counts[d.device] + 1))
        with lock:
            seen = dict(published[d.device])
        assert sorted(seen) == sorted(rows)
        for seq, r in seen.items():
            row = rows[seq]
            assert row["time"] == r.ts
            assert row["device"] == d.device and row["sensor"] == "pms5003"
            for f in PM_FIELDS + COUNT_FIELDS:
                assert row[f] == getattr(r, f), (seq, f)

    with lock:
        firing = [e for e in events if e["data"]["state"] == "firing"]  # type: ignore[index]
    assert [e["subject"] for e in firing] == ["e2e-polluted"]
    event = firing[0]
    assert event["specversion"] == "1.0" and event["type"] == "org.airgrid.alert.firing"
    assert float(event["data"]["value"]) > 150  # type: ignore[index]
