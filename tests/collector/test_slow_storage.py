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

from airgrid.wire import deadletter_topic, up_topic
from orchestration.services import InfluxDB, Mosquitto
from tests.support.collector_process import (
    AgentFleet,
    AgentLikePublisher,
    Collector,
    TopicWatcher,
    count,
    hourly_count,
    stored_by_key,
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
    dead = TopicWatcher(mosquitto.port, deadletter_topic())
    fleet = AgentFleet(mosquitto.port, DEVICES, pause_s=0.05)
    stop_probes = threading.Event()

    def probe() -> None:  # an invalid message, dead-lettered the moment it is taken
        pub = AgentLikePublisher(mosquitto.port, "agent-probe")
        k = 0
        while not stop_probes.wait(0.1):
            k += 1
            pub.client.publish(up_topic("probe"), f"probe {k}".encode(), qos=1)
        pub.close()

    prober = threading.Thread(target=probe)
    fleet.start()
    prober.start()
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
        stop_probes.set()
        fleet.stop()
        prober.join(30)
    total = fleet.total
    wait_for(lambda: count(influxdb, "slow") >= total, 60, step=0.5)
    assert wait_for(lambda: collector.metric("airgrid_collector_spool_depth_lines") == 0, 30)
    refused = collector.metric("airgrid_collector_rejected_total", 'reason="storage_refused"')
    assert collector.stop() == 0
    dead.close()

    # ingest went on while InfluxDB was stopped: probes kept coming back, without a gap
    probes = [m.at for m in dead.received()
              if json.loads(m.payload).get("topic") == up_topic("probe")]
    during = [t for t in probes if stopped_at + 1 <= t <= resumed_at]
    assert len(during) >= (STOPPED_S - 1) / 0.1 * 0.5, len(during)
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert max(gaps) < 2.0, max(gaps)
    assert spooled_slow > 0  # acked from the spool, counted as "slow" (not "down")
    # nothing lost, nothing doubled
    have = {key: len(rows) for key, rows in stored_by_key(influxdb, "slow").items()}
    assert total > 200, total
    assert have == {(d, s): 1 for d, v in fleet.sent.items() for s in v}
    assert refused == 0
    assert hourly_count(influxdb, "slow") == total
