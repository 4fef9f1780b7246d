"""Field faults against real Mosquitto, the real collector and real InfluxDB.

Broker down for 60 s while readings continue; kill -9 of the agent; the outbox cap
reached during an outage. Sampling is faster than in the field (4-10 readings/s) so each
fault covers hundreds of readings in a reasonable wall time.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from airgrid.wire import decode_status
from orchestration.services import InfluxDB, Mosquitto
from orchestration.stack import SimDevice, Stack, Timing
from tests.support.wait import wait_for


def _stored_rows(influx: InfluxDB, db: str, device: str) -> list[tuple[int, int]]:
    """(time, seq) of every stored reading of a device, in time order."""
    res: Any = influx.query(f"SELECT seq FROM readings WHERE device='{device}'", db=db)
    series = res["results"][0].get("series", [])
    return [(int(t), int(s)) for t, s in series[0]["values"]] if series else []


def test_broker_down_60_s_every_captured_reading_arrives_once_in_order(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    dev = "outage-1"
    stack = Stack(tmp_path / "stack", mosquitto, influxdb, [SimDevice(dev)],
                  Timing(frame_period_s=0.05, sample_interval_s=0.25))
    try:
        stack.start()
        assert wait_for(lambda: stack.stored()[dev] >= 5, 30, step=0.25), stack.stored()
        mosquitto.stop()
        before = stack.captured()[dev]
        time.sleep(60)
        during = stack.captured()[dev] - before
        pending = stack.pending()
        mosquitto.start()
        time.sleep(3)
        stack.stop_sims()
        assert stack.drain(timeout=90), f"{stack.captured()} vs {stack.stored()}"
        captured = stack.captured()[dev]
    finally:
        stack.stop()
    assert during >= 200 and pending >= 200  # readings kept being captured, and waited
    rows = _stored_rows(influxdb, stack.database, dev)
    seqs = [s for _, s in rows]
    assert seqs == list(range(1, captured + 1))  # each once, none missing, in time order
    times = [t for t, _ in rows]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_kill_9_then_restart_loses_nothing_and_seq_continues(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    dev = "kill-1"
    stack = Stack(tmp_path / "stack", mosquitto, influxdb, [SimDevice(dev)],
                  Timing(frame_period_s=0.02, sample_interval_s=0.1))
    try:
        stack.start()
        assert wait_for(lambda: stack.captured()[dev] >= 40, 30, step=0.25)
        stack.kill_agent(dev)
        at_kill = stack.captured()[dev]
        time.sleep(1)
        stack.start_agent(dev)
        assert wait_for(lambda: stack.captured()[dev] >= at_kill + 30, 30, step=0.25)
        stack.stop_sims()
        drained = stack.drain(timeout=30)
        captured = stack.captured()[dev]
    finally:
        stack.stop()
    seqs = sorted(s for _, s in _stored_rows(influxdb, stack.database, dev))
    missing = sorted(set(range(1, captured + 1)) - set(seqs))
    assert drained and not missing, (at_kill, captured, missing)
    assert seqs == list(range(1, captured + 1)) and captured > at_kill


def test_outbox_cap_during_outage_drops_exactly_the_oldest_and_counts_them(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    dev = "cap-1"
    cap = 40
    stack = Stack(tmp_path / "stack", mosquitto, influxdb, [SimDevice(dev)],
                  Timing(frame_period_s=0.02, sample_interval_s=0.1, status_interval_s=1.0),
                  outbox_caps={dev: cap})
    statuses: list[bytes] = []
    try:
        stack.start()
        assert wait_for(lambda: stack.stored()[dev] >= 5, 30, step=0.25)
        mosquitto.stop()
        start = stack.captured()[dev]
        assert wait_for(lambda: stack.captured()[dev] >= start + 2 * cap + 20, 30, step=0.25)
        stack.stop_sims()
        time.sleep(1.0)  # the last interval's frames still become one more reading
        captured, pending, dropped = stack.outbox_counts(dev)
        # The newest `cap` unsent are kept, and whatever the agent had handed to its MQTT
        # client before the outage (sent again after the reconnect, so never dropped).
        in_flight = pending - cap
        assert in_flight >= 0 and dropped >= cap + 20 - in_flight
        mosquitto.start()
        wait_for(lambda: stack.pending() == 0 and stack.stored()[dev] == captured - dropped,
                 60, step=0.25)
        # The retained status reports the dropped count.
        got = threading.Event()
        watcher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)

        def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
            statuses.append(m.payload)
            if decode_status(m.payload).dropped == dropped:
                got.set()

        watcher.on_message = on_message
        watcher.connect("127.0.0.1", mosquitto.port)
        watcher.subscribe(f"airgrid/v1/dev/{dev}/status", 1)
        watcher.loop_start()
        got.wait(10)
        watcher.loop_stop()
    finally:
        stack.stop()
    seqs = {s for _, s in _stored_rows(influxdb, stack.database, dev)}
    missing = sorted(set(range(1, captured + 1)) - seqs)
    assert len(missing) == dropped, (captured, dropped, stack.outbox_counts(dev), missing)
    # Exactly the oldest unsent ones: one contiguous block, ending where the cap begins.
    assert missing == list(range(missing[0], missing[0] + dropped))
    assert missing[-1] == captured - cap
    assert got.is_set(), [decode_status(s) for s in statuses[-3:]]
