"""Lifecycle decisions: grouping, dedup under flapping, silences, inhibition, routing,
escalation across a restart. Decisions are read from the SQLite outbox; the restart test
delivers them through the simulated modem."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from pathlib import Path

import pytest

from alert_rules.rule_threshold import ThresholdRule
from collector import alert_events
from collector.alerting.channels.notifier import Address, Context
from collector.alerting.config import AlertingConfig
from collector.alerting.errors import NotResponsible, UnknownAlert
from collector.alerting.manager import AlertManager
from collector.alerting.principals import Principal
from collector.alerting.service import AlertingService
from collector.alerting.store import Store
from tests.support.alerting import BUREAU, OFFICER, T0, WORKER, WORKER_B, modem_sim, sms_config, tr
from tests.support.wait import wait_for

MIN = 60_000
ADDRESSES: dict[str, Address] = {"modem": "phone", "bus": "app"}


def manager(cfg: AlertingConfig) -> AlertManager:
    return AlertManager(cfg, Store(cfg.state_db), cfg.contacts, ADDRESSES)


def sms_rows(m: AlertManager) -> list[dict[str, object]]:
    return m.store.outbox_rows("modem")


def sms_texts(m: AlertManager) -> list[tuple[str, str]]:
    rows = m.store.db.execute("SELECT recipient, text FROM outbox WHERE channel='modem'"
                              " ORDER BY rowid").fetchall()
    return [(r[0], r[1]) for r in rows]


def test_devices_of_one_grid_crossing_together_make_one_message(tmp_path: Path) -> None:
    cfg = sms_config(tmp_path, "/dev/null", route={
        "receiver": "grid_worker", "group_by": ["township", "grid"], "group_wait": "30s",
        "group_interval": "5m", "repeat_interval": "4h"})
    m = manager(cfg)
    m.handle([tr("dev-a", "firing", 180.0, T0)], T0)
    m.handle([tr("dev-b", "firing", 160.0, T0 + 10_000), tr("dev-c", "firing", 155.0,
                                                            T0 + 10_000)], T0 + 10_000)
    assert sms_rows(m) == []  # group wait
    m.handle([], T0 + 30_000)
    texts = sms_texts(m)
    assert [r for r, _ in texts] == [WORKER]  # dev-c's group started later
    assert "城关镇政府楼顶" in texts[0][1] and "城关小学" in texts[0][1]
    assert "2处超标" in texts[0][1]
    m.handle([], T0 + 40_000)
    assert [r for r, _ in sms_texts(m)] == [WORKER, WORKER_B]


def test_a_sensor_flapping_for_an_hour_notifies_once_per_repeat_interval(tmp_path: Path) -> None:
    cfg = sms_config(tmp_path, "/dev/null", escalation=[], route={
        "receiver": "grid_worker", "group_wait": "0s", "group_interval": "1m",
        "repeat_interval": "20m"})
    m = manager(cfg)
    now = T0
    for k in range(60):  # state flips every minute for an hour; a tick every 10 s
        state = "firing" if k % 2 == 0 else "resolved"
        m.handle([tr("dev-a", state, 160.0 if state == "firing" else 120.0, now)], now)
        for s in range(1, 6):
            m.handle([], now + s * 10_000)
        now += MIN
    sent = sms_rows(m)
    assert len(sent) == 3  # one per 20 minutes at most over 60 minutes
    created = [r[0] for r in m.store.db.execute(
        "SELECT created_ms FROM outbox WHERE channel='modem' ORDER BY created_ms")]
    assert all(b - a >= 20 * MIN for a, b in itertools.pairwise(created))
    # one alert throughout: reopened, not re-created
    assert m.store.db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0] == 1


def test_flapping_with_a_four_hour_repeat_sends_exactly_one(tmp_path: Path) -> None:
    cfg = sms_config(tmp_path, "/dev/null", escalation=[])
    m = manager(cfg)
    now = T0
    for k in range(30):
        m.handle([tr("dev-a", "firing" if k % 2 == 0 else "resolved", 160.0, now)], now)
        m.handle([], now + MIN)
        now += 2 * MIN
    assert len(sms_rows(m)) == 1


def test_silence_mutes_notifications_but_the_event_says_so(tmp_path: Path) -> None:
    cfg = sms_config(tmp_path, "/dev/null", event_channels=["bus"],
                     channels={"bus": {"type": "mqtt"},
                               "modem": {"type": "sms_modem", "port": "/dev/null"}})
    m = manager(cfg)
    m.add_silence({"device": "dev-a"}, T0, T0 + 30 * MIN, "技术员小王", "更换传感器")
    m.handle([tr("dev-a", "firing", 180.0, T0), tr("dev-c", "firing", 170.0, T0)], T0)
    assert [r for r, _ in sms_texts(m)] == [WORKER_B]
    ev = [json.loads(r[0]) for r in m.store.db.execute(
        "SELECT event FROM outbox WHERE channel='bus'")]
    by_dev = {e["subject"]: e["data"] for e in ev}
    assert by_dev["dev-a"]["muted"] == "silence 1: 更换传感器" and by_dev["dev-c"]["muted"] is None
    m.handle([], T0 + 11 * MIN)  # a silenced alert does not escalate either
    assert any(r == OFFICER and "河口村" in t for r, t in sms_texts(m))
    assert not any(r == OFFICER and "城关镇政府楼顶" in t for r, t in sms_texts(m))
    m.handle([], T0 + 31 * MIN)  # silence over: the worker is told at the group interval
    assert WORKER in [r for r, _ in sms_texts(m)]


def test_regional_episode_inhibits_device_alerts_in_its_township(tmp_path: Path) -> None:
    cfg = sms_config(tmp_path, "/dev/null", escalation=[], inhibit=[
        {"source": {"scope": "regional"}, "target": {"scope": "!regional"},
         "equal": ["township"]}], receivers={
        "grid_worker": {"targets": [{"channel": "modem", "to": "grid_worker"}]},
        "township_officer": {"targets": [{"channel": "modem", "to": "township_officer"}]}},
        route={"receiver": "grid_worker", "group_wait": "0s",
               "routes": [{"match": {"scope": "regional"}, "receiver": "township_officer"}]})
    m = manager(cfg)
    m.handle([tr("城关镇", "firing", 170.0, T0, rule="pm25_regional", scope="regional"),
              tr("dev-a", "firing", 180.0, T0), tr("dev-c", "firing", 175.0, T0)], T0)
    assert sorted(r for r, _ in sms_texts(m)) == sorted([OFFICER, WORKER_B])


def test_a_device_s_open_sensor_fault_holds_back_its_unusual_pollution_alerts(
        tmp_path: Path) -> None:
    # The inhibition docs/alerting.md gives: a drifting sensor far above its neighbours
    # is first a maintenance alert; its later "local source" alert is the same fault
    # and does not send the grid worker, while the fault is open. Another device's
    # local source, and a level crossed on the faulty one, still go out; the held alert
    # goes out when the fault resolves while it still fires.
    import re
    import tomllib

    doc = (Path(__file__).resolve().parents[3] / "docs" / "alerting.md").read_text("utf-8")
    block = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert block is not None
    rules = [r for r in tomllib.loads(block.group(1))["alerting"]["inhibit"]
             if r["source"].get("audience") == "maintenance"]
    assert len(rules) == 1
    cfg = sms_config(tmp_path, "/dev/null", escalation=[], inhibit=rules, receivers={
        "grid_worker": {"targets": [{"channel": "modem", "to": "grid_worker"}]},
        "maintenance": {"targets": [{"channel": "modem", "to": OFFICER}]}},
        route={"receiver": "grid_worker", "group_wait": "0s",
               "routes": [{"match": {"audience": "maintenance"}, "receiver": "maintenance"}]})
    m = manager(cfg)
    fault = {"rule": "sensor_shift", "category": "device", "audience": "maintenance"}
    m.handle([tr("dev-a", "firing", 2.0, T0, **fault)], T0)
    m.handle([tr("dev-a", "firing", 95.0, T0 + MIN, rule="pm25_local_source"),
              tr("dev-c", "firing", 96.0, T0 + MIN, rule="pm25_local_source")], T0 + MIN)
    assert sorted(r for r, _ in sms_texts(m)) == sorted([OFFICER, WORKER_B])
    m.handle([tr("dev-a", "firing", 160.0, T0 + 2 * MIN)], T0 + 2 * MIN)  # pm25_heavy
    assert sorted(r for r, _ in sms_texts(m)) == sorted([OFFICER, WORKER_B, WORKER])
    m.handle([tr("dev-a", "resolved", 1.0, T0 + 3 * MIN, **fault)], T0 + 3 * MIN)
    m.handle([], T0 + 9 * MIN)  # the grid's next group flush
    texts = [t for r, t in sms_texts(m) if r == WORKER]
    # the second is the grid's group: the local source (#2, held until now) beside the
    # level crossed
    assert len(texts) == 2 and "95.0" not in texts[0] and "95.0 µg/m³（#2）" in texts[1]


def test_routing_by_severity_and_continue(tmp_path: Path) -> None:
    cfg = sms_config(tmp_path, "/dev/null", escalation=[], route={
        "receiver": "grid_worker", "group_wait": "0s", "routes": [
            {"match": {"severity": "critical"}, "receiver": "county_bureau", "continue": True},
            {"match": {"severity": "~critical|warning"}, "receiver": "grid_worker"}]})
    m = manager(cfg)
    crit = tr("dev-a", "firing", 400.0, T0)
    crit = type(crit)(**{**crit.__dict__, "severity": "critical"})
    m.handle([crit, tr("dev-c", "firing", 160.0, T0)], T0)
    assert sorted(r for r, _ in sms_texts(m)) == sorted([BUREAU, WORKER, WORKER_B])


def test_acknowledgement_stops_escalation_and_is_idempotent(tmp_path: Path) -> None:
    m = manager(sms_config(tmp_path, "/dev/null"))
    m.handle([tr("dev-a", "firing", 180.0, T0)], T0)
    zhang, li, wang = (Principal("张三", "t" * 16, WORKER), Principal("李四", "u" * 16, WORKER_B),
                       Principal("王镇长", "v" * 16, OFFICER))
    with pytest.raises(NotResponsible):  # dev-a is 张三's, not 李四's
        m.acknowledge(1, li, T0 + 4 * MIN, "http")
    assert m.counters["ack_refused_http"] == 1
    alert = m.acknowledge(1, zhang, T0 + 5 * MIN, "http")
    assert alert.acked_by == "张三" and alert.acked_ms == T0 + 5 * MIN
    assert m.acknowledge(1, wang, T0 + 6 * MIN, "http").acked_by == "张三"
    with pytest.raises(UnknownAlert):
        m.acknowledge(99, zhang, T0, "http")
    m.handle([], T0 + 60 * MIN)
    assert [r for r, _ in sms_texts(m)] == [WORKER]
    # a flap after the acknowledgement reopens the same, still acknowledged alert
    m.handle([tr("dev-a", "resolved", 120.0, T0 + 61 * MIN)], T0 + 61 * MIN)
    m.handle([tr("dev-a", "firing", 170.0, T0 + 62 * MIN)], T0 + 62 * MIN)
    reopened = m.get(1)
    assert reopened is not None and reopened.state == "firing" and reopened.acknowledged


def test_restart_mid_escalation_notifies_the_next_level_on_time_once(tmp_path: Path) -> None:
    with modem_sim(tmp_path) as modem:
        cfg = sms_config(tmp_path, modem.port.path)
        svc = AlertingService(cfg, Context(file="t"))
        svc.start()
        svc.handle([tr("dev-a", "firing", 186.0, T0)], T0)
        svc.handle([], T0 + 5 * MIN)
        assert wait_for(lambda: len(modem.sent) == 1)
        svc.stop()

        # Decided but not yet sent when the process died: the outbox row survives.
        pending = AlertingService(cfg, Context(file="t"))  # never started: no delivery
        pending.handle([], T0 + 10 * MIN)
        pending.stop()
        assert [s.to for s in modem.sent] == [WORKER]
        with sqlite3.connect(cfg.state_db) as db:
            pending_rows = db.execute("SELECT COUNT(*) FROM outbox WHERE status='pending'")
            assert pending_rows.fetchone()[0] == 1

        svc = AlertingService(cfg, Context(file="t"))
        svc.start()
        try:
            assert wait_for(lambda: len(modem.sent) == 2)
            for t in (10 * MIN + 1000, 15 * MIN, 29 * MIN + 59_000):
                svc.handle([], T0 + t)
            svc.handle([tr("dev-a", "firing", 190.0, T0 + 20 * MIN)], T0 + 20 * MIN)  # replay
            svc.handle([], T0 + 30 * MIN)  # 20 min after level 1: the county bureau
            assert wait_for(lambda: len(modem.sent) == 3)
            svc.handle([], T0 + 90 * MIN)  # top of the ladder: nothing more
            time.sleep(0.5)
        finally:
            svc.stop()
    assert [s.to for s in modem.sent] == [WORKER, OFFICER, BUREAU]
    assert "第1级" in modem.sent[1].text and "10分钟无人确认" in modem.sent[1].text
    assert "第2级" in modem.sent[2].text and "20分钟无人确认" in modem.sent[2].text


def test_events_carry_the_annotations_the_rule_rendered_and_no_pending(tmp_path: Path) -> None:
    cfg = sms_config(tmp_path, "/dev/null", event_channels=["bus"],
                     channels={"bus": {"type": "mqtt"},
                               "modem": {"type": "sms_modem", "port": "/dev/null"}})
    m = manager(cfg)
    rule = ThresholdRule(name="pm25_heavy", field="pm2_5", above=150.0, clear_below=100.0,
                         labels={"category": "pollution"},
                         annotations={"summary_zh": "{device}：PM2.5 {value} µg/m³",
                                      "note": "{{value}} is {value}"})
    t = rule.transition("dev-a", "firing", 186.04, T0, None)
    m.handle([tr("dev-a", "pending", 170.0, T0 - 1000), t], T0)
    events = [json.loads(r[0]) for r in m.store.db.execute("SELECT event FROM outbox"
                                                           " WHERE channel='bus'")]
    assert [e["type"] for e in events] == ["org.airgrid.alert.firing"]
    # Rendered once, where the rule fired: the braces the template escaped stay text.
    assert events[0]["data"]["annotations"] == {"summary_zh": "dev-a：PM2.5 186.0 µg/m³",
                                                "note": "{value} is 186.0"}


def test_finished_messages_are_purged_after_the_retention(tmp_path: Path) -> None:
    m = manager(sms_config(tmp_path, "/dev/null", outbox_retention="1d", escalation=[]))
    m.handle([tr("dev-a", "firing", 186.0, T0)], T0)
    (row,) = sms_rows(m)
    m.store.mark_sent(str(row["id"]), T0 + 1000)
    m.handle([tr("dev-c", "firing", 186.0, T0 + 2 * 3_600_000)], T0 + 2 * 3_600_000)
    assert len(sms_rows(m)) == 2  # within the retention: kept
    pending_id = sms_rows(m)[1]["id"]
    m.handle([], T0 + 25 * 3_600_000)
    left = sms_rows(m)
    assert row["id"] not in [r["id"] for r in left]  # sent a day ago: purged
    assert pending_id in [r["id"] for r in left]  # not delivered: never purged


def test_the_bus_event_of_a_transition_carries_the_rule_rendered_text() -> None:
    rule = ThresholdRule(name="pm25_heavy", field="pm2_5", above=150.0, clear_below=100.0,
                         severity="critical",
                         annotations={"summary": "{device} {{device}} {value}"})
    t = rule.transition("dev-a", "firing", 186.04, 1_790_000_000_000, None)
    topic, body = alert_events.encode(t, "airgrid")
    assert topic == "airgrid/v1/alerts/pm25_heavy/dev-a"
    assert json.loads(body) == {
        "specversion": "1.0", "type": "org.airgrid.alert.firing",
        "source": "/airgrid/collector", "id": alert_events.event_id(t),
        "time": "2026-09-21T14:13:20Z", "subject": "dev-a",
        "datacontenttype": "application/json",
        "data": {"rule": "pm25_heavy", "device": "dev-a", "state": "firing", "value": 186.04,
                 "severity": "critical", "labels": {},
                 "annotations": {"summary": "dev-a {device} 186.0"}, "at_ms": 1_790_000_000_000},
    }


def test_a_transition_without_a_value_is_stored_not_a_crash(tmp_path: Path) -> None:
    """A rule that resolves with no value (NaN: its window emptied) must not break the
    store's NOT NULL column and stop the collector; the alert keeps its last value."""
    m = manager(sms_config(tmp_path, "/dev/null"))
    m.handle([tr("dev-a", "firing", 180.0, T0)], T0)
    m.handle([tr("dev-a", "resolved", float("nan"), T0 + 60_000)], T0 + 60_000)
    m.handle([tr("dev-b", "firing", float("nan"), T0 + 61_000)], T0 + 61_000)
    rows = dict(m.store.db.execute("SELECT subject, value FROM alerts").fetchall())
    assert rows == {"dev-a": 180.0, "dev-b": 0.0}


def test_an_adopted_alert_is_not_announced_again_and_its_end_is(tmp_path: Path) -> None:
    """A device taken over while its announced alert is open (`collector.handover` read it
    on record): the alert opens here without an event, and its `resolved` is announced
    from here. Without `adopt` the lifecycle had no alert to close and dropped the
    `resolved`: nobody announced the episode's end."""
    cfg = sms_config(tmp_path, "/dev/null", event_channels=["bus"],
                     channels={"bus": {"type": "mqtt"},
                               "modem": {"type": "sms_modem", "port": "/dev/null"}})
    m = manager(cfg)

    def bus() -> list[tuple[str, str]]:
        rows = m.store.db.execute("SELECT event FROM outbox WHERE channel='bus'").fetchall()
        return [(json.loads(r[0])["type"].rsplit(".", 1)[1], json.loads(r[0])["subject"])
                for r in rows]

    assert m.adopt([tr("dev-a", "firing", 186.0, T0), tr("dev-b", "resolved", 20.0, T0)],
                   T0 + 1000) == 1
    assert bus() == [] and sms_rows(m) == []  # the old owner announced it
    assert m.adopt([tr("dev-a", "firing", 190.0, T0 + 500)], T0 + 2000) == 0  # held
    m.handle([tr("dev-a", "firing", 188.0, T0 + 3000)], T0 + 3000)  # still the same one
    assert bus() == []
    m.handle([tr("dev-a", "resolved", 40.0, T0 + 60_000)], T0 + 60_000)
    assert bus() == [("resolved", "dev-a")]
    assert m.counters["adopted"] == 1
