"""The work orders' steps and photos follow their alert's retention (`[alerting]
resolved_retention`): a resolved order's history leaves the store with its alert, an open
one's stays, and the store-size gauge counts both tables."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prometheus_client import CollectorRegistry

from collector.alerting.manager import AlertManager
from collector.alerting.service import StoreSizes
from collector.alerting.store import Store
from collector.registry import load as load_devices
from collector.workorders.complaints import Complaint, ComplaintIntake
from collector.workorders.links import SignInLinks
from collector.workorders.orders import WorkOrders
from collector.workorders.workers import WorkerDirectory
from tests.collector.workorders.test_links_and_scope import REGISTRY
from tests.support.alerting import T0, config, tr

DAY_MS = 86_400_000
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


def rows(orders: WorkOrders, table: str, alert_id: int) -> int:
    with orders.store.lock:
        return int(orders.store.db.execute(
            f"SELECT count(*) FROM {table} WHERE alert_id = ?", (alert_id,)).fetchone()[0])


def work_orders(tmp_path: Path) -> tuple[Path, AlertManager, WorkOrders]:
    """Work orders over the test registry, resolved alerts kept 30 days."""
    reg = tmp_path / "registry.yaml"
    reg.write_text(REGISTRY, encoding="utf-8")
    cfg = config(tmp_path, event_channels=[], resolved_retention="30d")
    manager = AlertManager(cfg, Store(cfg.state_db), cfg.contacts, {})
    orders = WorkOrders(manager, WorkerDirectory(reg), lambda lines: None, [])
    manager.on_event = orders.on_event
    return reg, manager, orders


def test_steps_and_photos_of_a_resolved_order_leave_with_its_alert(tmp_path: Path) -> None:
    _, manager, orders = work_orders(tmp_path)
    manager.handle([tr("dev-a", "firing", 200.0, T0), tr("dev-c", "firing", 180.0, T0)], T0)
    zhang, li = orders.workers.get("8613800000001"), orders.workers.get("8613800000002")
    assert zhang and li
    a_id = next(a.id for a in manager.lifecycle.by_id.values() if a.subject == "dev-a")
    c_id = next(a.id for a in manager.lifecycle.by_id.values() if a.subject == "dev-c")
    photo, _ = orders.photos.add(a_id, JPEG, zhang.id, T0 + 1000)
    orders.take_step(zhang, a_id, "handled", "k-a", T0 + 2000, cause="burning", photo=photo)
    orders.take_step(li, c_id, "arrived", "k-c", T0 + 2000)
    assert rows(orders, "work_steps", a_id) == 2  # 收到 implied, then 处置完成
    resolved = T0 + 3_600_000
    manager.handle([tr("dev-a", "resolved", 20.0, resolved)], resolved)

    # within the retention (the hourly purge runs, and keeps it)
    manager.handle([], resolved + 29 * DAY_MS)
    assert rows(orders, "work_steps", a_id) == 2
    assert orders.photos.get(photo) is not None

    manager.handle([], resolved + 31 * DAY_MS)
    assert manager.store.load_alerts(0) and all(a.id != a_id
                                                for a, _ in manager.store.load_alerts(0))
    assert rows(orders, "work_steps", a_id) == 0
    assert orders.photos.get(photo) is None
    assert rows(orders, "work_steps", c_id) == 2  # the open order keeps its history
    assert manager.store.purged_rows == {"work_steps": 2, "work_photos": 1, "silences": 0}

    gauge = CollectorRegistry()
    gauge.register(StoreSizes(manager.store))
    for table, n in (("work_steps", 2), ("work_photos", 0), ("alerts", 1)):
        assert gauge.get_sample_value("airgrid_alert_store_rows", {"table": table}) == n


def test_a_resolved_complaint_and_expired_sign_in_links_leave_the_store(
        tmp_path: Path) -> None:
    reg, manager, orders = work_orders(tmp_path)
    devices = load_devices(reg)
    intake = ComplaintIntake(orders, lambda: devices, None)
    links = SignInLinks(manager.store.db, manager.store.lock)
    manager.store.attach_expiring_table("worker_links", "expires_ms")
    links.issue("wang", T0, ttl_ms=DAY_MS)
    kept = links.issue("bureau", T0 + 40 * DAY_MS, ttl_ms=7 * DAY_MS)

    def complaint(cid: str) -> Complaint:
        return Complaint(source="12345", id=cid, text="烧秸秆 straw burning", lat=36.10,
                         lon=117.20, time=dt.datetime.fromtimestamp(T0 / 1000, dt.UTC))

    handled = intake.receive(complaint("c-1"), T0)
    intake.receive(complaint("c-2"), T0)  # still open: stays
    manager.close_external(handled.order_id, T0 + 3_600_000)

    manager.handle([], T0 + 3_600_000 + 29 * DAY_MS)
    assert manager.store.sizes()["complaints"] == 2
    assert manager.store.sizes()["worker_links"] == 2

    manager.handle([], T0 + 3_600_000 + 31 * DAY_MS)
    assert manager.store.sizes()["complaints"] == 1
    assert intake.evidence(handled.order_id) is None
    assert manager.store.sizes()["worker_links"] == 1  # wang's expired a month ago
    assert links.check(kept, T0 + 41 * DAY_MS).worker == "bureau"
    assert manager.store.purged_rows["complaints"] == 1
    assert manager.store.purged_rows["worker_links"] == 1
