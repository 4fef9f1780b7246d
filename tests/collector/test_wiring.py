"""The collector hands the engine what it needs: quality flags, the registered fleet,
its saved state across a restart; and the registry gives the alert lifecycle its contacts."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np

from airgrid.wire import SCHEMA_VERSION, Reading, UpBatch, encode_up, up_topic
from collector.alerting.contacts import Officer, StaticContacts
from collector.registry import RegistryWatcher
from collector.registry_contacts import RegistryContacts
from orchestration.services import InfluxDB, Mosquitto
from tests.support.collector_process import Collector, TopicWatcher
from tests.support.wait import wait_for

REGISTRY = """devices:
  - id: w-1
    name: 城关镇政府楼顶
    site: 城关镇政府
    township: 城关镇
    grid: g1
    lat: 30.1
    lon: 110.2
    sensor: pms5003
    contacts:
      - {name: 张三, phone: "+8613800000001"}
  - id: w-never
    name: 从未上线
    site: 北山
    township: 城关镇
    grid: g2
    lat: 30.2
    lon: 110.3
    sensor: pms5003
"""

RULES = """rules:
  - name: pm25_heavy
    kind: threshold
    field: pm2_5
    aggregate: mean
    window: 1h
    above: 150
    for: 0s
  - name: silent
    kind: deadman
    absent_for: 2s
"""


def registered_collector(tmp_path: Path, mosquitto: Mosquitto, influx: InfluxDB,
                         database: str) -> tuple[Path, Collector, TopicWatcher]:
    """A collector with REGISTRY and RULES (not yet started), and a watcher of its alerts."""
    work = tmp_path / "collector"
    work.mkdir()
    (work / "registry.yaml").write_text(REGISTRY, encoding="utf-8")
    (work / "rules.yaml").write_text(RULES)
    collector = Collector(work, mosquitto.port, influx.url, database, extra=(
        '[rules]\nfiles = ["rules.yaml"]\ntick_interval_s = 0.2\n'
        '[registry]\nfile = "registry.yaml"\n[alerting]\nenabled = false\n'))
    return work, collector, TopicWatcher(mosquitto.port, "airgrid/v1/alerts/#")


def publish_w1(app: TopicWatcher, seq: int, value: float) -> None:
    """One PM2.5 reading of device w-1, taken now."""
    r = Reading(seq=seq, ts=int(time.time() * 1000), sensor="pms5003", pm2_5=value)
    app.client.publish(up_topic("w-1"), encode_up(UpBatch(
        v=SCHEMA_VERSION, device="w-1", boot="b", readings=(r,))), qos=1)


def test_registry_contacts(tmp_path: Path) -> None:
    reg = tmp_path / "registry.yaml"
    reg.write_text(REGISTRY, encoding="utf-8")
    officer = Officer("王镇长", "+8613900000000")
    fallback = StaticContacts({}, {("township_officer", "城关镇"): officer})
    contacts = RegistryContacts(RegistryWatcher(reg), fallback)
    c = contacts.for_device("w-1")
    assert c is not None
    assert (c.name, c.township, c.grid, c.worker_name, c.worker_phone) == (
        "城关镇政府楼顶", "城关镇", "g1", "张三", "+8613800000001")
    assert contacts.for_device("nobody") is None
    assert contacts.by_phone("+8613800000001") == "张三"
    assert contacts.by_phone("+8613900000000") == "王镇长"
    officer = contacts.officer("township_officer", "城关镇")
    assert officer is not None and officer.name == "王镇长"


def test_deadman_covers_never_seen_devices_and_windows_survive_a_restart(
        tmp_path: Path, mosquitto: Mosquitto, shared_influxdb: InfluxDB,
        influx_db_name: str) -> None:
    work, collector, app = registered_collector(tmp_path, mosquitto, shared_influxdb,
                                                influx_db_name)
    log = collector.log

    def fired(rule: str, subject: str) -> int:
        return sum(1 for e in app.decoded() if e["data"]["state"] == "firing"
                   and e["data"]["rule"] == rule and e["subject"] == subject)

    collector.start()
    try:
        # deadman: the registered device that never reported is caught
        assert wait_for(lambda: fired("silent", "w-never") == 1, 20), log.read_text()
        # one high reading: the hour's mean is 300, the alert fires
        publish_w1(app, 1, 300.0)
        assert wait_for(lambda: fired("pm25_heavy", "w-1") == 1, 10), log.read_text()
        collector.stop()
        assert (work / "collector-state" / "engine.npz").exists()
        collector.start()
        assert wait_for(lambda: "engine state restored" in log.read_text(), 15), log.read_text()
        # After the restart the restored window still holds the 300: with 20 and 300 more
        # the mean stays above 150 and the alert neither resolves nor fires again (a fresh
        # engine would see 20 then a mean of 160 and fire a second time).
        publish_w1(app, 2, 20.0)
        time.sleep(0.5)
        publish_w1(app, 3, 300.0)
        time.sleep(2.0)
        states = [e["data"]["state"] for e in app.decoded()
                  if e["subject"] == "w-1" and e["data"]["rule"] == "pm25_heavy"]
        assert states == ["firing"], states
    finally:
        collector.stop()
        app.close()


def test_a_damaged_engine_state_is_set_aside_counted_and_the_collector_runs_on(
        tmp_path: Path, mosquitto: Mosquitto, shared_influxdb: InfluxDB,
        influx_db_name: str) -> None:
    """A saved engine state damaged on disk (one rule's array cut short: it used to
    half-restore the engine and fail at a later tick; or bytes cut off) is refused whole
    at start-up: named in the log, renamed `.refused`, counted in the metrics; the
    collector starts with empty windows and goes on storing readings and alerting."""
    work, collector, app = registered_collector(tmp_path, mosquitto, shared_influxdb,
                                                influx_db_name)
    saved = work / "collector-state" / "engine.npz"
    seq = 0

    def heavy_fired_after(value: float) -> bool:
        nonlocal seq
        seq += 1
        before = fired()
        publish_w1(app, seq, value)
        return wait_for(lambda: fired() > before, 10)

    def fired() -> int:
        return sum(1 for e in app.decoded() if e["data"]["state"] == "firing"
                   and e["data"]["rule"] == "pm25_heavy")

    def cut_an_array(blob: bytes) -> bytes:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        arrays["rule/pm25_heavy/pending_since"] = arrays["rule/pm25_heavy/pending_since"][:-1]
        out = io.BytesIO()
        np.savez(out, allow_pickle=False, **arrays)
        return out.getvalue()

    collector.start()
    try:
        assert heavy_fired_after(300.0), log_of(work)
        collector.stop()
        for damage, reason in ((cut_an_array, "rule/pm25_heavy/"),
                               (lambda b: b[: len(b) // 2], "not an engine snapshot")):
            blob = damage(saved.read_bytes())
            saved.write_bytes(blob)
            collector.start()
            assert wait_for(lambda: collector.metric(
                "airgrid_collector_engine_state_refused_total") == 1, 10), log_of(work)
            assert f"engine state in {saved} not restored" in log_of(work)
            assert reason in log_of(work).rsplit("not restored", 1)[1], log_of(work)
            assert (saved.parent / "engine.npz.refused").read_bytes() == blob
            # empty windows: the alert held before is announced again, readings stored
            stored = collector.metric("airgrid_collector_readings_stored_total")
            assert heavy_fired_after(300.0), log_of(work)
            assert collector.metric("airgrid_collector_readings_stored_total") == stored + 1
            assert collector.proc is not None and collector.proc.poll() is None
            collector.stop()
            assert saved.exists()  # the engine's state saved afresh at the stop
    finally:
        collector.stop()
        app.close()


def test_a_reading_over_the_threshold_alerts_on_arrival_not_on_the_timer(
        tmp_path: Path, mosquitto: Mosquitto, shared_influxdb: InfluxDB,
        influx_db_name: str) -> None:
    """With the timer at 30 s the alert still follows its reading within 2 s: stored
    readings tick the engine (before, it waited for the timer: up to 30 s)."""
    work = tmp_path / "collector"
    work.mkdir()
    (work / "rules.yaml").write_text(
        "rules:\n  - {name: pm25_heavy, kind: threshold, field: pm2_5, above: 150,"
        " for: 0s}\n")
    collector = Collector(work, mosquitto.port, shared_influxdb.url, influx_db_name, extra=(
        '[rules]\nfiles = ["rules.yaml"]\ntick_interval_s = 30\n'
        "[alerting]\nenabled = false\n"))
    app = TopicWatcher(mosquitto.port, "airgrid/v1/alerts/#")

    def fired() -> list[float]:
        return [m.at for m in app.received()
                if json.loads(m.payload)["data"]["state"] == "firing"]

    collector.start()  # its first timer tick runs at start; the next one 30 s later
    try:
        for seq, value in ((1, 40.0), (2, 300.0)):
            sent = time.monotonic()
            publish_w1(app, seq, value)
            if value < 150:
                assert wait_for(lambda: collector.metric(
                    "airgrid_collector_readings_stored_total") == 1, 10), log_of(work)
        assert wait_for(fired, 5, step=0.02), log_of(work)
        assert fired()[0] - sent < 2.0, fired()[0] - sent
    finally:
        collector.stop()
        app.close()


def log_of(work: Path) -> str:
    return (work / "collector.log").read_text()
