"""Operability: check-config, /metrics and /healthz, status and Last Will, hourly
aggregates, repeats dropped across a restart, graceful drain, JSON logs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from airgrid.wire import SCHEMA_VERSION, Status, encode_status, status_topic
from collector.aggregates import HOUR_MS
from orchestration.services import InfluxDB, Mosquitto
from tests.support.collector_process import Collector, count, publish_up, reading, stored_rows
from tests.support.wait import wait_for


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector.cli", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_check_config_accepts_good_and_names_file_key_expected(tmp_path: Path) -> None:
    reg = tmp_path / "reg.csv"
    reg.write_text("id,site,township,grid,lat,lon\na1,s,t,g,1,2\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text('[influx]\napi = "v1"\n[registry]\nfile = "reg.csv"\nunknown = "reject"\n')
    out = _check(cfg)
    assert out.returncode == 0 and "1 registered devices" in out.stdout, out.stderr
    cfg.write_text('[influx]\napi = "v3"\n')
    out = _check(cfg)
    assert out.returncode == 2
    assert f"{cfg}: influx.api: expected" in out.stderr and "'v3'" in out.stderr
    cfg.write_text('[influx]\napi = "v2"\n')
    assert "influx.token: expected an API token" in _check(cfg).stderr
    cfg.write_text("[batch]\nmax_lines = 0\n")
    assert "batch.max_lines: expected an integer >= 1, got 0" in _check(cfg).stderr
    cfg.write_text('[registry]\nfile = "reg.csv"\n')
    reg.write_text("id,site,township,grid,lat,lon\na1,s,t,g,1,200\n")
    out = _check(cfg)
    assert out.returncode == 2 and "reg.csv: line 2.lon: expected a number" in out.stderr


def test_metrics_health_status_lwt_aggregates_and_restart(
        tmp_path: Path, mosquitto: Mosquitto, shared_influxdb: InfluxDB,
        influx_db_name: str) -> None:
    c = Collector(tmp_path / "c", mosquitto.port, shared_influxdb.url, influx_db_name,
                  extra='[log]\nformat = "json"\n')
    c.start()
    try:
        h = c.health()
        assert h["ok"] is True and h["storage_healthy"] is True
        # a device comes online, its Last Will later says offline
        dev = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                          client_id="ops-dev")
        offline = encode_status(Status(v=SCHEMA_VERSION, device="ops1", state="offline"))
        dev.will_set(status_topic("ops1"), offline, qos=1, retain=True)
        dev.connect("127.0.0.1", mosquitto.port, keepalive=2)
        dev.loop_start()
        online = Status(v=SCHEMA_VERSION, device="ops1", state="online", outbox_depth=3)
        dev.publish(status_topic("ops1"), encode_status(online), qos=1, retain=True)
        assert wait_for(lambda: c.metric("airgrid_collector_devices_online") == 1, step=0.1)

        hour = (int(time.time() * 1000) // HOUR_MS - 1) * HOUR_MS
        values = [10.0, 20.0, 60.0]
        publish_up(mosquitto.port, "ops1",
                   [reading(i + 1, hour + i * 1000, v) for i, v in enumerate(values)])
        assert wait_for(lambda: count(shared_influxdb, influx_db_name) == 3, step=0.1)
        publish_up(mosquitto.port, "ops1", [reading(2, hour + 1000, 20.0)])  # a repeat
        assert wait_for(lambda: c.metric("airgrid_collector_duplicates_total") == 1, step=0.1)
        assert c.metric("airgrid_collector_readings_stored_total") == 3
        assert c.metric("airgrid_collector_messages_total", 'kind="up"') == 2

        dev.loop_stop()
        dev.socket().close()  # dies without DISCONNECT: the broker sends the Last Will
        assert wait_for(lambda: c.metric("airgrid_collector_devices_online") == 0, 15, step=0.1)
        # the gauge moves when the status arrives; its point is stored with the next batch
        assert wait_for(lambda: len(stored_rows(shared_influxdb, influx_db_name,
                                                "device_status")) == 2, 15, step=0.1)
        health = stored_rows(shared_influxdb, influx_db_name, "device_status")
        assert [r["online"] for r in health] == [True, False]
        assert health[0]["outbox_depth"] == 3
    finally:
        c.kill()  # kill -9: state must come back from the checkpoint
    c.start()
    try:
        publish_up(mosquitto.port, "ops1", [reading(3, hour + 2000, 60.0),
                                            reading(4, hour + 3000, 30.0)])
        assert wait_for(lambda: c.metric("airgrid_collector_readings_stored_total") == 1, step=0.1)
        assert c.metric("airgrid_collector_duplicates_total") == 1  # seq 3 seen before
    finally:
        assert c.stop() == 0
    agg = stored_rows(shared_influxdb, influx_db_name, "readings_hourly")
    assert len(agg) == 1 and agg[0]["time"] == hour and agg[0]["device"] == "ops1"
    assert agg[0]["pm2_5_count"] == 4 and agg[0]["pm2_5_max"] == 60.0
    assert agg[0]["pm2_5_mean"] == pytest.approx((10 + 20 + 60 + 30) / 4)
    log_lines = [json.loads(x) for x in c.log.read_text().splitlines() if x.startswith("{")]
    assert any(x.get("device") == "ops1" and x.get("state") == "offline" for x in log_lines)


def test_sigterm_drains_what_is_held(tmp_path: Path, mosquitto: Mosquitto,
                                     influxdb: InfluxDB) -> None:
    influxdb.create_database("drain")
    c = Collector(tmp_path / "c", mosquitto.port, influxdb.url, "drain",
                  extra="[spool]\ndir = \"spool\"\n")
    c.start()
    influxdb.stop()
    now = int(time.time() * 1000)
    publish_up(mosquitto.port, "dr1", [reading(i, now - 10_000 + i, 5.0) for i in range(1, 6)])
    assert wait_for(lambda: c.metric("airgrid_collector_spool_depth_lines") >= 5, step=0.1)
    assert c.health()["storage_healthy"] is False
    assert c.stop() == 0  # graceful: the spooled readings are acked and stay on disk
    assert list((c.workdir / "spool").glob("*.lp"))
    influxdb.start()
    c.start()  # replays the spool; nothing is redelivered because everything was acked
    assert wait_for(lambda: count(influxdb, "drain") == 5, 20, step=0.1)
    assert wait_for(lambda: c.metric("airgrid_collector_spool_depth_lines") == 0, step=0.1)
    assert c.metric("airgrid_collector_duplicates_total") == 0
    assert c.stop() == 0
