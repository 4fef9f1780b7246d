"""Sign-in links (hashed, expiring, revocable) and what each person may see and do, on the
real alert manager and its SQLite store: a worker's own grid only, a township officer
their township, a county officer everything; steps deduplicated by key; an SMS "收到 N"
shows in the same history as the app's steps."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from collector.alerting.manager import AlertManager
from collector.alerting.store import Store
from collector.workorders.errors import BadStep, NoSuchOrder, NotSignedIn, OutsideArea
from collector.workorders.links import SignInLinks, digest
from collector.workorders.orders import WorkOrders
from collector.workorders.workers import WorkerDirectory
from tests.support.alerting import T0, WORKER, config, tr

REGISTRY = f"""
devices:
  - {{id: dev-a, site: s-a, township: 城关镇, grid: g1, lat: 36.10, lon: 117.20,
     contacts: [{{name: 张三, phone: "{WORKER}"}}]}}
  - {{id: dev-b, site: s-b, township: 城关镇, grid: g1, lat: 36.11, lon: 117.21}}
  - {{id: dev-c, site: s-c, township: 河口镇, grid: g7, lat: 36.30, lon: 117.40,
     contacts: [{{name: 李四, phone: "+8613800000002"}}]}}
workers:
  - {{id: wang, name: 王镇长, phone: "+8613900000009", role: township_officer, township: 城关镇}}
  - {{id: bureau, name: 县环保局, phone: "+8613700000007", role: county_officer}}
"""


@pytest.fixture
def setup(tmp_path: Path) -> tuple[AlertManager, WorkOrders, list[str]]:
    reg = tmp_path / "registry.yaml"
    reg.write_text(REGISTRY, encoding="utf-8")
    cfg = config(tmp_path, event_channels=[])
    store = Store(cfg.state_db)
    manager = AlertManager(cfg, store, cfg.contacts, {})
    lines: list[str] = []
    orders = WorkOrders(manager, WorkerDirectory(reg), lines.extend, ["bus"])
    manager.on_event = orders.on_event
    manager.handle([tr("dev-a", "firing", 200.0, T0), tr("dev-c", "firing", 180.0, T0)], T0)
    return manager, orders, lines


def test_a_link_is_stored_hashed_expires_and_is_revoked(tmp_path: Path) -> None:
    links = SignInLinks(tmp_path / "links.sqlite")
    token = links.issue("zhangsan", T0, ttl_ms=60_000)
    assert links.check(token, T0 + 59_999).worker == "zhangsan"
    stored = sqlite3.connect(tmp_path / "links.sqlite").execute(
        "SELECT token_sha256 FROM worker_links").fetchall()
    assert stored == [(digest(token),)] and token not in json.dumps(stored)
    with pytest.raises(NotSignedIn) as expired:
        links.check(token, T0 + 60_000)
    assert expired.value.reason == "expired"
    other = links.issue("zhangsan", T0, ttl_ms=3_600_000)
    assert links.revoke("zhangsan", T0 + 60_001) == 1  # the expired one is not counted
    with pytest.raises(NotSignedIn) as revoked:
        links.check(other, T0 + 60_002)
    assert revoked.value.reason == "revoked"
    with pytest.raises(NotSignedIn) as unknown:
        links.check(other + "x", T0)
    assert unknown.value.reason == "unknown"
    with pytest.raises(ValueError):
        links.issue("zhangsan", T0, ttl_ms=0)


def test_each_person_sees_their_area_only(setup: tuple[AlertManager, WorkOrders, list[str]]
                                          ) -> None:
    manager, orders, _ = setup
    w = orders.workers
    zhang, li = w.get("8613800000001"), w.get("8613800000002")
    wang, bureau = w.get("wang"), w.get("bureau")
    assert zhang and li and wang and bureau
    assert (zhang.role, zhang.township, zhang.grid) == ("grid_worker", "城关镇", "g1")

    def seen(who: object) -> set[str]:
        return {a.subject for a, _ in orders.orders(who, T0)}  # type: ignore[arg-type]

    assert seen(zhang) == {"dev-a"}
    assert seen(li) == {"dev-c"}
    assert seen(wang) == {"dev-a"}
    assert seen(bureau) == {"dev-a", "dev-c"}
    c_id = next(a.id for a in manager.lifecycle.by_id.values() if a.subject == "dev-c")
    with pytest.raises(OutsideArea):
        orders.order(zhang, c_id, T0)
    with pytest.raises(OutsideArea):
        orders.take_step(zhang, c_id, "acknowledged", "k-1", T0 + 1000)
    assert not manager.get(c_id).acknowledged  # type: ignore[union-attr]
    with pytest.raises(NoSuchOrder):
        orders.order(bureau, 9999, T0)


def test_steps_are_taken_once_per_key_and_sms_acks_share_the_history(
        setup: tuple[AlertManager, WorkOrders, list[str]]) -> None:
    manager, orders, lines = setup
    zhang, li = orders.workers.get("8613800000001"), orders.workers.get("8613800000002")
    assert zhang and li
    a_id = next(a.id for a in manager.lifecycle.by_id.values() if a.subject == "dev-a")
    c_id = next(a.id for a in manager.lifecycle.by_id.values() if a.subject == "dev-c")
    assert orders.take_step(zhang, a_id, "arrived", "k-arrive", T0 + 60_000, lat=36.1,
                            lon=117.2)[0]
    # arriving implies 收到: the lifecycle's acknowledgement, by the app
    assert manager.get(a_id).acked_by == "张三"  # type: ignore[union-attr]
    assert not orders.take_step(zhang, a_id, "arrived", "k-arrive", T0 + 70_000)[0]
    with pytest.raises(BadStep):
        orders.take_step(zhang, a_id, "handled", "k-h", T0 + 80_000, cause="aliens")
    with pytest.raises(BadStep) as reused:
        orders.take_step(zhang, a_id, "handled", "k-arrive", T0 + 80_000, cause="other")
    assert reused.value.status == 409
    assert orders.take_step(zhang, a_id, "handled", "k-h", T0 + 7_300_000,
                            cause="construction_dust", note="工地未覆盖")[0]
    with pytest.raises(BadStep):
        orders.take_step(zhang, a_id, "reported", "k-r", T0 + 7_400_000)
    steps = [(s.step, s.via, s.response_s) for s in orders.steps(a_id)]
    assert steps == [("acknowledged", "app", 60.0), ("arrived", "app", 60.0),
                     ("handled", "app", 7300.0)]
    # the SMS reply of the other grid's worker: a step of that order, by that worker
    manager.on_sms("modem", "13800000002", f"收到 {c_id}", T0 + 120_000)
    sms = orders.steps(c_id)
    assert [(s.step, s.worker, s.via) for s in sms] == [("acknowledged", "8613800000002",
                                                         "sms")]
    # one InfluxDB point per step: response times, within 2 h or not
    assert len(lines) == 4
    handled = next(x for x in lines if ",step=handled," in x)
    assert "cause=construction_dust" in handled and "within_2h=0i" in handled
    assert "response_s=7300.0" in handled
    # the outbox holds each step's CloudEvent once
    types = [json.loads(r[0])["type"] for r in manager.store.db.execute(
        "SELECT event FROM outbox WHERE id LIKE 'wo:%'")]
    assert sorted(types) == sorted(["org.airgrid.workorder.opened"] * 2 + [
        "org.airgrid.workorder.acknowledged", "org.airgrid.workorder.arrived",
        "org.airgrid.workorder.handled", "org.airgrid.workorder.acknowledged"])


def test_a_step_and_its_event_survive_a_restart_and_a_resend_stays_a_no_op(
        setup: tuple[AlertManager, WorkOrders, list[str]], tmp_path: Path) -> None:
    manager, orders, _ = setup
    zhang = orders.workers.get("8613800000001")
    assert zhang is not None
    a_id = next(a.id for a in manager.lifecycle.by_id.values() if a.subject == "dev-a")
    orders.take_step(zhang, a_id, "reported", "k-report", T0 + 5_000)
    manager.store.close()  # the process ends; a new one opens the same database
    cfg = config(tmp_path, event_channels=[])
    manager2 = AlertManager(cfg, Store(cfg.state_db), cfg.contacts, {})
    orders2 = WorkOrders(manager2, orders.workers, lambda lines: None, ["bus"])
    manager2.on_event = orders2.on_event
    assert [s.step for s in orders2.steps(a_id)] == ["acknowledged", "reported"]
    manager2.ensure_loaded(T0 + 9_000)
    assert manager2.get(a_id).acknowledged  # type: ignore[union-attr]
    assert not orders2.take_step(zhang, a_id, "reported", "k-report", T0 + 9_000)[0]
    pending = [json.loads(e)["type"] for (e,) in manager2.store.db.execute(
        "SELECT event FROM outbox WHERE id LIKE 'wo:%' AND status = 'pending'")]
    assert pending.count("org.airgrid.workorder.reported") == 1


def test_bad_workers_in_the_registry_are_named_by_file_entry_and_key(tmp_path: Path) -> None:
    from collector.registry import RegistryError
    from collector.workorders.workers import from_registry

    reg = tmp_path / "registry.yaml"
    for entry, where in (("{id: x, phone: '+861380000', role: mayor}", "workers[0].role"),
                         ("{id: x, role: grid_worker, township: t}", "workers[0].phone"),
                         ("{id: 'a b', phone: '+8613800000001', township: t, grid: g}",
                          "workers[0].id"),
                         ("{id: y, phone: '+8613800000001', township: t}", "workers[0].grid")):
        reg.write_text(f"devices: []\nworkers:\n  - {entry}\n", encoding="utf-8")
        with pytest.raises(RegistryError, match=re.escape(f"registry.yaml: {where}")):
            from_registry(reg)


def test_reported_escalates_at_once_to_the_next_level(tmp_path: Path) -> None:
    reg = tmp_path / "registry.yaml"
    reg.write_text(REGISTRY, encoding="utf-8")
    cfg = config(tmp_path, event_channels=[],
                 channels={"hook": {"type": "webhook", "url": "http://127.0.0.1:9/x",
                                    "secret": "s" * 16}},
                 receivers={"township_officer": {"targets": [
                     {"channel": "hook", "to": "township_officer"}]}},
                 escalation=[{"after": "30m", "receivers": ["township_officer"]}])
    manager = AlertManager(cfg, Store(cfg.state_db), cfg.contacts, {})
    orders = WorkOrders(manager, WorkerDirectory(reg), lambda lines: None, [])
    manager.on_event = orders.on_event
    manager.handle([tr("dev-a", "firing", 200.0, T0)], T0)
    a = next(iter(manager.lifecycle.by_id.values()))
    zhang = orders.workers.get("8613800000001")
    assert zhang is not None
    orders.take_step(zhang, a.id, "reported", "k-up", T0 + 60_000)
    assert a.level == 1 and a.acknowledged  # told now, not after the ladder's 30 min
    notices = manager.store.outbox_rows("hook")
    assert len(notices) == 1 and notices[0]["id"].startswith("e:")
    orders.take_step(zhang, a.id, "reported", "k-up-2", T0 + 120_000)
    assert a.level == 1 and len(manager.store.outbox_rows("hook")) == 1  # top of the ladder


def test_photos_are_images_by_signature_stored_once_and_named_by_a_handled_step(
        setup: tuple[AlertManager, WorkOrders, list[str]]) -> None:
    from collector.workorders.photos import content_type

    manager, orders, _ = setup
    zhang = orders.workers.get("8613800000001")
    assert zhang is not None
    a_id = next(a.id for a in manager.lifecycle.by_id.values() if a.subject == "dev-a")
    assert content_type(b"\x89PNG\r\n\x1a\n...") == "image/png"
    assert content_type(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    with pytest.raises(BadStep):
        content_type(b"GIF89a")
    jpeg = b"\xff\xd8\xff\xe0" + b"x" * 100
    digest, new = orders.photos.add(a_id, jpeg, zhang.id, T0)
    assert new and orders.photos.add(a_id, jpeg, zhang.id, T0 + 1) == (digest, False)
    with pytest.raises(BadStep):  # only on 处置完成, and only this order's photo
        orders.take_step(zhang, a_id, "arrived", "k-p1", T0 + 5, photo=digest)
    with pytest.raises(BadStep):
        orders.take_step(zhang, a_id, "handled", "k-p2", T0 + 5, cause="other",
                         photo="0" * 64)
    orders.take_step(zhang, a_id, "handled", "k-p3", T0 + 5, cause="other", photo=digest)
    assert orders.steps(a_id)[-1].photo == digest


def test_an_mqtt_acknowledgement_is_the_orders_received_step_too(
        setup: tuple[AlertManager, WorkOrders, list[str]]) -> None:
    from collector.alerting.principals import Principal

    manager, orders, lines = setup
    manager.handle([tr("dev-b", "firing", 170.0, T0 + 1_000)], T0 + 1_000)
    b_id = next(a.id for a in manager.lifecycle.by_id.values() if a.subject == "dev-b")
    manager.acknowledge(b_id, Principal("张三的网格通", "", "", "app-zhang"), T0 + 31_000,
                        "mqtt")
    assert [(s.step, s.via, s.response_s) for s in orders.steps(b_id)] == [
        ("acknowledged", "mqtt", 30.0)]
    assert any(",step=acknowledged," in x and "via=\"mqtt\"" in x for x in lines)
