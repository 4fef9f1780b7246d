"""What the running collector gives the county, on one real collector process (registry,
alerting, metrics) with a real broker and InfluxDB:

- the registry's devices and their places in `device_location`, on start and on reload;
- a registry edited while the collector runs changes the engine's fleet (new devices
  judged, deadman included; removed ones forgotten; a changed township used by alerts);
  `link: cellular` gives the deadman rule its `cellular_grace`;
- every alert lifecycle transition and delivery in `alert_events`;
- the alert delivery counters, per-device completeness and the `_ratio` names in a live
  scrape of `/metrics`; hourly aggregates of the calibrated PM2.5.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestration.services import InfluxDB, Mosquitto, free_port
from tests.support.alerting import BUREAU, PM25_HEAVY_RULES, toml_entries
from tests.support.collector_process import Collector, publish_up, reading, stored_rows
from tests.support.integration import process_fixture
from tests.support.wait import wait_for

RULES = PM25_HEAVY_RULES + """  - name: device_silent
    kind: deadman
    absent_for: 4s
    cellular_grace: 10m
"""

DEVICE = """  - id: {id}
    site: {id}-site
    township: {township}
    grid: {grid}
    lat: {lat}
    lon: 114.3
    link: {link}
"""
TOKEN = "t0ken-for-acks-zhangwei"  # 张伟, of the county bureau: may ack any alert


def _registry(path: Path, devices: list[dict[str, Any]]) -> None:
    body = "devices:\n" + "".join(DEVICE.format(**d) for d in devices)
    body = body.replace("  - id: rf-a\n", "  - id: rf-a\n    calibration: "
                        "{formula: linear, slope: 0.5, intercept: 1.0}\n")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(path)  # as an editor saving the file: never half-written


START = [
    {"id": "rf-a", "township": "城关镇", "grid": "CG-01", "lat": 30.51, "link": "wired"},
    {"id": "rf-gone", "township": "城关镇", "grid": "CG-02", "lat": 30.52, "link": "wired"},
    {"id": "rf-cell", "township": "城关镇", "grid": "CG-03", "lat": 30.53, "link": "cellular"},
]


class County:
    def __init__(self, collector: Collector, broker_port: int, influx: InfluxDB, db: str,
                 registry: Path,
                 ack_port: int, started_ms: int) -> None:
        self.broker_port = broker_port
        self.collector = collector
        self.influx = influx
        self.db = db
        self.registry = registry
        self.ack_port = ack_port
        self.started_ms = started_ms

    def rows(self, measurement: str, where: str = "") -> list[dict[str, Any]]:
        res = self.influx.query(f"SELECT * FROM {measurement} {where}", db=self.db)
        out: list[dict[str, Any]] = []
        for s in res["results"][0].get("series", []):  # type: ignore[index]
            out += [dict(zip(s["columns"], row, strict=True)) for row in s["values"]]
        return out

    def events(self, **match: str) -> list[dict[str, Any]]:
        return [r for r in self.rows("alert_events")
                if all(r.get(k) == v for k, v in match.items())]


@process_fixture(scope="module")
def county(tmp_path_factory: pytest.TempPathFactory,
           shared_influxdb: InfluxDB) -> Iterator[County]:
    work = tmp_path_factory.mktemp("county-feed")
    broker = Mosquitto(work / "mosquitto")
    broker.start()
    db = f"county_{int(time.time())}"
    shared_influxdb.create_database(db)
    (work / "rules.yaml").write_text(RULES)
    registry = work / "registry.yaml"
    _registry(registry, START)
    ack_port = free_port()
    c = Collector(work / "c", broker.port, shared_influxdb.url, db, extra=f"""
per_device_completeness = true
[rules]
files = ["{work / 'rules.yaml'}"]
tick_interval_s = 0.2
[registry]
file = "{registry}"
reload_check_s = 0.2
[alerting.ack]
http_port = {ack_port}
mqtt = false
{toml_entries("alerting.ack.principals", {"name": "张伟", "phone": BUREAU, "token": TOKEN})}
{toml_entries("alerting.contacts.officers",
               {"role": "county_bureau", "township": "*", "name": "张伟", "phone": BUREAU})}""")
    started = int(time.time() * 1000)
    c.start()
    try:
        yield County(c, broker.port, shared_influxdb, db, registry, ack_port, started)
    finally:
        c.stop()
        broker.stop()


def test_registry_reload_reaches_the_engine_and_device_location(county: County) -> None:
    # Written on start: every registered device where the registry places it.
    assert wait_for(lambda: len(county.rows("device_location")) == 3, 15, step=0.2)
    first = {r["device"]: r for r in county.rows("device_location")}
    assert first["rf-cell"]["link"] == "cellular" and first["rf-a"]["latitude"] == 30.51
    assert first["rf-gone"]["township"] == "城关镇" and first["rf-gone"]["grid"] == "CG-02"
    # Edited while it runs (within a second of start, long before any deadman is due):
    # rf-gone retired, rf-new installed, rf-a moved to another township.
    _registry(county.registry, [
        {"id": "rf-a", "township": "河西乡", "grid": "HX-01", "lat": 30.40, "link": "wifi"},
        START[2],
        {"id": "rf-new", "township": "河西乡", "grid": "HX-02", "lat": 30.41, "link": "wired"},
    ])
    assert wait_for(lambda: any(r["device"] == "rf-new"
                                for r in county.rows("device_location")), 15, step=0.2)
    # The new device is judged: nobody ever heard it, so the deadman fires for it.
    assert wait_for(lambda: county.events(rule="device_silent", device="rf-new",
                                          state="firing"), 20, step=0.3)
    assert wait_for(lambda: county.events(rule="device_silent", device="rf-a",
                                          state="firing"), 10, step=0.3)
    time.sleep(1.0)  # a few more ticks
    silent = {r["device"] for r in county.events(rule="device_silent", state="firing")}
    # rf-gone was due as early as rf-a (same start, wired) but was forgotten on reload;
    # rf-cell is on a cellular link: the 10-minute grace holds its deadman back.
    assert silent == {"rf-a", "rf-new"}
    fired = county.events(rule="device_silent", device="rf-new", state="firing")[0]
    assert fired["township"] == "河西乡" and fired["grid"] == "HX-02"
    moved = county.events(rule="device_silent", device="rf-a", state="firing")[0]
    assert moved["township"] == "河西乡"


def _ack(county: County, alert_id: int, by: str) -> dict[str, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{county.ack_port}/api/alerts/{alert_id}/ack",
        data=json.dumps({"by": by}).encode(), method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        body: dict[str, Any] = json.loads(r.read())
    return body


def test_alert_lifecycle_and_deliveries_are_written_to_alert_events(county: County) -> None:
    now = int(time.time() * 1000)
    publish_up(county.broker_port, "rf-a", [reading(1, now - 2000, 182.5),
                                               reading(2, now - 1000, 190.0)])
    assert wait_for(lambda: county.events(rule="pm25_heavy", state="firing"), 20, step=0.2)
    firing = county.events(rule="pm25_heavy", state="firing")
    assert len(firing) == 1
    f = firing[0]
    assert f["device"] == "rf-a" and f["township"] == "河西乡" and f["grid"] == "HX-01"
    assert f["open"] == 1 and f["value"] == pytest.approx(190.0) and f["alert_id"] > 0
    assert f["severity"] == "warning"
    _ack(county, f["alert_id"], "张伟")
    assert wait_for(lambda: county.events(rule="pm25_heavy", state="acknowledged"), 10,
                    step=0.2)
    acked = county.events(rule="pm25_heavy", state="acknowledged")[0]
    assert acked["acked_by"] == "张伟" and acked["alert_id"] == f["alert_id"]
    assert acked["ack_delay_s"] > 0
    now = int(time.time() * 1000)
    publish_up(county.broker_port, "rf-a", [reading(3, now, 40.0)])
    assert wait_for(lambda: county.events(rule="pm25_heavy", state="resolved"), 20, step=0.2)
    resolved = county.events(rule="pm25_heavy", state="resolved")[0]
    assert resolved["open"] == 0 and resolved["alert_id"] == f["alert_id"]
    # every lifecycle event went out on the MQTT bus channel, and that is recorded too
    assert wait_for(lambda: len(county.events(rule="pm25_heavy", state="notified",
                                              channel="bus")) >= 3, 10, step=0.2)


def test_live_scrape_serves_alert_delivery_completeness_and_ratio_names(
        county: County) -> None:
    c = county.collector
    now = int(time.time() * 1000)
    # seqs 10 and 11 never arrive: rf-new's completeness is 3 of 5
    publish_up(county.broker_port, "rf-new", [reading(9, now - 3000, 30.0),
                                                 reading(12, now - 2000, 31.0),
                                                 reading(13, now - 1000, 32.0)])
    assert wait_for(lambda: c.metric("airgrid_collector_device_seq_completeness_ratio",
                                     'device="rf-new"') == pytest.approx(0.6), 10, step=0.2)
    assert c.metric("airgrid_collector_device_seq_completeness_ratio",
                    'device="rf-a"') == 1.0
    assert 0 < c.metric("airgrid_collector_seq_completeness_ratio") < 1
    assert c.metric("airgrid_collector_missing_readings") == 2
    assert c.metric("airgrid_alert_messages_sent_total", 'channel="bus"') >= 3
    assert c.metric("airgrid_alert_decisions_total", 'what="event_firing"') >= 1
    assert c.metric("airgrid_alert_decisions_total", 'what="ack_http"') == 1
    with urllib.request.urlopen(f"http://127.0.0.1:{c.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert "airgrid_collector_seq_completeness " not in text  # renamed: ends in _ratio
    # rf-a is calibrated (linear 0.5x + 1): its hours carry the corrected PM2.5 too
    hourly = [r for r in stored_rows(county.influx, county.db, "readings_hourly")
              if r["device"] == "rf-a"]
    assert hourly and any(r.get("pm2_5_corr_mean") is not None for r in hourly)
    corr = [r for r in hourly if r.get("pm2_5_corr_count")]
    assert sum(r["pm2_5_corr_count"] for r in corr) == 3
    assert max(r["pm2_5_corr_max"] for r in corr) == pytest.approx(0.5 * 190.0 + 1.0)
