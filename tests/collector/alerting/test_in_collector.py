"""The real collector process with an [alerting] table: readings on a real broker → SMS on
the simulated modem; killed (-9) mid-escalation and restarted, it notifies the next level
on time, once."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from airgrid.wire import SCHEMA_VERSION, Reading, UpBatch, encode_up, up_topic
from orchestration.services import InfluxDB, Mosquitto
from tests.support.alerting import (
    CONTACTS,
    OFFICER,
    PM25_HEAVY_RULES,
    TOKEN_ZHANG,
    WORKER,
    modem_sim,
    sms_only,
    toml_entries,
)
from tests.support.collector_process import TopicWatcher
from tests.support.collector_process import reading as full_reading
from tests.support.wait import wait_for


def _config(tmp_path: Path, broker: int, influx: str, db: str, modem: str) -> Path:
    (tmp_path / "rules.yaml").write_text(PM25_HEAVY_RULES)
    conf = tmp_path / "collector.toml"
    conf.write_text(f"""
[broker]
port = {broker}
[influx]
url = "{influx}"
database = "{db}"
[batch]
max_wait_ms = 50
[rules]
files = ["rules.yaml"]
tick_interval_s = 0.2
[alerting]
event_channels = []
[alerting.ack]
mqtt = false
[alerting.channels.modem]
type = "sms_modem"
port = "{modem}"
timeout_s = 5.0
[alerting.receivers.grid_worker]
targets = [{{ channel = "modem", to = "grid_worker" }}]
[alerting.receivers.township_officer]
targets = [{{ channel = "modem", to = "township_officer" }}]
[alerting.route]
receiver = "grid_worker"
group_wait = "0s"
[[alerting.escalation]]
after = "5s"
receivers = ["township_officer"]
{toml_entries("alerting.contacts.devices", sms_only(CONTACTS["devices"][0]))}
{toml_entries("alerting.contacts.officers", CONTACTS["officers"][0])}""", encoding="utf-8")
    return conf


def _collector(conf: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "collector.cli", "run", "--config",
                                 str(conf)], stdout=out, stderr=subprocess.STDOUT)


def _sms_recorded(state_db: Path) -> bool:
    if not state_db.exists():
        return False
    with contextlib.closing(sqlite3.connect(state_db)) as db:
        return bool(db.execute("SELECT count(*) FROM outbox WHERE status = 'sent'")
                    .fetchone()[0])


def _subscribed(log: Path, times: int) -> bool:
    return log.exists() and log.read_text().count("subscribed to device topics") >= times


def test_collector_killed_mid_escalation_notifies_next_level_on_time_once(
        tmp_path: Path, mosquitto: Mosquitto, shared_influxdb: InfluxDB,
        influx_db_name: str) -> None:
    pub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    seq = 0

    def reading(value: float) -> None:
        nonlocal seq
        seq += 1
        r = full_reading(seq, int(time.time() * 1000), value)
        pub.publish(up_topic("dev-a"), encode_up(UpBatch(v=SCHEMA_VERSION, device="dev-a",
                                                         boot="b", readings=(r,))), qos=1)

    with modem_sim(tmp_path) as modem:
        conf = _config(tmp_path, mosquitto.port, shared_influxdb.url, influx_db_name,
                       modem.port.path)
        log = tmp_path / "collector.log"
        proc = _collector(conf, log)
        try:
            # readings published before the first subscription are lost (no session yet)
            assert wait_for(lambda: _subscribed(log, 1), 20), log.read_text()
            reading(40.0)
            reading(210.0)
            assert wait_for(lambda: len(modem.sent) == 1, 15), log.read_text()
            fired = time.monotonic()
            # Killed between the modem's OK and the outbox's record of it, the SMS is sent
            # again after the restart (at least once, by design): kill once it is recorded.
            assert wait_for(lambda: _sms_recorded(tmp_path / "alerting.sqlite"), 10)
            proc.kill()  # -9 mid-escalation
            proc.wait(5)
            proc = _collector(conf, log)
            assert wait_for(lambda: _subscribed(log, 2), 20), log.read_text()
            reading(220.0)  # still polluted after the restart: the same alert, no new SMS
            assert wait_for(lambda: len(modem.sent) == 2, 15), log.read_text()
            escalated_after = time.monotonic() - fired
            time.sleep(2.0)
        finally:
            proc.terminate()
            proc.wait(15)
            pub.disconnect()
            pub.loop_stop()
    assert [s.to for s in modem.sent] == [WORKER, OFFICER]
    assert "城关镇政府楼顶" in modem.sent[0].text and "第1级" in modem.sent[1].text
    # due 5 s after firing; ticks every 0.2 s, plus a modem dialogue and a loaded machine
    assert 4.5 <= escalated_after <= 8.0, escalated_after


def test_acknowledgement_over_the_collectors_own_mqtt_connection(
        tmp_path: Path, mosquitto: Mosquitto, shared_influxdb: InfluxDB,
        influx_db_name: str) -> None:
    """One connection per collector: the ack command arrives on the ingest's session
    (manual ack), and the acknowledgement goes out as an event on the bus."""
    import json

    (tmp_path / "rules.yaml").write_text(PM25_HEAVY_RULES)
    conf = tmp_path / "collector.toml"
    conf.write_text(f"""
[broker]
port = {mosquitto.port}
[influx]
url = "{shared_influxdb.url}"
database = "{influx_db_name}"
[batch]
max_wait_ms = 50
[rules]
files = ["rules.yaml"]
tick_interval_s = 0.2
{toml_entries("alerting.ack.principals",
               {"name": "张三", "phone": WORKER, "token": TOKEN_ZHANG})}
[[alerting.contacts.devices]]
device = "dev-a"
worker_name = "张三"
worker_phone = "{WORKER}"
""", encoding="utf-8")
    conf.chmod(0o600)  # it holds a token
    app = TopicWatcher(mosquitto.port, "airgrid/v1/alerts/#")
    log = tmp_path / "collector.log"
    proc = _collector(conf, log)

    def states() -> list[str]:
        return [e["data"]["state"] for e in app.decoded()]

    try:
        assert wait_for(lambda: _subscribed(log, 1), 20), log.read_text()
        r = full_reading(1, int(time.time() * 1000), 230.0)
        app.client.publish(up_topic("dev-a"), encode_up(UpBatch(
            v=SCHEMA_VERSION, device="dev-a", boot="b", readings=(r,))), qos=1)
        assert wait_for(lambda: "firing" in states(), 15), log.read_text()
        alert_id = next(e["data"]["alert_id"] for e in app.decoded()
                        if e["data"]["state"] == "firing")
        app.client.publish(f"airgrid/v1/cmd/alerts/{alert_id}/ack",
                    json.dumps({"token": TOKEN_ZHANG}).encode(), qos=1)
        assert wait_for(lambda: "acknowledged" in states(), 15), log.read_text()
        # the collector kept one connection: nothing was kicked off the broker, and the
        # broker never saw a second client of the collector's
        assert "disconnected from broker" not in log.read_text()
        broker_log = mosquitto.log_path.read_text()
        assert "as airgrid-collector " in broker_log
        assert "as airgrid-collector-" not in broker_log
    finally:
        proc.terminate()
        proc.wait(15)
        app.close()
    acked = [e for e in app.decoded() if e["data"]["state"] == "acknowledged"]
    assert acked[0]["data"]["acked_by"] == "张三"


TECHNICIAN = "+8613600000005"


def test_sensor_fault_goes_to_the_technician_pollution_to_the_grid_worker(
        tmp_path: Path, mosquitto: Mosquitto, shared_influxdb: InfluxDB,
        influx_db_name: str) -> None:
    """Registry with a `technician`; a device that reads 0 while its neighbours do not is
    a maintenance alert (route audience=maintenance → the technician, with the
    neighbours' median); a device over 150 µg/m³ goes to its grid worker as before."""
    devices = "\n".join(
        f"  - {{id: dev-{c}, name: 站{c}, site: s{c}, township: 城关镇, grid: g1, "
        f"lat: {30.51 + 0.001 * i}, lon: 114.30, contacts: [{{name: 张三, phone: '{WORKER}'}}],"
        f" technician: {{name: 陈工, phone: '{TECHNICIAN}'}}}}"
        for i, c in enumerate("abc"))
    (tmp_path / "registry.yaml").write_text(f"devices:\n{devices}\n", encoding="utf-8")
    with modem_sim(tmp_path) as modem:
        conf = _config(tmp_path, mosquitto.port, shared_influxdb.url, influx_db_name,
                       modem.port.path)
        text = conf.read_text(encoding="utf-8").replace("[alerting]\n", """[registry]
file = "registry.yaml"
[alerting]
""", 1).replace('[alerting.route]\nreceiver = "grid_worker"\ngroup_wait = "0s"\n', """
[alerting.receivers.maintenance]
targets = [{ channel = "modem", to = "technician" }]
[alerting.route]
receiver = "grid_worker"
group_wait = "0s"
[[alerting.route.routes]]
match = { audience = "maintenance" }
receiver = "maintenance"
""", 1).split("[[alerting.escalation]]")[0]
        conf.write_text(text, encoding="utf-8")
        (tmp_path / "rules.yaml").write_text(PM25_HEAVY_RULES + """
  - name: sensor_zero
    kind: sensor_fault
    cause: zero
    labels: {audience: maintenance, cause: zero}
    annotations:
      summary_zh: "{name}：读数为0，周边中位数 {neighbour_median} µg/m³，请检修"
""", encoding="utf-8")
        pub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        log = tmp_path / "collector.log"
        proc = _collector(conf, log)
        seq = 0

        def send(values: dict[str, float]) -> None:
            nonlocal seq
            seq += 1
            for dev, v in values.items():
                r = Reading(seq=seq, ts=int(time.time() * 1000), sensor="pms5003", pm2_5=v)
                pub.publish(up_topic(f"dev-{dev}"), encode_up(UpBatch(
                    v=SCHEMA_VERSION, device=f"dev-{dev}", boot="b", readings=(r,))), qos=1)

        try:
            assert wait_for(lambda: "subscribed to device topics" in log.read_text(), 15)
            send({"a": 60.0, "b": 62.0, "c": 64.0})
            time.sleep(0.5)
            send({"a": 0.0, "b": 61.0, "c": 63.0})
            assert wait_for(lambda: len(modem.sent) == 1, 15), log.read_text()
            send({"a": 0.0, "b": 210.0, "c": 66.0})
            assert wait_for(lambda: len(modem.sent) == 2, 15), log.read_text()
            time.sleep(1.0)  # the zero stays zero: still one maintenance alert
        finally:
            proc.terminate()
            proc.wait(15)
            pub.disconnect()
            pub.loop_stop()
    assert [s.to for s in modem.sent] == [TECHNICIAN, WORKER], modem.sent
    assert "62.0" in modem.sent[0].text, modem.sent[0].text  # median of 61 and 63
