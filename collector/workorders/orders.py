"""Work orders: an alert (or a citizen complaint opened as one) and the steps taken on it.

Steps: 收到 acknowledged (the lifecycle's acknowledgement, whichever way it came: app,
SMS "收到 123", MQTT, HTTP), 到场 arrived (with the phone's place if given), 处置完成
handled (a cause from `CAUSES`, a note), 上报 reported (escalated by the worker). Each
step is one row in the alerting state database, decided in the same transaction as its
CloudEvent (`org.airgrid.workorder.<step>`) in the outbox, so a crash neither loses nor
repeats it; a client's idempotency key makes a resent step (a phone back online) a no-op.
Each step also leaves a point in InfluxDB (`WORK_ORDER_STEPS`): the response times the
county is judged by.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from airgrid.measurements import WORK_ORDER_STEPS
from collector.alerting.errors import UnknownAlert
from collector.alerting.manager import AlertManager
from collector.alerting.model import Alert, Event, Message
from collector.alerting.principals import Principal
from collector.line_protocol import escape_string_field, tag_set
from collector.workorders.errors import BadStep, NoSuchOrder, OutsideArea
from collector.workorders.photos import Photos
from collector.workorders.workers import Worker, WorkerDirectory

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS work_steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id INTEGER NOT NULL, step TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE, worker TEXT NOT NULL, by_name TEXT NOT NULL, via TEXT NOT NULL,
    at_ms INTEGER NOT NULL, response_s REAL NOT NULL, cause TEXT, note TEXT, lat REAL,
    lon REAL, event_id TEXT NOT NULL, photo TEXT);
CREATE INDEX IF NOT EXISTS work_steps_alert ON work_steps (alert_id);
"""
TYPE_PREFIX = "org.airgrid.workorder."
SOURCE = "/airgrid/collector/workorders"
STEPS = ("acknowledged", "arrived", "handled", "reported")
CAUSES = ("construction_dust", "burning", "industrial", "traffic", "sensor_fault", "other")
COMPLAINT_RULE = "complaint"
WITHIN_S = 7200  # the county's promise: a complaint answered within two hours
MAX_NOTE = 1000


def _time(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Step:
    alert_id: int
    step: str
    worker: str
    by_name: str
    via: str
    at_ms: int
    response_s: float
    cause: str | None = None
    note: str | None = None
    lat: float | None = None
    lon: float | None = None
    photo: str | None = None  # SHA-256 of the photo (`photos`)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def source_of(a: Alert) -> str:
    return "complaint" if a.rule == COMPLAINT_RULE else "alert"


def step_line(a: Alert, s: Step) -> str:
    tags = {"source": source_of(a), "step": s.step, "township": a.labels.get("township", ""),
            "grid": a.labels.get("grid", ""), "worker": s.worker or "unknown",
            "cause": s.cause or "none", "rule": a.rule}
    fields = [f"order_id={a.id}i", f"response_s={float(s.response_s)!r}",
              f"within_2h={int(s.response_s <= WITHIN_S)}i",
              f"by={escape_string_field(s.by_name)}", f"via={escape_string_field(s.via)}"]
    return f"{WORK_ORDER_STEPS}{tag_set(tags)} {','.join(fields)} {s.at_ms}"


class WorkOrders:
    def __init__(self, manager: AlertManager, workers: WorkerDirectory,
                 points: Callable[[list[str]], None],
                 event_channels: Iterable[str]) -> None:
        self.manager = manager
        self.store = manager.store
        self.workers = workers
        self.points = points
        self.event_channels = tuple(event_channels)
        self.counters = manager.counters  # one set, served on /metrics
        self._app_step: tuple[Worker, str] | None = None  # the app's ack being decided
        with self.store.lock:
            self.store.db.executescript(SCHEMA)
        # a step goes with its alert, by `[alerting] resolved_retention`
        self.store.attach_alert_table("work_steps")
        self.photos = Photos(self.store.db, self.store.lock)
        self.store.attach_alert_table("work_photos")

    # -- reading -------------------------------------------------------------------------
    def steps(self, alert_id: int) -> list[Step]:
        with self.store.lock:
            rows = self.store.db.execute(
                "SELECT alert_id, step, worker, by_name, via, at_ms, response_s, cause, note,"
                " lat, lon, photo FROM work_steps WHERE alert_id = ? ORDER BY at_ms, id",
                (alert_id,)).fetchall()
        return [Step(*r) for r in rows]

    def all_steps(self) -> list[tuple[Alert | None, Step]]:
        """Every recorded step with its alert when still in memory (tests, the dashboard
        check)."""
        with self.store.lock:
            rows = self.store.db.execute(
                "SELECT alert_id, step, worker, by_name, via, at_ms, response_s, cause, note,"
                " lat, lon, photo FROM work_steps ORDER BY id").fetchall()
        return [(self.manager.get(r[0]), Step(*r)) for r in rows]

    @staticmethod
    def status(steps: list[Step], a: Alert) -> str:
        done = {s.step for s in steps}
        for name in ("handled", "reported", "arrived", "acknowledged"):
            if name in done:
                return name
        return "acknowledged" if a.acknowledged else "new"

    def orders(self, who: Worker, now_ms: int) -> list[tuple[Alert, list[Step]]]:
        """The open work orders within `who`'s area: firing alerts, and alerts resolved
        lately whose order is not handled yet; newest first."""
        self.manager.ensure_loaded(now_ms)
        with self.manager.lock:
            alerts = list(self.manager.lifecycle.by_id.values())
        out = []
        for a in alerts:
            if not who.sees(a.labels.get("township", ""), a.labels.get("grid", "")):
                continue
            steps = self.steps(a.id)
            if a.state != "firing" and self.status(steps, a) == "handled":
                continue
            out.append((a, steps))
        out.sort(key=lambda p: (p[0].state != "firing", -p[0].started_ms))
        return out

    def order(self, who: Worker, alert_id: int, now_ms: int) -> tuple[Alert, list[Step]]:
        self.manager.ensure_loaded(now_ms)
        a = self.manager.get(alert_id)
        if a is None:
            self.counters["app_unknown_order"] += 1
            raise NoSuchOrder(f"no open work order #{alert_id}")
        if not who.sees(a.labels.get("township", ""), a.labels.get("grid", "")):
            self.counters["app_outside_area"] += 1
            log.warning("work order #%d (%s/%s) refused to %s (%s %s/%s): outside their area",
                        alert_id, a.labels.get("township"), a.labels.get("grid"), who.id,
                        who.role, who.township, who.grid)
            raise OutsideArea(f"work order #{alert_id} is outside your area")
        return a, self.steps(alert_id)

    # -- writing -------------------------------------------------------------------------
    def take_step(self, who: Worker, alert_id: int, step: str, key: str, now_ms: int,
                  cause: str | None = None, note: str | None = None,
                  lat: float | None = None, lon: float | None = None,
                  photo: str | None = None) -> tuple[bool, Alert]:
        """Record `step` by `who`; (False, alert) when `key` was already taken (a resend).
        Raises NoSuchOrder, OutsideArea, BadStep."""
        if step not in STEPS:
            raise BadStep(f"step must be one of {STEPS}, got {step!r}")
        if not key or len(key) > 100 or not key.isascii() or not key.isprintable():
            raise BadStep("key: an idempotency key of 1 to 100 printable ASCII characters")
        if step == "handled" and cause not in CAUSES:
            raise BadStep(f"cause: one of {CAUSES}, got {cause!r}")
        if note is not None and len(note) > MAX_NOTE:
            raise BadStep(f"note: at most {MAX_NOTE} characters")
        if photo is not None and (step != "handled" or not self.photos.belongs(photo,
                                                                               alert_id)):
            raise BadStep("photo: the digest of a photo uploaded for this order, on 处置完成")
        if (lat is None) != (lon is None) or (lat is not None and not -90 <= lat <= 90) or \
                (lon is not None and not -180 <= lon <= 180):
            raise BadStep("lat and lon: both or neither, in degrees (WGS-84)")
        with self.manager.lock:
            a, steps = self.order(who, alert_id, now_ms)
            with self.store.lock:
                seen = self.store.db.execute("SELECT alert_id, step FROM work_steps WHERE"
                                             " key = ?", (key,)).fetchone()
            if seen is not None:
                self.counters["app_step_repeated"] += 1
                if tuple(seen) != (alert_id, step):
                    raise BadStep(f"key {key!r} was used for another step", 409)
                return False, a
            if self.status(steps, a) == "handled":
                raise BadStep(f"work order #{alert_id} is already handled", 409)
            principal = Principal(who.name, "", who.phone)
            with self.store.tx():
                if not a.acknowledged:
                    # every later step implies 收到: the lifecycle's own acknowledgement
                    # (escalation stops, the ack event goes out), recorded by `on_event`
                    self._app_step = (who, key if step == "acknowledged" else f"{key}:ack")
                    try:
                        self.manager.acknowledge(alert_id, principal, now_ms, "app",
                                                 authorized=True)
                    except UnknownAlert as exc:
                        raise NoSuchOrder(str(exc)) from exc
                    finally:
                        self._app_step = None
                elif step == "acknowledged":
                    # acknowledged before (by SMS, or by another officer): the key is kept,
                    # so a resend stays a no-op; nothing new is decided
                    self._insert(a, Step(alert_id, "acknowledged", who.id, who.name, "app",
                                         now_ms, (now_ms - a.started_ms) / 1000), key,
                                 emit=False)
                if step != "acknowledged":
                    self._insert(a, Step(alert_id, step, who.id, who.name, "app", now_ms,
                                         (now_ms - a.started_ms) / 1000, cause,
                                         note or None, lat, lon, photo), key)
                    if step == "handled" and a.rule == COMPLAINT_RULE:
                        self.manager.close_external(alert_id, now_ms)
                    if step == "reported":  # 上报: the next level of the ladder is told now
                        self.manager.escalate_now(alert_id, now_ms, who.name)
            self.counters[f"app_step_{step}"] += 1
        self.manager.wake(self.event_channels)
        return True, a

    def on_event(self, ev: Event) -> None:
        """The lifecycle's events (inside its transaction): an acknowledgement, whichever
        way it came, is the order's 收到; a new alert opens an order."""
        a = ev.alert
        if ev.kind == "firing" and not ev.detail.get("reopened"):
            self._emit("opened", a, None, ev.at_ms, f"opened:{a.id}:{a.started_ms}")
            return
        if ev.kind != "acknowledged" or a.acked_ms is None:
            return
        via = str(ev.detail.get("via", ""))
        app = self._app_step if via == "app" else None
        if app is not None:
            who, key = app
            wid, name = who.id, who.name
        else:
            by = a.acked_by or ""
            name = by.split(" (", 1)[0]
            phone = by.rsplit("(", 1)[1].rstrip(")") if by.endswith(")") else ""
            w = (self.workers.by_phone(phone) if phone else None) or self.workers.by_name(name)
            wid, key = (w.id if w else name), f"ack:{a.id}:{a.acked_ms}"
        self._insert(a, Step(a.id, "acknowledged", wid, name, via or "unknown", a.acked_ms,
                             (a.acked_ms - a.started_ms) / 1000), key)

    def _insert(self, a: Alert, s: Step, key: str, emit: bool = True) -> None:
        eid = hashlib.sha256(f"{a.id}|{a.started_ms}|{s.step}|{key}".encode()).hexdigest()[:32]
        with self.store.tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO work_steps (alert_id, step, key, worker, by_name, via,"
                " at_ms, response_s, cause, note, lat, lon, event_id, photo)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (s.alert_id, s.step, key, s.worker, s.by_name, s.via, s.at_ms, s.response_s,
                 s.cause, s.note, s.lat, s.lon, eid, s.photo))
            if cur.rowcount == 0 or not emit:
                return
            self._emit(s.step, a, s, s.at_ms, key)
        self.points([step_line(a, s)])

    def _emit(self, kind: str, a: Alert, s: Step | None, at_ms: int, key: str) -> None:
        """The step as a CloudEvent into the outbox, to every event channel (bus, webhooks)."""
        eid = hashlib.sha256(f"{a.id}|{a.started_ms}|{kind}|{key}".encode()).hexdigest()[:32]
        data: dict[str, Any] = {
            "order_id": a.id, "source": source_of(a), "step": kind, "at_ms": at_ms,
            "rule": a.rule, "device": a.labels.get("device", a.subject),
            "township": a.labels.get("township", ""), "grid": a.labels.get("grid", ""),
            "opened_ms": a.started_ms, "labels": dict(a.labels),
            "annotations": dict(a.annotations)}
        if s is not None:
            data.update(s.to_json())
            data.pop("alert_id", None)
        body = {"specversion": "1.0", "type": TYPE_PREFIX + kind, "source": SOURCE,
                "id": eid, "time": _time(at_ms), "subject": f"workorder-{a.id}",
                "datacontenttype": "application/json", "data": data}
        text = json.dumps({"order": a.id, "step": kind}, ensure_ascii=False)
        self.store.enqueue([Message(id=f"wo:{eid}:{ch}", channel=ch, recipient="", kind="event",
                                    text=text, event=body) for ch in self.event_channels],
                           at_ms)
        self.counters[f"workorder_{kind}"] += 1
