"""Storage: InfluxDB 1.x /write with auth, /api/v2/write against VictoriaMetrics, partial
writes, the durable spool replayed in order."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from collector.config import Influx
from collector.errors import Rejected, RetryLater
from collector.influx_sink import InfluxV1Sink
from collector.influx_v2_sink import InfluxV2Sink
from collector.spool import Spool, SpoolFull
from collector.writer import StorageWriter
from orchestration.services import InfluxDB, Mosquitto
from tests.support.collector_process import Collector, publish_up, reading, stored_rows
from tests.support.fixtures import VictoriaMetrics
from tests.support.integration import Processes
from tests.support.slow_http import ThrottlingProxy
from tests.support.wait import wait_for


class AuthInfluxDB(InfluxDB):
    def _command(self) -> list[str]:
        cmd = super()._command()
        text = self.config_path.read_text().replace("[http]\n", "[http]\n  auth-enabled = true\n")
        self.config_path.write_text(text)
        return cmd


LINES = [
    "readings,device=s1,sensor=pms5003 pm2_5=12.5,pm10=20.0,seq=1i 1790000000000",
    "readings,device=s1,sensor=pms5003 pm2_5=13.0,pm10=21.5,seq=2i 1790000001000",
    "readings,device=s2,sensor=pms5003 pm2_5=99.9,pm10=120.0,seq=1i 1790000000500",
]


def test_v1_write_with_auth_and_refused_without(tmp_path: Path, processes: Processes) -> None:
    influx = processes.service(AuthInfluxDB(tmp_path / "influx-auth"))
    q = urllib.parse.urlencode(
        {"q": "CREATE USER admin WITH PASSWORD 's3cret' WITH ALL PRIVILEGES"}).encode()
    urllib.request.urlopen(f"{influx.url}/query", data=q, timeout=10).read()
    good = InfluxV1Sink(influx.url, "authdb", "admin", "s3cret")
    good.ensure_database()

    def written() -> bool:
        try:
            good.write(LINES)
        except RetryLater:  # a new database can take a moment to accept writes, as the
            return False    # collector's writer knows: it retries too
        return True

    assert wait_for(written, 20, step=0.2)
    with pytest.raises(Rejected, match="401"):
        InfluxV1Sink(influx.url, "authdb", "admin", "wrong").write(LINES)
    with pytest.raises(Rejected, match="401"):
        InfluxV1Sink(influx.url, "authdb").write(LINES)
    q = urllib.parse.urlencode({"q": "SELECT pm2_5 FROM readings", "db": "authdb",
                                "u": "admin", "p": "s3cret", "epoch": "ms"})
    with urllib.request.urlopen(f"{influx.url}/query?{q}", timeout=10) as r:
        values = json.loads(r.read())["results"][0]["series"][0]["values"]
    assert sorted(v[1] for v in values) == [12.5, 13.0, 99.9]


def test_v2_write_reaches_victoria_metrics_with_tags_and_values(
        victoria_metrics: VictoriaMetrics) -> None:
    # VictoriaMetrics' default retention is one month: stamp the points just now.
    t0 = (int(time.time()) - 60) * 1000
    lines = [line.replace("17900000", str(t0)[:8]) for line in LINES]
    sink = InfluxV2Sink(victoria_metrics.url, token="unused", org="airgrid", bucket="airgrid")
    sink.write(lines)
    sink.close()
    series: list[dict[str, object]] = []

    def both_devices() -> bool:
        series[:] = victoria_metrics.export('{__name__="readings_pm2_5"}')
        return len(series) == 2

    assert wait_for(both_devices, 20, step=0.3), series
    got = {s["metric"]["device"]: (s["values"], s["timestamps"])  # type: ignore[index]
           for s in series}
    base = int(str(t0)[:8] + "00000")
    assert got == {"s1": ([12.5, 13.0], [base, base + 1000]), "s2": ([99.9], [base + 500])}
    assert all(s["metric"]["sensor"] == "pms5003" for s in series)  # type: ignore[index]


def test_v2_sink_unreachable_is_retry_later(tmp_path: Path) -> None:
    from orchestration.services import free_port

    sink = InfluxV2Sink(f"http://127.0.0.1:{free_port()}", "t", "o", "b", timeout_s=1)
    with pytest.raises(RetryLater):
        sink.write(LINES)


def test_partial_write_sends_only_the_bad_lines_back(shared_influxdb: InfluxDB,
                                                     influx_db_name: str,
                                                     tmp_path: Path) -> None:
    sink = InfluxV1Sink(shared_influxdb.url, influx_db_name)
    writer = StorageWriter(sink, Spool(tmp_path / "spool", 1 << 20))
    sink.write([LINES[0]])  # pm2_5 is now a float field in this shard
    bad_type = 'readings,device=s9,sensor=pms5003 pm2_5="high",seq=1i 1790000002000'
    bad_syntax = "readings,device=s9 this is not line protocol"
    out = writer.store([LINES[1], bad_type, LINES[2], bad_syntax])
    assert sorted(line for line, _ in out.refused) == sorted([bad_type, bad_syntax])
    assert out.stored == 2 and out.spooled == 0
    assert all("InfluxDB 400" in reason for _, reason in out.refused)
    rows = stored_rows(shared_influxdb, influx_db_name)
    assert sorted((r["device"], r["seq"]) for r in rows) == [("s1", 1), ("s1", 2), ("s2", 1)]


def test_outage_spools_in_order_and_replays_when_influxdb_returns(
        tmp_path: Path, influxdb: InfluxDB) -> None:
    influxdb.create_database("sp")
    sink = InfluxV1Sink(influxdb.url, "sp", timeout_s=1)
    spool = Spool(tmp_path / "spool", 1 << 20)
    writer = StorageWriter(sink, spool, retries=1, backoff_s=0.05)
    influxdb.stop()
    # the same point written twice: the later batch must win, so order matters
    first = ["readings,device=o1 pm2_5=1.0,seq=1i 1790000000000"]
    second = ["readings,device=o1 pm2_5=2.0,seq=1i 1790000000000",
              "readings,device=o1 pm2_5=3.0,seq=2i 1790000001000"]
    assert writer.store(first).spooled == 1
    assert writer.store(second).spooled == 2  # behind the first, though one retry is due
    assert (spool.lines, len(spool)) == (3, 2)
    assert writer.replay(force=True) == [] and spool.lines == 3  # still down: kept
    # a restart of the collector finds the spool as it was
    spool = Spool(tmp_path / "spool", 1 << 20)
    writer = StorageWriter(sink, spool)
    assert (spool.lines, len(spool)) == (3, 2)
    influxdb.start()
    assert writer.replay(force=True) == []
    assert spool.lines == 0 and len(spool) == 0 and not list((tmp_path / "spool").iterdir())
    rows = stored_rows(influxdb, "sp")
    assert [(r["seq"], r["pm2_5"]) for r in rows] == [(1, 2.0), (2, 3.0)]


def test_a_spooled_batch_influxdb_cannot_store_in_time_is_split_not_left_blocking(
        shared_influxdb: InfluxDB, influx_db_name: str, tmp_path: Path) -> None:
    """Before: the spool's head was sent whole again and again, timing out every time,
    and nothing behind it was ever stored. Now it is halved on each timeout."""
    proxy = ThrottlingProxy(shared_influxdb.url, slow_over=60, delay_s=1.5)
    try:
        sink = InfluxV1Sink(proxy.url, influx_db_name, timeout_s=0.5)
        spool = Spool(tmp_path / "spool", 1 << 20)
        writer = StorageWriter(sink, spool, retries=0, backoff_s=0.01,
                               replay_backoff_max_s=0.05)
        big = [f"readings,device=big pm2_5=1.5,seq={i}i {1790000000000 + i}"
               for i in range(200)]
        poison = 'readings,device=big pm2_5="high",seq=999i 1790000999000'
        big.insert(77, poison)  # and a line InfluxDB refuses, in the middle
        behind = [f"readings,device=behind pm2_5=2.5,seq={i}i {1790000000000 + i}"
                  for i in range(5)]
        spool.append(big)
        spool.append(behind)
        refused: list[tuple[str, str]] = []
        assert wait_for(lambda: refused.extend(writer.replay(force=True)) or not len(spool),
                        30, step=0.05)
        assert [line for line, _ in refused] == [poison]
        assert "InfluxDB 400" in refused[0][1]
        rows = stored_rows(shared_influxdb, influx_db_name)
        assert sorted((r["device"], r["seq"]) for r in rows) == sorted(
            [("big", i) for i in range(200)] + [("behind", i) for i in range(5)])
        assert max(n for n in proxy.writes[-5:]) <= 60  # stored in pieces InfluxDB takes
    finally:
        proxy.close()


def test_spool_full_is_reported_not_a_crash(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=4096)
    line = "readings,device=f1 pm2_5=1.0,seq=1i 1790000000000"
    with pytest.raises(SpoolFull, match="cap 4096"):
        for _ in range(1000):
            spool.append([line] * 10)
    assert 0 < spool.bytes <= 4096
    assert Spool(tmp_path / "spool", 4096).lines == spool.lines


def test_spool_on_a_full_disk_raises_spool_full(tmp_path: Path) -> None:
    # /dev/full answers every write with ENOSPC, as a full disk does.
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full not present")
    spool = Spool(tmp_path / "spool", 1 << 20)
    target = tmp_path / "spool" / f"{1:020d}.tmp"
    target.symlink_to("/dev/full")
    with pytest.raises(SpoolFull, match="disk full"):
        spool.append(["readings,device=f1 pm2_5=1.0 1"])
    assert spool.lines == 0 and len(spool) == 0



def test_collector_configured_for_v2_writes_through_api_v2(
        tmp_path: Path, mosquitto: Mosquitto, victoria_metrics: VictoriaMetrics) -> None:
    c = Collector(tmp_path / "c", mosquitto.port, victoria_metrics.url, "airgrid",
                  influx_extra='api = "v2"\ntoken = "unused"\nbucket = "airgrid"\n')
    c.start()
    try:
        now = (int(time.time()) - 30) * 1000
        publish_up(mosquitto.port, "v2dev", [reading(1, now, 35.5), reading(2, now + 1000, 36.0)])
        series: list[dict[str, object]] = []

        def stored() -> bool:
            series[:] = victoria_metrics.export('{__name__="readings_pm2_5",device="v2dev"}')
            return bool(series)

        assert wait_for(stored, 20, step=0.3)
        assert series[0]["values"] == [35.5, 36.0]
        assert series[0]["timestamps"] == [now, now + 1000]
        hourly = victoria_metrics.export('{__name__="readings_hourly_pm2_5_count",device="v2dev"}')
        # rewrites of the hour are separate samples at one timestamp in VictoriaMetrics
        assert hourly and max(hourly[0]["values"]) == 2  # type: ignore[call-overload]
    finally:
        assert c.stop() == 0


@pytest.mark.parametrize(("url", "gzip", "compress"), [
    ("http://127.0.0.1:8086", None, False), ("http://localhost:8086", None, False),
    ("http://[::1]:8086", None, False), ("http://influxdb:8086", None, True),
    ("http://10.2.0.7:8086", None, True), ("http://127.0.0.1:8086", True, True),
    ("http://influxdb:8086", False, False)])
def test_write_bodies_are_gzipped_unless_influxdb_is_on_this_host(
        url: str, gzip: bool | None, compress: bool) -> None:
    assert Influx(url=url, gzip=gzip).compress is compress
