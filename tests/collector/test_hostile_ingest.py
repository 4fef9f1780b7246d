"""Hostile and unlucky input against the real collector process, Mosquitto and InfluxDB.

One collector serves the whole module; each test uses its own devices. What each proves:
nothing a device sends stops ingestion for others, a bad reading is quarantined alone
(dead letter, durable quarantine, counted per device and reason) while its batch is
stored, a re-flashed device's new outbox epoch is stored beside the old one, no
device-controlled string can write another point, and a refused reading is not counted
in its hour.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec
import pytest

from airgrid.wire import (
    SCHEMA_VERSION,
    Reading,
    Status,
    UpBatch,
    deadletter_topic,
    encode_status,
    encode_up,
    status_topic,
    up_topic,
)
from collector.line_protocol import safe_text
from orchestration.services import InfluxDB, Mosquitto
from tests.support.collector_process import (
    AgentLikePublisher,
    Collector,
    TopicWatcher,
    count,
    reading,
)
from tests.support.integration import process_fixture
from tests.support.wait import wait_for

HOUR_MS = 3_600_000


@dataclass
class Stack:
    broker: Mosquitto
    influx: InfluxDB
    db: str
    collector: Collector
    pub: AgentLikePublisher
    dead: TopicWatcher

    def send(self, topic: str, payload: bytes) -> None:
        self.pub.send(topic, payload)

    def up(self, device: str, readings: list[Reading], epoch: str = "") -> None:
        self.send(up_topic(device), encode_up(UpBatch(
            v=SCHEMA_VERSION, device=device, boot="b", readings=tuple(readings), epoch=epoch)))

    def query(self, q: str) -> list[list[object]]:
        return [row for s in self.influx.series(q, db=self.db) for row in s.values]

    def count(self, device: str) -> int:
        return count(self.influx, self.db, device)

    def dead_for(self, device: str) -> list[dict[str, object]]:
        return [d for d in self.dead.decoded() if f"/dev/{device}/" in str(d["topic"])]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "collector.cli", "quarantine", *args, "--config",
             str(self.collector.config)], capture_output=True, text=True, timeout=60)


@process_fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, shared_influxdb: InfluxDB
          ) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("hostile")
    broker = Mosquitto(tmp / "mosquitto")
    broker.start()
    db = f"hostile_{time.monotonic_ns()}"
    shared_influxdb.create_database(db)
    # a reading more than 2 s ahead of the collector's clock is future_ts (redrive test)
    collector = Collector(tmp / "collector", broker.port, shared_influxdb.url, db,
                          extra="[validation]\nmax_future_s = 2\n")
    dead = TopicWatcher(broker.port, deadletter_topic())
    collector.start()
    pub = AgentLikePublisher(broker.port, "hostile-pub")
    yield Stack(broker, shared_influxdb, db, collector, pub, dead)
    pub.close()
    dead.close()
    collector.stop()
    broker.stop()


def _now() -> int:
    return int(time.time() * 1000)


def test_a_seq_beyond_int64_is_quarantined_and_ingest_goes_on(stack: Stack) -> None:
    """Before: it passed validation, the checkpoint raised OverflowError before the ack,
    and the collector crashed on it after every restart."""
    now = _now()
    stack.up("pp-1", [reading(1, now - 2000, 10.0), reading(2**63, now - 1000, 11.0)])
    stack.up("pp-2", [reading(1, now - 1000, 12.0)])
    assert wait_for(lambda: stack.count("pp-2") == 1 and stack.count("pp-1") == 1, 15)
    assert wait_for(lambda: stack.dead_for("pp-1"), 5)
    (dl,) = stack.dead_for("pp-1")
    assert dl["reason"] == "range" and "$.readings[1].seq" in str(dl["detail"])
    assert stack.collector.proc is not None and stack.collector.proc.poll() is None
    assert stack.collector.metric("airgrid_collector_quarantined_total",
                                  'device="pp-1",reason="range"') == 1


def test_one_bad_reading_is_quarantined_alone_and_its_batch_stored(stack: Stack) -> None:
    """Before: a raw 16-bit pm10_cf1 (2100) or an RH of 100.1 dead-lettered all 200."""
    now = _now() - 300_000
    rs = [reading(i + 1, now + i * 1000, 20.0) for i in range(200)]
    rs[50] = msgspec.structs.replace(rs[50], pm10_cf1=2100.0, flags=("out_of_range",))
    rs[60] = msgspec.structs.replace(rs[60], humidity_pct=100.1, flags=("high_humidity",))
    rs[70] = msgspec.structs.replace(rs[70], pm2_5=-1.0)  # impossible
    rs[80] = msgspec.structs.replace(rs[80], ts=86_400_000)  # 1970-01-02: no RTC, no NTP
    stack.up("pb-1", rs)
    assert wait_for(lambda: stack.count("pb-1") == 198, 15), stack.count("pb-1")
    assert wait_for(lambda: len(stack.dead_for("pb-1")) == 2, 5)
    assert sorted((d["reason"], d["detail"]) for d in stack.dead_for("pb-1")) == [
        ("range", "Expected `float` >= 0.0 - at `$.readings[70].pm2_5`"),
        ("ts_too_old", "Expected `int` >= 1577836800000 - at `$.readings[80].ts`")]
    stored = {r[0]: r for r in stack.query(
        "SELECT seq, pm10_cf1, humidity_pct FROM readings WHERE device='pb-1'")}
    assert len(stored) == 198
    listed = stack.cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    mine = [json.loads(line) for line in listed.stdout.splitlines()
            if json.loads(line)["device"] == "pb-1"]
    assert sorted((e["reason"], json.loads(e["body"])["seq"]) for e in mine) == [
        ("range", 71), ("ts_too_old", 81)]
    assert stack.collector.metric("airgrid_collector_quarantined_total",
                                  'device="pb-1",reason="ts_too_old"') == 1
    hourly = stack.query("SELECT sum(pm2_5_count) FROM readings_hourly WHERE device='pb-1'")
    assert hourly and hourly[0][1] == 198


def test_a_quarantined_reading_is_redriven_once_its_cause_is_gone(stack: Stack) -> None:
    """A reading 3.5 s ahead of the collector's clock (limit 2 s) is quarantined; once the
    clock has caught up, `quarantine redrive` sends it and it is stored."""
    ts = _now() + 3500
    stack.up("pr-1", [reading(1, ts, 30.0)])
    assert wait_for(lambda: stack.dead_for("pr-1"), 10)
    assert stack.dead_for("pr-1")[0]["reason"] == "future_ts"
    assert stack.count("pr-1") == 0
    assert wait_for(lambda: _now() > ts + 500, 10)
    out = stack.cli("redrive")
    assert out.returncode == 0, out.stdout + out.stderr
    assert wait_for(lambda: stack.count("pr-1") == 1, 15)
    listed = stack.cli("list", "--json", "--all")
    (entry,) = [json.loads(x) for x in listed.stdout.splitlines()
                if json.loads(x)["device"] == "pr-1"]
    assert entry["redriven_ms"] is not None


def test_a_reflashed_device_starts_a_new_epoch_and_both_are_stored(stack: Stack) -> None:
    """Before: seq restarting at 1 on a new card was called a duplicate, 50 of 50 dropped."""
    t0 = _now() - 600_000
    stack.up("pe-1", [reading(i, t0 + i * 1000, 15.0) for i in range(1, 51)], "aaaa1111")
    assert wait_for(lambda: stack.count("pe-1") == 50, 15)
    before = stack.collector.metric("airgrid_collector_new_epochs_total")
    t1 = t0 + 100_000
    stack.up("pe-1", [reading(i, t1 + i * 1000, 16.0) for i in range(1, 51)], "bbbb2222")
    assert wait_for(lambda: stack.count("pe-1") == 100, 15), stack.count("pe-1")
    assert stack.collector.metric("airgrid_collector_new_epochs_total") == before + 1
    # a repeat within an epoch is still a repeat
    stack.up("pe-1", [reading(i, t1 + i * 1000, 16.0) for i in range(1, 51)], "bbbb2222")
    # an agent older than epochs (no field) is its own epoch ""
    stack.send(up_topic("pe-1"), json.dumps({
        "v": 1, "device": "pe-1", "boot": "b",
        "readings": [{"seq": 1, "ts": t1 + 200_000, "sensor": "pms5003", "pm2_5": 1.0}]}
    ).encode())
    assert wait_for(lambda: stack.count("pe-1") == 101, 15)
    time.sleep(0.5)
    assert stack.count("pe-1") == 101


def test_no_device_string_writes_another_point(stack: Stack) -> None:
    """Before: a line feed in `sensor` wrote a `readings` point without a device tag (the
    county mean went from 20 to 760), and a trailing backslash had the line refused."""
    now = _now() - 60_000
    sensors = ["pms5003\nreadings pm2_5=760 1700000000000", "evil\\", "a\\,b=c d",
               "pms\r\u2028\u0085\x00\tx"]
    stack.up("pi-1", [msgspec.structs.replace(reading(i + 1, now + i, 20.0), sensor=s)
                      for i, s in enumerate(sensors)])
    stack.send(status_topic("pi-1"), encode_status(Status(
        v=1, device="pi-1", state="online",
        agent_version='1.0"\nreadings pm2_5=760 1700000000001\\')))
    assert wait_for(lambda: stack.count("pi-1") == len(sensors), 15), stack.count("pi-1")
    got = sorted(str(r[2]) for r in stack.query(
        "SELECT seq, sensor FROM readings WHERE device='pi-1'"))
    assert got == sorted(safe_text(s) for s in sensors)
    assert wait_for(lambda: stack.query(
        "SELECT agent_version FROM device_status WHERE device='pi-1'"), 10)
    (status,) = stack.query("SELECT agent_version FROM device_status WHERE device='pi-1'")
    assert status[1] == safe_text('1.0"\nreadings pm2_5=760 1700000000001\\', tag=False)
    names = {r[0] for r in stack.query("SHOW MEASUREMENTS")}
    # only what the collector itself writes (alert events come from the rules it judges)
    assert names <= {"readings", "readings_hourly", "device_status", "alert_events",
                     "device_location"}
    assert stack.query("SELECT count(pm2_5) FROM readings WHERE device=''") == []
    assert [d for d in stack.dead_for("pi-1")] == []


def test_a_refused_reading_is_not_counted_in_its_hour(stack: Stack) -> None:
    """InfluxDB refuses a reading whose field type conflicts with its shard; the rest of
    the batch is stored, the refusal is dead-lettered with InfluxDB's reason, and the
    hour's aggregate counts only what was stored."""
    hour = (_now() - 30 * HOUR_MS) // HOUR_MS * HOUR_MS
    # temperature_c as an integer in that hour's shard: a float temperature_c is refused
    # there (no other test of this module writes temperature_c)
    req = urllib.request.Request(
        f"{stack.influx.url}/write?db={stack.db}&precision=ms",
        data=f"readings,device=zz temperature_c=1i {hour}".encode(), method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 204
    rs = [reading(i, hour + i * 60_000, 10.0 * i) for i in range(1, 4)]
    rs[1] = msgspec.structs.replace(rs[1], temperature_c=21.5)
    stack.up("pf-1", rs)
    assert wait_for(lambda: stack.count("pf-1") == 2, 15)
    assert wait_for(lambda: stack.dead_for("") or [
        d for d in stack.dead.decoded() if d["reason"] == "storage_refused"], 10)
    refused = [d for d in stack.dead.decoded() if d["reason"] == "storage_refused"]
    assert len(refused) == 1 and "conflict" in str(refused[0]["detail"])
    # the next batch rewrites the hour without the refused reading
    stack.up("pf-2", [reading(1, _now() - 1000, 1.0)])

    def hour_count() -> object:
        rows = stack.query(f"SELECT pm2_5_count, pm2_5_mean FROM readings_hourly "
                           f"WHERE device='pf-1' AND time = {hour}ms")
        return rows[0][1:] if rows else None

    assert wait_for(lambda: hour_count() == [2, 20.0], 15), hour_count()
    time.sleep(0.3)
    assert stack.count("pf-1") == 2


def test_invalid_utf8_inside_a_string_does_not_stop_the_collector(stack: Stack) -> None:
    """Before: msgspec's UnicodeDecodeError escaped the validator and the collector died on
    the message, again after every restart (the broker redelivers it)."""
    stack.send(up_topic("pu-1"), b'{"v":1,"device":"pu-1","boot":"\xff\xfe","readings":[]}')
    stack.up("pu-2", [reading(1, _now() - 1000, 12.0)])
    assert wait_for(lambda: stack.count("pu-2") == 1, 15)
    assert wait_for(lambda: stack.dead_for("pu-1"), 5)
    assert [d["reason"] for d in stack.dead_for("pu-1")] == ["not_json"]
    assert stack.collector.proc is not None and stack.collector.proc.poll() is None
