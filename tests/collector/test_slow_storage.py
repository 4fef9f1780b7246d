"""InfluxDB made slow for real (its process stopped with SIGSTOP): the collector keeps
taking messages in, acks them from its durable spool, and once InfluxDB runs again every
reading is there exactly once."""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from airgrid.wire import Reading, deadletter_topic, up_topic
from orchestration.services import InfluxDB, Mosquitto
from tests.support.collector_process import (
    AgentLikePublisher,
    Collector,
    count,
    reading,
    stored_rows,
    up_payload,
)
from tests.support.wait import wait_for

DEVICES = ["slow-a", "slow-b"]
STOPPED_S = 8.0


def test_a_stalled_influxdb_does_not_stall_ingest_and_loses_or_doubles_nothing(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB) -> None:
    """Before: the pipeline's thread waited for a write slot (and replayed the spool
    itself), so while InfluxDB hung no message was taken in for seconds at a time."""
    influxdb.create_database("slow")
    collector = Collector(tmp_path / "collector", mosquitto.port, influxdb.url, "slow",
                          influx_extra="spill_after_ms = 300\n")
    collector.start()
    probes: list[float] = []  # when each probe came back as a dead letter
    watcher = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    watcher.on_message = lambda c, u, m: probes.append(time.monotonic()) if json.loads(
        m.payload).get("topic") == up_topic("probe") else None
    watcher.on_connect = lambda c, u, f, r, p: c.subscribe(deadletter_topic(), 1)
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.loop_start()

    sent: dict[str, dict[int, Reading]] = {d: {} for d in DEVICES}
    stop = threading.Event()
    base = int(time.time() * 1000) - 3_600_000

    def publish(device: str, index: int) -> None:
        pub = AgentLikePublisher(mosquitto.port, f"agent-{device}")
        seq = 0
        try:
            while not stop.is_set():
                batch = [reading(seq + k, base + (seq + k) * 500 + index, 10.0 + k)
                         for k in range(1, 6)]
                seq += 5
                try:
                    pub.send(up_topic(device), up_payload(device, batch), stop)
                except TimeoutError:
                    return  # stopped before the broker had it: never counted as sent
                for r in batch:
                    sent[device][r.seq] = r
                time.sleep(0.05)
        finally:
            pub.close()

    def probe() -> None:  # an invalid message, dead-lettered the moment it is taken
        pub = AgentLikePublisher(mosquitto.port, "agent-probe")
        k = 0
        while not stop.wait(0.1):
            k += 1
            pub.client.publish(up_topic("probe"), f"probe {k}".encode(), qos=1)
        pub.close()

    threads = [threading.Thread(target=publish, args=(d, i)) for i, d in enumerate(DEVICES)]
    threads.append(threading.Thread(target=probe))
    for t in threads:
        t.start()
    pid = influxdb.pid
    assert pid is not None
    try:
        time.sleep(2)
        os.kill(pid, signal.SIGSTOP)  # InfluxDB hangs: writes neither answer nor fail
        stopped_at = time.monotonic()
        time.sleep(STOPPED_S)
        resumed_at = time.monotonic()
        os.kill(pid, signal.SIGCONT)
        spooled_slow = collector.metric("airgrid_collector_spooled_batches_total",
                                        'reason="slow"')
        time.sleep(2)
    finally:
        os.kill(pid, signal.SIGCONT)
        stop.set()
        for t in threads:
            t.join(30)
    total = sum(len(v) for v in sent.values())
    wait_for(lambda: count(influxdb, "slow") >= total, 60, step=0.5)
    assert wait_for(lambda: collector.metric("airgrid_collector_spool_depth_lines") == 0, 30)
    refused = collector.metric("airgrid_collector_rejected_total", 'reason="storage_refused"')
    assert collector.stop() == 0
    watcher.loop_stop()

    # ingest went on while InfluxDB was stopped: probes kept coming back, without a gap
    during = [t for t in probes if stopped_at + 1 <= t <= resumed_at]
    assert len(during) >= (STOPPED_S - 1) / 0.1 * 0.5, len(during)
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert max(gaps) < 2.0, max(gaps)
    assert spooled_slow > 0  # acked from the spool, counted as "slow" (not "down")
    # nothing lost, nothing doubled
    rows = stored_rows(influxdb, "slow")
    have: dict[tuple[str, int], int] = {}
    for row in rows:
        key = (str(row["device"]), int(row["seq"]))  # type: ignore[call-overload]
        have[key] = have.get(key, 0) + 1
    assert total > 200, total
    assert have == {(d, s): 1 for d, v in sent.items() for s in v}
    assert refused == 0
    hourly = stored_rows(influxdb, "slow", "readings_hourly")
    assert sum(int(h["pm2_5_count"]) for h in hourly) == total  # type: ignore[call-overload]
