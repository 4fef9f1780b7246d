"""A sensor in a pollution episode loses its network during the episode (the agent's link
to the broker is cut, as a 4G link drops), then gets it back: its backlog reaches the
collector after the episode and raises exactly one alert, marked late, at the readings'
own time, on the MQTT bus (CloudEvents), in its text and in InfluxDB's `alert_events`.
Simulator → edge agent → NetCut relay → Mosquitto → collector with alerting, all real."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from orchestration.netcut import NetCut
from orchestration.services import InfluxDB, Mosquitto
from orchestration.stack import SimDevice, Stack, Timing
from tests.support.integration import Processes
from tests.support.wait import wait_for

EPISODE_START_S = 6.0
EPISODE_LENGTH_S = 6.0  # held at the peak; the simulator ramps 5 s up before and down after
RAMP_S = 5.0


class BusEvents:
    def __init__(self, port: int) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                        client_id="late-watcher")
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("airgrid/v1/alerts/#", qos=1)
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_message(self, client: mqtt.Client, userdata: object,
                    msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.events.append(json.loads(msg.payload))

    def firing(self, device: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e["subject"] == device
                    and e["data"]["state"] == "firing"]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def county(tmp_path: Path, processes: Processes, shared_influxdb: InfluxDB
           ) -> Iterator[tuple[Stack, NetCut, BusEvents]]:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    cut = NetCut(broker.port)
    cut.start()
    bus = BusEvents(broker.port)
    stack = Stack(tmp_path / "stack", broker, shared_influxdb, [
        SimDevice("late-ep", "episode", baseline=30, peak=230, episode_start_s=EPISODE_START_S,
                  episode_length_s=EPISODE_LENGTH_S, seed=3),
        SimDevice("late-clean", "clean", baseline=25, seed=4),
    ], Timing(frame_period_s=0.1, sample_interval_s=0.5, status_interval_s=2.0),
        database=f"late_{int(time.time())}", broker_ports={"late-ep": cut.port})
    try:
        yield stack, cut, bus
    finally:
        stack.stop()
        bus.close()
        cut.stop()
        broker.stop()


def test_episode_backlog_after_a_network_cut_alerts_once_marked_late(
        county: tuple[Stack, NetCut, BusEvents]) -> None:
    stack, cut, bus = county
    stack.start()
    sims_started_ms = int(time.time() * 1000)
    assert wait_for(lambda: stack.stored()["late-ep"] >= 4, 30, step=0.2)
    cut.cut()  # before the episode begins; the sensor and its agent keep working
    cut_ms = int(time.time() * 1000)
    episode_end = sims_started_ms + int((EPISODE_START_S + EPISODE_LENGTH_S + 2 * RAMP_S) * 1000)
    time.sleep(max(0.0, (episode_end - time.time() * 1000) / 1000) + 3.0)
    assert bus.firing("late-ep") == [], "alerted while the device could not be heard"
    restored_ms = int(time.time() * 1000)
    cut.restore()
    assert wait_for(lambda: bus.firing("late-ep"), 40, step=0.2), "the backlog raised no alert"
    time.sleep(4.0)  # live readings after the backlog: nothing is judged twice
    fired = bus.firing("late-ep")
    assert len(fired) == 1, fired
    data = fired[0]["data"]
    assert data["rule"] == "pm25_heavy" and data["late"] is True
    # the original time lies in the cut, during the episode; the delay runs to the arrival
    assert cut_ms <= data["at_ms"] < restored_ms, (cut_ms, data["at_ms"], restored_ms)
    assert data["at_ms"] >= sims_started_ms + int(EPISODE_START_S * 1000)
    arrived_ms = data["at_ms"] + data["delay_s"] * 1000
    assert restored_ms - 1000 <= arrived_ms <= restored_ms + 40_000
    assert fired[0]["time"].startswith(time.strftime(
        "%Y-%m-%dT%H:%M", time.gmtime(data["at_ms"] / 1000)))
    assert "补传数据" in data["text"] and "迟到" in data["text"]
    assert bus.firing("late-clean") == []
    # the same event in InfluxDB, at its original time (epoch ms), with its delay
    q = "SELECT * FROM alert_events WHERE device='late-ep' AND state='firing'"

    def rows() -> list[dict[str, Any]]:
        res: Any = stack.influx.query(q, db=stack.database)
        series = res["results"][0].get("series") or []
        return [dict(zip(s["columns"], v, strict=True)) for s in series for v in s["values"]]

    assert wait_for(rows, 15, step=0.3)
    (row,) = rows()
    assert row["time"] == data["at_ms"]
    assert row["late_s"] == pytest.approx(data["delay_s"], abs=0.051)
